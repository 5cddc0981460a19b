//! Node identities: a P-256 key pair owned by the node, and the signatures made with it.
//!
//! The original ISEK signed every entry with one key belonging to the registry object,
//! so anyone could overwrite anyone's node. Here each node owns a [`NodeIdentity`]; the
//! registry writes the node's public key into its entry and refuses to renew, overwrite
//! or remove an entry whose key it does not hold.
//!
//! Formats follow the original (python-ecdsa): public keys are raw `X||Y` (64 bytes, no
//! `0x04`) in standard base64, signatures raw `r||s` (64 bytes) in standard base64. New
//! entries are signed with SHA-256 ([`SignatureAlg::Es256`]); entries without an algorithm
//! are legacy SHA-1 ones ([`SignatureAlg::LegacySha1`]). High-`s` signatures are valid in
//! both: about half of the original's are, and python-ecdsa never normalises them.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature as EcdsaSignature, SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use sha1::{Digest as _, Sha1};

/// Why an identity, key or signature could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The key file does not exist.
    #[error("key file {path} does not exist")]
    KeyFileMissing {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The key file exists but could not be read (permissions, a directory, ...).
    #[error("cannot read key file {path}: {reason}")]
    KeyFileUnreadable {
        /// The path that was tried.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The key file is not a PKCS#8 PEM P-256 private key.
    #[error("key file {path} is not a PKCS#8 PEM P-256 private key: {reason}")]
    KeyFileMalformed {
        /// The path that was read.
        path: PathBuf,
        /// What the decoder objected to.
        reason: String,
    },
    /// Saving would overwrite an existing key file (which may be another node's identity).
    #[error("key file {path} already exists; refusing to overwrite it")]
    KeyFileExists {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The key file could not be written.
    #[error("cannot write key file {path}: {reason}")]
    KeyFileWrite {
        /// The path that was tried.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// A public key is not base64 of 64 raw `X||Y` bytes of a P-256 point.
    #[error("malformed public key: {0}")]
    MalformedPublicKey(String),
    /// A signature is not base64 of 64 raw `r||s` bytes.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    /// The signature does not match the message and key.
    #[error("signature verification failed")]
    BadSignature,
    /// The signing operation itself failed (not expected with a valid key).
    #[error("signing failed: {0}")]
    Signing(String),
}

impl From<IdentityError> for crate::Error {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::KeyFileMissing { .. } => crate::Error::NotFound(e.to_string()),
            IdentityError::KeyFileUnreadable { .. } | IdentityError::KeyFileWrite { .. } => {
                crate::Error::Unavailable(e.to_string())
            }
            IdentityError::KeyFileExists { .. } => crate::Error::Conflict(e.to_string()),
            IdentityError::BadSignature => crate::Error::PermissionDenied(e.to_string()),
            IdentityError::Signing(_) => crate::Error::Backend(e.to_string()),
            IdentityError::KeyFileMalformed { .. }
            | IdentityError::MalformedPublicKey(_)
            | IdentityError::MalformedSignature(_) => crate::Error::InvalidArgument(e.to_string()),
        }
    }
}

/// Which hash an entry's signature was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlg {
    /// ECDSA P-256 with SHA-256: what this crate writes, marked `"signature_alg": "ES256"`.
    Es256,
    /// ECDSA P-256 with SHA-1: the original Python ISEK's entries (no `signature_alg`).
    LegacySha1,
}

impl SignatureAlg {
    /// The `signature_alg` value stored for ES256 entries.
    pub const ES256_NAME: &'static str = "ES256";

    /// The algorithm named by an entry's `signature_alg` (`None` = legacy); `None` for
    /// an algorithm this crate does not know.
    pub fn from_entry_field(field: Option<&str>) -> Option<Self> {
        match field {
            None => Some(Self::LegacySha1),
            Some(Self::ES256_NAME) => Some(Self::Es256),
            Some(_) => None,
        }
    }
}

/// A raw `r||s` ECDSA P-256 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// `r` then `s`, 32 big-endian bytes each, exactly as stored (never normalised).
    bytes: [u8; 64],
}

impl Signature {
    /// Parses standard base64 of the 64 raw bytes.
    pub fn from_base64(s: &str) -> Result<Self, IdentityError> {
        let raw = BASE64
            .decode(s.trim())
            .map_err(|e| IdentityError::MalformedSignature(format!("not base64 ({e})")))?;
        let bytes: [u8; 64] = raw.as_slice().try_into().map_err(|_| {
            IdentityError::MalformedSignature(format!("{} bytes instead of 64", raw.len()))
        })?;
        Ok(Self { bytes })
    }

    /// Standard base64 with padding, as stored in entries.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.bytes)
    }

    /// The raw `r||s` bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.bytes
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_base64())
    }
}

/// A P-256 public key, as entries carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The decoded point.
    key: VerifyingKey,
    /// Its raw `X||Y` base64 form, kept to compare with stored entries cheaply.
    base64: String,
}

