//! Fuzz target: structured tampering with valid signed entries.
//!
//! Starts from one of the samples (`isek_fuzz::samples::ENTRIES`) and applies a list
//! of edits to its signature, public key, `signature_alg` and `node_info` fields.
//! Oracle in both directions:
//! - if the edits changed what the entry vouches for (key bytes, signed bytes, hash,
//!   or signature other than the `s`-negated twin), it must NOT verify;
//! - if they did not (same value written again, base64 padded with spaces, `s`
//!   negated, fields reordered), and the entry still parses, it MUST verify.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use isek::etcd::verify_entry;
use isek::identity::SignatureAlg;
use isek::wire::etcd::StoredEntry;
use isek_fuzz::curve::malleated;
use isek_fuzz::samples::{Claim, ENTRIES};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};

/// A JSON leaf the fuzzer can write into a field.
#[derive(Arbitrary, Debug, Clone)]
enum Leaf {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
    EmptyObject,
    EmptyArray,
}

impl Leaf {
    fn to_value(&self) -> Value {
        match self {
            Leaf::Null => Value::Null,
            Leaf::Bool(b) => Value::Bool(*b),
            Leaf::Int(i) => Value::from(*i),
            Leaf::UInt(u) => Value::from(*u),
            Leaf::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Leaf::Text(s) => Value::String(s.clone()),
            Leaf::EmptyObject => Value::Object(Map::new()),
            Leaf::EmptyArray => Value::Array(Vec::new()),
        }
    }
}

/// A `node_info` field.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Field {
    NodeId,
    Host,
    Port,
    PublicKey,
    Metadata,
    Extra,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::NodeId => "node_id",
            Field::Host => "host",
            Field::Port => "port",
            Field::PublicKey => "public_key",
            Field::Metadata => "metadata",
            Field::Extra => "extra",
        }
    }
}

/// One edit.
#[derive(Arbitrary, Debug, Clone)]
enum Edit {
    /// Flip one bit of the raw signature.
    FlipSignatureBit(u16),
    /// Overwrite one byte of the raw signature.
    SetSignatureByte(u8, u8),
    /// Replace `s` by `n - s` (still valid).
    NegateS,
    /// Swap `r` and `s`.
    SwapRS,
    /// Flip one bit of the raw public key.
    FlipKeyBit(u16),
    /// Overwrite one byte of the raw public key.
    SetKeyByte(u8, u8),
    /// Use the public key of another sample.
    KeyOfSample(u8),
    /// Use the signature of another sample.
    SignatureOfSample(u8),
    /// Use the `node_info` of another sample.
    NodeInfoOfSample(u8),
    /// Set a `node_info` field to a leaf.
    SetField(Field, Leaf),
    /// Remove a `node_info` field.
    RemoveField(Field),
    /// Set (or add) a metadata entry.
    SetMetadata(String, Leaf),
    /// Remove the metadata entry with this index (in sorted order).
    RemoveMetadata(u8),
    /// Set `signature_alg` (None = remove: legacy SHA-1).
    SetAlg(Option<String>),
    /// Surround the base64 texts with whitespace (still the same bytes).
    PadBase64,
    /// Store the signature as raw text instead of base64.
    SignatureText(String),
    /// Store the public key as raw text instead of base64.
    KeyText(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    sample: u8,
    edits: Vec<Edit>,
}

/// An entry under construction.
struct Draft {
    node_info: Map<String, Value>,
    signature: Result<Vec<u8>, String>,
    key: Result<Vec<u8>, String>,
    alg: Option<String>,
    pad: bool,
}

fn sample(index: u8) -> StoredEntry {
    let text = ENTRIES[usize::from(index) % ENTRIES.len()];
    StoredEntry::parse(text.as_bytes()).unwrap_or_else(|e| panic!("sample: {e}"))
}

fn decode(s: &str) -> Vec<u8> {
    BASE64
        .decode(s)
        .unwrap_or_else(|e| panic!("sample base64: {e}"))
}

impl Draft {
    fn of(entry: &StoredEntry) -> Self {
        let Value::Object(node_info) = entry.node_info.clone() else {
            panic!("sample node_info is not an object");
        };
        Self {
            node_info,
            signature: Ok(decode(&entry.signature)),
            key: Ok(decode(&entry.fields.public_key)),
            alg: entry.signature_alg.clone(),
            pad: false,
        }
    }

