//! JSON values and node entries between Rust and Python.
//!
//! Python values convert the way `json.dumps` takes them (dict with string keys,
//! list or tuple, str, int, float, bool, None; anything else is a `TypeError`, as in
//! `json.dumps`), and back the way `json.loads` gives them. Nesting is bounded by
//! [`MAX_DEPTH`] so a self-referencing dict is an error, not a stack overflow.

use std::collections::BTreeMap;

use isek::{Metadata, NodeInfo};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Number, Value};

/// Deepest nesting accepted from Python (a JSON parser's usual limit).
pub const MAX_DEPTH: usize = 128;

/// A Python value as JSON.
pub fn to_json(value: &Bound<'_, PyAny>) -> PyResult<Value> {
    to_json_at(value, 0)
}

/// [`to_json`] at nesting `depth`.
fn to_json_at(value: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "metadata nests deeper than {MAX_DEPTH} levels (circular reference?)"
        )));
    }
    if value.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(flag) = value.cast::<PyBool>() {
        return Ok(Value::Bool(flag.is_true()));
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(Value::String(text.to_cow()?.into_owned()));
    }
    if value.cast::<PyInt>().is_ok() {
        if let Ok(n) = value.extract::<i64>() {
            return Ok(Value::Number(n.into()));
        }
        if let Ok(n) = value.extract::<u64>() {
            return Ok(Value::Number(n.into()));
        }
        return Err(PyValueError::new_err("integer out of the 64-bit range"));
    }
    if let Ok(float) = value.cast::<PyFloat>() {
        return Number::from_f64(float.value())
            .map(Value::Number)
            .ok_or_else(|| {
                PyValueError::new_err("Out of range float values are not JSON compliant")
            });
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (key, item) in dict.iter() {
            map.insert(key_string(&key)?, to_json_at(&item, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(list) = value.cast::<PyList>() {
        return list
            .iter()
            .map(|item| to_json_at(&item, depth + 1))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    if let Ok(tuple) = value.cast::<PyTuple>() {
        return tuple
            .iter()
            .map(|item| to_json_at(&item, depth + 1))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    Err(PyTypeError::new_err(format!(
        "Object of type {} is not JSON serializable",
        value.get_type().name()?
    )))
}

/// A dict key as `json.dumps` writes it: str as is; int, float, bool and None as text.
fn key_string(key: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(text) = key.cast::<PyString>() {
        return Ok(text.to_cow()?.into_owned());
    }
    match to_json_at(key, MAX_DEPTH)? {
        Value::Null => Ok("null".to_owned()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(PyTypeError::new_err(format!(
            "keys must be str, int, float, bool or None, not {}",
            key.get_type().name()?
        ))),
    }
}

/// Metadata as ISEK takes it: `metadata or {}`; `Err` names what is wrong when the
/// value is JSON but not an object (a registry refuses that as an invalid argument).
pub fn metadata(value: Option<&Bound<'_, PyAny>>) -> PyResult<Result<Metadata, String>> {
    let Some(value) = value else {
        return Ok(Ok(Metadata::new()));
    };
    if !value.is_truthy()? {
        return Ok(Ok(Metadata::new()));
    }
    Ok(match to_json(value)? {
        Value::Object(map) => Ok(map),
        other => Err(format!(
            "metadata must be a JSON object, not {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )),
    })
}

/// A JSON value as the Python object `json.loads` would give.
pub fn from_json<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(from_json(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => metadata_dict(py, map)?.into_any(),
    })
}

/// A JSON object as a dict.
fn metadata_dict<'py>(py: Python<'py>, map: &Metadata) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, item) in map {
        dict.set_item(key, from_json(py, item)?)?;
    }
    Ok(dict)
}

/// A node as ISEK's registries list it: `node_id`, `host`, `port`, `metadata`, plus
/// `public_key` when the entry is signed (etcd) and `expires_at` when the backend
/// reports the lease deadline (a center).
pub fn node_dict<'py>(py: Python<'py>, node: &NodeInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("node_id", &node.node_id)?;
    dict.set_item("host", &node.host)?;
    dict.set_item("port", node.port)?;
    if let Some(key) = &node.public_key {
        dict.set_item("public_key", key)?;
    }
    dict.set_item("metadata", metadata_dict(py, &node.metadata)?)?;
    if let Some(expires_at) = node.expires_at {
        dict.set_item("expires_at", expires_at)?;
    }
    Ok(dict)
}

/// Nodes keyed by id, as `get_available_nodes()` returns them.
pub fn nodes_dict<'py>(
    py: Python<'py>,
    nodes: &BTreeMap<String, NodeInfo>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (id, node) in nodes {
        dict.set_item(id, node_dict(py, node)?)?;
    }
    Ok(dict)
}

/// Whether `node`'s metadata has every key of `wanted` with an equal value.
pub fn metadata_matches(node: &NodeInfo, wanted: &Metadata) -> bool {
    wanted
        .iter()
        .all(|(key, value)| node.metadata.get(key) == Some(value))
}