impl PublicKey {
    /// Parses standard base64 of the raw 64-byte `X||Y` form.
    pub fn from_base64(s: &str) -> Result<Self, IdentityError> {
        let raw = BASE64
            .decode(s.trim())
            .map_err(|e| IdentityError::MalformedPublicKey(format!("not base64 ({e})")))?;
        if raw.len() != 64 {
            return Err(IdentityError::MalformedPublicKey(format!(
                "{} bytes instead of 64 (raw X||Y)",
                raw.len()
            )));
        }
        let mut sec1 = Vec::with_capacity(65);
        sec1.push(0x04);
        sec1.extend_from_slice(&raw);
        let key = VerifyingKey::from_sec1_bytes(&sec1)
            .map_err(|_| IdentityError::MalformedPublicKey("not a point on P-256".into()))?;
        Ok(Self {
            key,
            base64: BASE64.encode(&raw),
        })
    }

    /// From a verifying key.
    fn from_verifying_key(key: VerifyingKey) -> Self {
        let sec1 = key.to_sec1_bytes();
        // Uncompressed SEC1 is 0x04 || X || Y; entries store X || Y.
        let base64 = BASE64.encode(sec1.get(1..).unwrap_or_default());
        Self { key, base64 }
    }

    /// Standard base64 of raw `X||Y`, as entries store it.
    pub fn to_base64(&self) -> &str {
        &self.base64
    }

    /// Checks `signature` over `message` with the given hash.
    pub fn verify(
        &self,
        message: &[u8],
        signature: &Signature,
        alg: SignatureAlg,
    ) -> Result<(), IdentityError> {
        let sig = EcdsaSignature::from_slice(signature.as_bytes())
            .map_err(|_| IdentityError::MalformedSignature("r or s out of range".into()))?;
        let outcome = match alg {
            SignatureAlg::Es256 => self.key.verify(message, &sig),
            SignatureAlg::LegacySha1 => self.key.verify_prehash(&Sha1::digest(message), &sig),
        };
        outcome.map_err(|_| IdentityError::BadSignature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.base64)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base64)
    }
}

/// A node's own key pair: proof that it may renew, replace or remove its entry.
#[derive(Clone)]
pub struct NodeIdentity {
    /// The private key (never printed).
    signing: SigningKey,
    /// The matching public key, precomputed.
    public: PublicKey,
}

impl NodeIdentity {
    /// A fresh random key pair from the operating system's RNG.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate())
    }

    /// Wraps an existing key.
    fn from_signing_key(signing: SigningKey) -> Self {
        let public = PublicKey::from_verifying_key(*signing.verifying_key());
        Self { signing, public }
    }

    /// Parses a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, IdentityError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Self::from_signing_key)
            .map_err(|e| IdentityError::KeyFileMalformed {
                path: PathBuf::from("<memory>"),
                reason: e.to_string(),
            })
    }

    /// The private key as PKCS#8 PEM, for saving.
    pub fn to_pkcs8_pem(&self) -> Result<String, IdentityError> {
        self.signing
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| IdentityError::Signing(format!("cannot encode key: {e}")))
    }

    /// Loads a key file written by [`NodeIdentity::save`] (or `openssl genpkey`).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, IdentityError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => IdentityError::KeyFileMissing {
                path: path.to_owned(),
            },
            std::io::ErrorKind::InvalidData => IdentityError::KeyFileMalformed {
                path: path.to_owned(),
                reason: "not UTF-8 text".into(),
            },
            _ => IdentityError::KeyFileUnreadable {
                path: path.to_owned(),
                reason: e.to_string(),
            },
        })?;
        Self::from_pkcs8_pem(&text).map_err(|e| match e {
            IdentityError::KeyFileMalformed { reason, .. } => IdentityError::KeyFileMalformed {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })
    }

    /// Writes the key as PKCS#8 PEM to a new file readable by its owner only (mode 0600).
    /// Refuses to overwrite an existing file: it may be another node's identity.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), IdentityError> {
        let path = path.as_ref();
        let pem = self.to_pkcs8_pem()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let write_error = |e: std::io::Error| IdentityError::KeyFileWrite {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                IdentityError::KeyFileExists {
                    path: path.to_owned(),
                }
            } else {
                write_error(e)
            }
        })?;
        file.write_all(pem.as_bytes()).map_err(write_error)?;
        file.sync_all().map_err(write_error)
    }

    /// The public key, to publish in entries.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message` with ECDSA P-256 / SHA-256 (deterministic nonce, RFC 6979).
    pub fn sign(&self, message: &[u8]) -> Signature {
        let sig: EcdsaSignature = self.signing.sign(message);
        Self::raw(&sig)
    }

    /// Signs `message` the way the original Python ISEK does (SHA-1 prehash), to write
    /// entries that original nodes can verify. New entries should use [`NodeIdentity::sign`].
    pub fn sign_legacy_sha1(&self, message: &[u8]) -> Result<Signature, IdentityError> {
        let sig: EcdsaSignature = self
            .signing
            .sign_prehash(&Sha1::digest(message))
            .map_err(|e| IdentityError::Signing(e.to_string()))?;
        Ok(Self::raw(&sig))
    }

    /// Signs with the given algorithm.
    pub fn sign_with(&self, message: &[u8], alg: SignatureAlg) -> Result<Signature, IdentityError> {
        match alg {
            SignatureAlg::Es256 => Ok(self.sign(message)),
            SignatureAlg::LegacySha1 => self.sign_legacy_sha1(message),
        }
    }

    /// Raw `r||s` of a signature.
    fn raw(sig: &EcdsaSignature) -> Signature {
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(&sig.to_bytes());
        Signature { bytes }
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("public_key", &self.public.base64)
            .finish_non_exhaustive()
    }
}
