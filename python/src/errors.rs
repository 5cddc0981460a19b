//! Which Python exception each [`isek::Error`] kind raises.
//!
//! The exception classes live in Python (`isek_rs/errors.py`), where they can also
//! inherit from the classes ISEK 0.2.1 raises (`requests.HTTPError` for a center,
//! `ValueError` for etcd). Each registry object carries an [`ErrorTable`] from kind
//! name to class, so the drop-in classes raise what the original raised in the same
//! place, and every class still derives from `isek_rs.IsekError` and its kind class.

use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

/// The kind names, in [`kind_index`] order: the Rust variant names.
pub const KINDS: [&str; 6] = [
    "NotFound",
    "Conflict",
    "InvalidArgument",
    "PermissionDenied",
    "Unavailable",
    "Backend",
];

/// Position of an error's kind in [`KINDS`].
fn kind_index(error: &isek::Error) -> usize {
    match error {
        isek::Error::NotFound(_) => 0,
        isek::Error::Conflict(_) => 1,
        isek::Error::InvalidArgument(_) => 2,
        isek::Error::PermissionDenied(_) => 3,
        isek::Error::Unavailable(_) => 4,
        isek::Error::Backend(_) => 5,
    }
}

/// The text of an error without its kind prefix (the class already names the kind).
fn message(error: &isek::Error) -> &str {
    match error {
        isek::Error::NotFound(m)
        | isek::Error::Conflict(m)
        | isek::Error::InvalidArgument(m)
        | isek::Error::PermissionDenied(m)
        | isek::Error::Unavailable(m)
        | isek::Error::Backend(m) => m,
    }
}

/// One exception class per error kind.
#[derive(Debug)]
pub struct ErrorTable {
    /// Classes in [`KINDS`] order.
    classes: Vec<Py<PyType>>,
}

impl ErrorTable {
    /// Reads `{kind name: exception class}`; every kind must be present.
    pub fn from_mapping(mapping: &Bound<'_, PyAny>) -> PyResult<Arc<Self>> {
        let mapping = mapping
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err("errors must be a dict of kind name to class"))?;
        let mut classes = Vec::with_capacity(KINDS.len());
        for kind in KINDS {
            let class = mapping
                .get_item(kind)?
                .ok_or_else(|| PyTypeError::new_err(format!("errors lacks the kind {kind}")))?;
            let class = class
                .cast_into::<PyType>()
                .map_err(|_| PyTypeError::new_err(format!("errors[{kind:?}] is not a class")))?;
            classes.push(class.unbind());
        }
        Ok(Arc::new(Self { classes }))
    }

    /// The package's plain classes (`isek_rs.errors.KIND_CLASSES`).
    pub fn plain(py: Python<'_>) -> PyResult<Arc<Self>> {
        let classes = py.import("isek_rs.errors")?.getattr("KIND_CLASSES")?;
        Self::from_mapping(&classes)
    }

    /// The Python exception for `error`, with the error's message.
    pub fn to_py(&self, py: Python<'_>, error: &isek::Error) -> PyErr {
        let class = self.classes[kind_index(error)].bind(py).clone();
        PyErr::from_type(class, (message(error).to_owned(),))
    }

    /// Maps a Rust result into a Python one.
    pub fn check<T>(&self, py: Python<'_>, result: isek::Result<T>) -> PyResult<T> {
        result.map_err(|error| self.to_py(py, &error))
    }
}
