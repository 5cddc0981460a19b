//! Valid signed etcd entries and the "no forgery" oracle.
//!
//! The four legacy (SHA-1) entries are the original ISEK's, byte for byte from
//! `/work/shared/spec/etcd_entries.json`; the two ES256 ones were signed once with a
//! throwaway key (Python `cryptography`, private key discarded) so the fuzzer also
//! starts from entries with `signature_alg`. They double as the `etcd_entry` seeds.
//!
//! The oracle: whatever bytes a target feeds in, an entry that verifies must say the
//! same thing as one of these samples (same public key, same signed bytes, same hash)
//! with the same signature, or the same signature with `s` negated
//! ([`crate::curve::malleated`]). Anything else that verifies is a forgery.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use isek::etcd::verify_entry;
use isek::identity::SignatureAlg;
use isek::wire::etcd::StoredEntry;

use crate::curve::malleated;

/// The valid entries, as stored values (UTF-8 JSON text).
pub const ENTRIES: [&str; 6] = [
    include_str!("../seeds/etcd_entry/spec-ascii.json"),
    include_str!("../seeds/etcd_entry/spec-unicode_metadata.json"),
    include_str!("../seeds/etcd_entry/spec-no_metadata.json"),
    include_str!("../seeds/etcd_entry/spec-latin1_node_id.json"),
    include_str!("../seeds/etcd_entry/es256-ascii.json"),
    include_str!("../seeds/etcd_entry/es256-unicode.json"),
];

/// What a verified entry vouches for, decoded the way isek decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Raw `X||Y` public key bytes.
    pub key: Vec<u8>,
    /// The bytes the signature covers (`json.dumps(node_info, sort_keys=True)`).
    pub signed: Vec<u8>,
    /// Raw `r||s`.
    pub signature: [u8; 64],
    /// The hash the entry says it was signed with.
    pub alg: SignatureAlg,
}

impl Claim {
    /// The claim of a parsed entry that verified with `alg`; `None` when its key or
    /// signature does not decode (which `verify_entry` would have refused).
    pub fn of(entry: &StoredEntry, alg: SignatureAlg) -> Option<Self> {
        let key = BASE64.decode(entry.fields.public_key.trim()).ok()?;
        let signature: [u8; 64] = BASE64
            .decode(entry.signature.trim())
            .ok()?
            .as_slice()
            .try_into()
            .ok()?;
        Some(Self {
            key,
            signed: entry.signed_bytes(),
            signature,
            alg,
        })
    }

    /// Whether this claim is one of the samples' (up to `s` negation).
    pub fn is_known(&self) -> bool {
        known().iter().any(|k| {
            k.key == self.key
                && k.signed == self.signed
                && k.alg == self.alg
                && (k.signature == self.signature
                    || malleated(&k.signature) == Some(self.signature))
        })
    }
}

/// The samples parsed and verified once. Panics if a sample does not verify: the
/// harness itself would be wrong, and every run should say so at once.
pub fn known() -> &'static [Claim] {
    static KNOWN: OnceLock<Vec<Claim>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        ENTRIES
            .iter()
            .map(|text| {
                let entry = StoredEntry::parse(text.as_bytes())
                    .unwrap_or_else(|e| panic!("sample does not parse: {e}: {text}"));
                let alg = verify_entry(&entry)
                    .unwrap_or_else(|e| panic!("sample does not verify: {e}: {text}"));
                Claim::of(&entry, alg)
                    .unwrap_or_else(|| panic!("sample key or signature undecodable: {text}"))
            })
            .collect()
    })
}

/// Parses and verifies `value` as the registry does, then checks the oracle: an
/// entry that verifies must be a known claim. Panics (a finding) otherwise.
pub fn check_value(value: &[u8]) {
    let Ok(entry) = StoredEntry::parse(value) else {
        return;
    };
    // Everything a listing does with a parsed entry must be total.
    let _ = entry.to_node_info();
    let Ok(alg) = verify_entry(&entry) else {
        return;
    };
    let claim = Claim::of(&entry, alg)
        .unwrap_or_else(|| panic!("verified, but key or signature does not decode: {entry:?}"));
    assert!(
        claim.is_known(),
        "FORGERY: an entry verified that no sample vouches for: {claim:?} from {:?}",
        String::from_utf8_lossy(value)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_verify_and_pass_the_oracle() {
        assert_eq!(known().len(), ENTRIES.len());
        for text in ENTRIES {
            check_value(text.as_bytes());
        }
    }
}
