//! Node identities and signatures: key files, the original's samples, tampering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use isek::canonical;
use isek::etcd::verify_entry;
use isek::identity::{IdentityError, NodeIdentity, PublicKey, Signature, SignatureAlg};
use isek::wire::etcd::{StoredEntry, encode_entry, node_info_value};
use isek::{Error, Metadata};
use proptest::prelude::*;
use serde_json::Value;

fn spec() -> Value {
    let path = format!(
        "{}/tests/fixtures/etcd_entries.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_original_sample_verifies_as_legacy_sha1() {
    let spec = spec();
    let samples = spec["samples"].as_object().unwrap();
    let mut high_s = 0;
    for (name, sample) in samples {
        let entry = StoredEntry::parse(sample["value_exact"].as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(entry.signature_alg, None, "{name}");
        assert_eq!(verify_entry(&entry), Ok(SignatureAlg::LegacySha1), "{name}");
        let key = PublicKey::from_base64(sample["public_key_base64"].as_str().unwrap()).unwrap();
        let sig = Signature::from_base64(sample["signature_base64"].as_str().unwrap()).unwrap();
        let msg = sample["signed_bytes_exact"].as_str().unwrap().as_bytes();
        key.verify(msg, &sig, SignatureAlg::LegacySha1).unwrap();
        // The original's SHA-1 signatures are not SHA-256 ones.
        assert_eq!(
            key.verify(msg, &sig, SignatureAlg::Es256),
            Err(IdentityError::BadSignature),
            "{name}"
        );
        if sample["signature_s_is_low"] == Value::Bool(false) {
            high_s += 1;
        }
    }
    // High-s signatures are among them, and they verified: nothing is normalised.
    assert!(high_s >= 1);
}

#[test]
fn public_key_is_raw_x_y_without_prefix() {
    let id = NodeIdentity::generate();
    let raw = BASE64.decode(id.public_key().to_base64()).unwrap();
    assert_eq!(raw.len(), 64);
    let again = PublicKey::from_base64(id.public_key().to_base64()).unwrap();
    assert_eq!(&again, id.public_key());
    // The spec's key parses and prints back identically.
    let spec = spec();
    let sample_key = spec["samples"]["ascii"]["public_key_base64"]
        .as_str()
        .unwrap();
    assert_eq!(
        PublicKey::from_base64(sample_key).unwrap().to_base64(),
        sample_key
    );
}

#[test]
fn malformed_keys_and_signatures_are_typed_errors() {
    assert!(matches!(
        PublicKey::from_base64("not base64!"),
        Err(IdentityError::MalformedPublicKey(_))
    ));
    assert!(matches!(
        PublicKey::from_base64(&BASE64.encode([1u8; 64])),
        Err(IdentityError::MalformedPublicKey(_))
    ));
    assert!(matches!(
        PublicKey::from_base64(&BASE64.encode([4u8; 65])),
        Err(IdentityError::MalformedPublicKey(_))
    ));
    assert!(matches!(
        Signature::from_base64(&BASE64.encode([1u8; 63])),
        Err(IdentityError::MalformedSignature(_))
    ));
    let id = NodeIdentity::generate();
    let zero = Signature::from_base64(&BASE64.encode([0u8; 64])).unwrap();
    assert!(
        id.public_key()
            .verify(b"m", &zero, SignatureAlg::Es256)
            .is_err()
    );
}

#[test]
fn sign_and_verify_both_algorithms() {
    let id = NodeIdentity::generate();
    let other = NodeIdentity::generate();
    for alg in [SignatureAlg::Es256, SignatureAlg::LegacySha1] {
        let sig = id.sign_with(b"hello", alg).unwrap();
        id.public_key().verify(b"hello", &sig, alg).unwrap();
        assert_eq!(
            Signature::from_base64(&sig.to_base64()).unwrap(),
            sig,
            "base64 round trip"
        );
        assert_eq!(
            other.public_key().verify(b"hello", &sig, alg),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            id.public_key().verify(b"hellp", &sig, alg),
            Err(IdentityError::BadSignature)
        );
    }
}

#[test]
fn key_file_round_trip_with_owner_only_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.pem");
    let id = NodeIdentity::generate();
    id.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let loaded = NodeIdentity::load(&path).unwrap();
    assert_eq!(loaded.public_key(), id.public_key());
    // A signature by the loaded key verifies under the original's public key.
    let sig = loaded.sign(b"m");
    id.public_key()
        .verify(b"m", &sig, SignatureAlg::Es256)
        .unwrap();
    // Never overwrites an existing identity.
    assert!(matches!(
        NodeIdentity::generate().save(&path),
        Err(IdentityError::KeyFileExists { .. })
    ));
    assert_eq!(
        NodeIdentity::load(&path).unwrap().public_key(),
        id.public_key()
    );
    // Debug output does not leak the private key.
    let debug = format!("{loaded:?}");
    assert!(debug.contains(id.public_key().to_base64()) && !debug.contains("PRIVATE"));
}

#[test]
fn key_file_errors_are_clear_and_typed() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = NodeIdentity::load(&missing).unwrap_err();
    assert!(matches!(err, IdentityError::KeyFileMissing { .. }), "{err}");
    assert!(err.to_string().contains("missing.pem"));
    assert!(matches!(Error::from(err), Error::NotFound(_)));

    let err = NodeIdentity::load(dir.path()).unwrap_err();
    assert!(
        matches!(err, IdentityError::KeyFileUnreadable { .. }),
        "{err}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = NodeIdentity::load(&garbage).unwrap_err();
    assert!(
        matches!(err, IdentityError::KeyFileMalformed { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("garbage.pem"), "{err}");
    assert!(matches!(Error::from(err), Error::InvalidArgument(_)));

    let binary = dir.path().join("binary.pem");
    std::fs::write(&binary, [0xffu8, 0xfe, 0x00, 0x80]).unwrap();
    assert!(matches!(
        NodeIdentity::load(&binary),
        Err(IdentityError::KeyFileMalformed { .. })
    ));

    let no_dir = dir.path().join("no/such/dir/key.pem");
    assert!(matches!(
        NodeIdentity::generate().save(&no_dir),
        Err(IdentityError::KeyFileWrite { .. })
    ));
}

/// Any JSON value, nested a few levels (floats finite, as JSON allows).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn metadata() -> impl Strategy<Value = Metadata> {
    prop::collection::btree_map(any::<String>(), json_value(), 0..6)
        .prop_map(|m| m.into_iter().collect())
}

/// One identity for all cases: generation is not what is under test.
fn identity() -> &'static NodeIdentity {
    static ID: std::sync::OnceLock<NodeIdentity> = std::sync::OnceLock::new();
    ID.get_or_init(NodeIdentity::generate)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any metadata survives write -> parse, and the entry verifies with the same bytes.
    #[test]
    fn any_metadata_round_trips_and_verifies(
        node_id in "[a-zA-Z0-9_.-]{1,20}|\\PC{1,8}",
        host in "\\PC{1,20}",
        port in 1u16..,
        meta in metadata(),
        legacy in any::<bool>(),
    ) {
        let id = identity();
        let info = node_info_value(&node_id, &host, port, id.public_key().to_base64(), &meta);
        let bytes = canonical::to_sorted_bytes(&info);
        prop_assert!(bytes.is_ascii());
        let alg = if legacy { SignatureAlg::LegacySha1 } else { SignatureAlg::Es256 };
        let sig = id.sign_with(&bytes, alg).unwrap();
        let value = encode_entry(
            &info,
            &sig.to_base64(),
            (!legacy).then_some(SignatureAlg::ES256_NAME),
        );
        let entry = StoredEntry::parse(value.as_bytes()).unwrap();
        prop_assert_eq!(&entry.fields.metadata, &meta);
        prop_assert_eq!(&entry.fields.node_id, &node_id);
        prop_assert_eq!(entry.signed_bytes(), bytes);
        prop_assert_eq!(verify_entry(&entry), Ok(alg));
    }

    /// Changing any single byte of the signed message or of the signature breaks it.
    #[test]
    fn any_tampered_byte_fails(
        meta in metadata(),
        pick in any::<prop::sample::Index>(),
        flip in 1u8..,
        in_signature in any::<bool>(),
        legacy in any::<bool>(),
    ) {
        let id = identity();
        let info = node_info_value("n", "h", 1, id.public_key().to_base64(), &meta);
        let mut bytes = canonical::to_sorted_bytes(&info);
        let alg = if legacy { SignatureAlg::LegacySha1 } else { SignatureAlg::Es256 };
        let sig = id.sign_with(&bytes, alg).unwrap();
        if in_signature {
            let mut raw = *sig.as_bytes();
            raw[pick.index(raw.len())] ^= flip;
            let tampered = Signature::from_base64(&BASE64.encode(raw)).unwrap();
            prop_assert!(id.public_key().verify(&bytes, &tampered, alg).is_err());
        } else {
            let i = pick.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(id.public_key().verify(&bytes, &sig, alg).is_err());
        }
    }
}

#[test]
fn tampered_stored_entries_fail_verification() {
    let spec = spec();
    let sample = &spec["samples"]["unicode_metadata"];
    let value = sample["value_exact"].as_str().unwrap();
    for (from, to) in [
        ("\"port\": 9002", "\"port\": 9003"),
        ("agent-\\u00e9", "agent-\\u00e8"),
        ("\"host\": \"127.0.0.1\"", "\"host\": \"127.0.0.2\""),
        ("\"z\": \"1\"", "\"z\": \"1\", \"extra\": 1"),
    ] {
        let tampered = value.replacen(from, to, 1);
        assert_ne!(tampered, value);
        let entry = StoredEntry::parse(tampered.as_bytes()).unwrap();
        assert!(verify_entry(&entry).is_err(), "{from} -> {to}");
    }
    // An entry claiming ES256 with a SHA-1 signature fails; an unknown algorithm fails.
    let mut entry = StoredEntry::parse(value.as_bytes()).unwrap();
    entry.signature_alg = Some("ES256".into());
    assert!(verify_entry(&entry).is_err());
    entry.signature_alg = Some("RS256".into());
    assert!(matches!(
        verify_entry(&entry),
        Err(IdentityError::MalformedSignature(_))
    ));
}