    fn apply(&mut self, edit: &Edit) {
        fn flip(bytes: &mut Result<Vec<u8>, String>, bit: u16) {
            if let Ok(b) = bytes {
                if !b.is_empty() {
                    let bit = usize::from(bit) % (b.len() * 8);
                    b[bit / 8] ^= 1 << (bit % 8);
                }
            }
        }
        fn set(bytes: &mut Result<Vec<u8>, String>, at: u8, value: u8) {
            if let Ok(b) = bytes {
                if !b.is_empty() {
                    let at = usize::from(at) % b.len();
                    b[at] = value;
                }
            }
        }
        match edit {
            Edit::FlipSignatureBit(bit) => flip(&mut self.signature, *bit),
            Edit::SetSignatureByte(at, v) => set(&mut self.signature, *at, *v),
            Edit::NegateS => {
                if let Ok(sig) = &mut self.signature {
                    if let Ok(raw) = <[u8; 64]>::try_from(sig.as_slice()) {
                        if let Some(m) = malleated(&raw) {
                            *sig = m.to_vec();
                        }
                    }
                }
            }
            Edit::SwapRS => {
                if let Ok(sig) = &mut self.signature {
                    if sig.len() == 64 {
                        let (r, s) = sig.split_at_mut(32);
                        r.swap_with_slice(s);
                    }
                }
            }
            Edit::FlipKeyBit(bit) => flip(&mut self.key, *bit),
            Edit::SetKeyByte(at, v) => set(&mut self.key, *at, *v),
            Edit::KeyOfSample(i) => self.key = Ok(decode(&sample(*i).fields.public_key)),
            Edit::SignatureOfSample(i) => self.signature = Ok(decode(&sample(*i).signature)),
            Edit::NodeInfoOfSample(i) => {
                if let Value::Object(m) = sample(*i).node_info {
                    self.node_info = m;
                }
            }
            Edit::SetField(field, leaf) => {
                self.node_info
                    .insert(field.name().to_owned(), leaf.to_value());
            }
            Edit::RemoveField(field) => {
                self.node_info.remove(field.name());
            }
            Edit::SetMetadata(k, leaf) => {
                if let Some(Value::Object(m)) = self.node_info.get_mut("metadata") {
                    m.insert(k.clone(), leaf.to_value());
                }
            }
            Edit::RemoveMetadata(i) => {
                if let Some(Value::Object(m)) = self.node_info.get_mut("metadata") {
                    if let Some(k) = m.keys().nth(usize::from(*i) % m.len().max(1)).cloned() {
                        m.remove(&k);
                    }
                }
            }
            Edit::SetAlg(alg) => self.alg = alg.clone(),
            Edit::PadBase64 => self.pad = true,
            Edit::SignatureText(t) => self.signature = Err(t.clone()),
            Edit::KeyText(t) => self.key = Err(t.clone()),
        }
    }

    fn text(bytes: &Result<Vec<u8>, String>, pad: bool) -> String {
        match bytes {
            Ok(b) if pad => format!(" \t{}\n", BASE64.encode(b)),
            Ok(b) => BASE64.encode(b),
            Err(t) => t.clone(),
        }
    }

    /// The stored value (public key written into `node_info`, as signing does).
    fn value(&self) -> Vec<u8> {
        let mut node_info = self.node_info.clone();
        node_info.insert(
            "public_key".into(),
            Value::String(Self::text(&self.key, self.pad)),
        );
        let mut root = Map::new();
        root.insert("node_info".into(), Value::Object(node_info));
        root.insert(
            "signature".into(),
            Value::String(Self::text(&self.signature, self.pad)),
        );
        if let Some(alg) = &self.alg {
            root.insert("signature_alg".into(), Value::String(alg.clone()));
        }
        serde_json::to_vec(&Value::Object(root)).unwrap_or_else(|e| panic!("encode: {e}"))
    }
}

fuzz_target!(|input: Input| {
    if input.edits.len() > 16 {
        return;
    }
    let mut draft = Draft::of(&sample(input.sample));
    for edit in &input.edits {
        draft.apply(edit);
    }
    // SetField/RemoveField of `public_key` are overridden: the key is written last.
    let value = draft.value();
    let Ok(entry) = StoredEntry::parse(&value) else {
        return;
    };
    let verified = verify_entry(&entry);
    let alg = match SignatureAlg::from_entry_field(entry.signature_alg.as_deref()) {
        Some(alg) => alg,
        None => {
            assert!(
                verified.is_err(),
                "unknown signature_alg verified: {entry:?}"
            );
            return;
        }
    };
    let claim = Claim::of(&entry, alg);
    let legitimate = claim.as_ref().is_some_and(Claim::is_known);
    match (&verified, legitimate) {
        (Ok(_), false) => panic!(
            "FORGERY: tampered entry verified: {:?} edits {:?}",
            String::from_utf8_lossy(&value),
            input.edits
        ),
        (Err(e), true) => panic!(
            "valid entry refused ({e}): {:?} edits {:?}",
            String::from_utf8_lossy(&value),
            input.edits
        ),
        _ => {}
    }
});
