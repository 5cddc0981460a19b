//! `NodeIdentity`: a node's own P-256 key, the proof that it owns its entry.
//!
//! The same key files as `isek keygen` (PKCS#8 PEM, mode 0600, never overwritten);
//! a registry given an identity signs its registrations with it (etcd entries, signed
//! center registrations with lease tokens).

use isek::identity::NodeIdentity;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::ErrorTable;

/// A node's P-256 key pair.
#[pyclass(name = "NodeIdentity", module = "isek_rs._core", frozen)]
#[derive(Clone)]
pub struct PyNodeIdentity {
    /// The key.
    pub(crate) inner: NodeIdentity,
}

/// Maps an identity error to the package's exception classes.
fn raise(py: Python<'_>, error: isek::identity::IdentityError) -> PyErr {
    match ErrorTable::plain(py) {
        Ok(table) => table.to_py(py, &isek::Error::from(error)),
        Err(import_failed) => import_failed,
    }
}

#[pymethods]
impl PyNodeIdentity {
    /// A fresh random key pair.
    #[staticmethod]
    fn generate() -> Self {
        Self {
            inner: NodeIdentity::generate(),
        }
    }

    /// Loads a PKCS#8 PEM key file (from `isek keygen` or `NodeIdentity.save`).
    #[staticmethod]
    fn load(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        NodeIdentity::load(&path)
            .map(|inner| Self { inner })
            .map_err(|e| raise(py, e))
    }

    /// Parses a PKCS#8 PEM private key.
    #[staticmethod]
    fn from_pem(py: Python<'_>, pem: &str) -> PyResult<Self> {
        NodeIdentity::from_pkcs8_pem(pem)
            .map(|inner| Self { inner })
            .map_err(|e| raise(py, e))
    }

    /// The private key as PKCS#8 PEM text.
    fn to_pem(&self, py: Python<'_>) -> PyResult<String> {
        self.inner.to_pkcs8_pem().map_err(|e| raise(py, e))
    }

    /// Writes the key to a new file (mode 0600); refuses to overwrite one.
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        self.inner.save(&path).map_err(|e| raise(py, e))
    }

    /// The public key as ISEK stores it: base64 of the raw 64-byte `X||Y`.
    #[getter]
    fn public_key(&self) -> String {
        self.inner.public_key().to_base64().to_owned()
    }

    /// Signs `message` (ECDSA P-256, SHA-256); returns the raw 64-byte `r||s`.
    fn sign<'py>(&self, py: Python<'py>, message: &[u8]) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.sign(message).as_bytes())
    }

    /// Signs `message` the way ISEK 0.2.1 does (SHA-1, deterministic nonce).
    fn sign_legacy<'py>(&self, py: Python<'py>, message: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let signature = self
            .inner
            .sign_legacy_sha1(message)
            .map_err(|e| raise(py, e))?;
        Ok(PyBytes::new(py, signature.as_bytes()))
    }

    fn __repr__(&self) -> String {
        format!("NodeIdentity(public_key={:?})", self.public_key())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Self>()
            .is_ok_and(|o| o.get().public_key() == self.public_key())
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.public_key().hash(&mut hasher);
        hasher.finish()
    }
}
