//! `CoreRegistry`: one center or etcd client, as the Python classes use it.
//!
//! It wraps an `isek` backend (`IsekCenterRegistry` or `EtcdRegistry`) behind
//! `Arc<dyn Registry>` and adds one thing the original Python classes lack: a
//! `lease_refresh` that finds the node gone (center restarted on an empty store, lease
//! lost in a long network cut) registers it again with the entry this object last
//! registered, so a program that only ever calls `lease_refresh` stays listed.
//!
//! Every call blocks the calling Python thread with the GIL released and honours
//! Ctrl-C (see [`crate::runtime::block_on`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use isek::etcd::{EtcdConfig, EtcdRegistry};
use isek::{CenterConfig, Error, IsekCenterRegistry, Metadata, Registry};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert;
use crate::errors::ErrorTable;
use crate::identity::PyNodeIdentity;
use crate::peers::PyPeerView;
use crate::runtime::block_on;
use crate::watch::Watch;

/// Registrations remembered for re-registering after a lost lease; past this many
/// distinct live node ids, new ones are registered but not remembered (their
/// `lease_refresh` then reports `NotFound` like the original).
pub const MAX_REMEMBERED: usize = 10_000;

/// What a node was last registered with.
#[derive(Debug, Clone)]
struct Remembered {
    /// Host registered.
    host: String,
    /// Port registered.
    port: u16,
    /// Metadata registered.
    metadata: Metadata,
}

/// The concrete backend, for what only one of them offers.
#[derive(Debug, Clone)]
enum Backend {
    /// An Isek Center over HTTP.
    Center(IsekCenterRegistry),
    /// etcd.
    Etcd(EtcdRegistry),
}

/// What calls share (also moved into the futures that run them).
struct Shared {
    /// The backend as the trait the runtime uses.
    registry: Arc<dyn Registry>,
    /// The concrete backend.
    backend: Backend,
    /// Registrations to repeat when a lease turns out lost.
    remembered: Mutex<HashMap<String, Remembered>>,
}

impl Shared {
    /// The remembered registrations, even after a panic elsewhere poisoned the lock.
    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<String, Remembered>> {
        self.remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Register and remember.
    async fn register(
        &self,
        node_id: String,
        host: String,
        port: u16,
        metadata: Metadata,
    ) -> isek::Result<()> {
        self.registry
            .register_node(&node_id, &host, port, metadata.clone())
            .await?;
        let mut remembered = self.remembered();
        if remembered.len() < MAX_REMEMBERED || remembered.contains_key(&node_id) {
            remembered.insert(
                node_id,
                Remembered {
                    host,
                    port,
                    metadata,
                },
            );
        }
        Ok(())
    }

    /// Renew; when the registry no longer knows the node, register it again.
    async fn refresh(&self, node_id: String) -> isek::Result<()> {
        match self.registry.lease_refresh(&node_id).await {
            Err(Error::NotFound(message)) => {
                let known = self.remembered().get(&node_id).cloned();
                let Some(entry) = known else {
                    return Err(Error::NotFound(message));
                };
                self.registry
                    .register_node(&node_id, &entry.host, entry.port, entry.metadata)
                    .await
            }
            other => other,
        }
    }

    /// Deregister and forget.
    async fn deregister(&self, node_id: String) -> isek::Result<()> {
        let result = self.registry.deregister_node(&node_id).await;
        if matches!(result, Ok(()) | Err(Error::NotFound(_))) {
            self.remembered().remove(&node_id);
        }
        result
    }
}

/// A registry client (center or etcd) with ISEK's four operations.
#[pyclass(module = "isek_rs._core", frozen)]
pub struct CoreRegistry {
    /// Backend and remembered registrations.
    shared: Arc<Shared>,
    /// The exception classes this object raises.
    pub(crate) errors: Arc<ErrorTable>,
    /// The etcd lease TTL in seconds; `None` for a center (its operator sets it).
    ttl: Option<f64>,
    /// Where it points, for `repr`.
    label: String,
}

impl CoreRegistry {
    /// The backend as the runtime's trait object.
    pub(crate) fn registry(&self) -> Arc<dyn Registry> {
        Arc::clone(&self.shared.registry)
    }

    /// The etcd lease TTL, if this is etcd.
    pub(crate) fn ttl(&self) -> Option<f64> {
        self.ttl
    }
}

/// The error table given, or the package's plain classes.
fn table(py: Python<'_>, errors: Option<&Bound<'_, PyAny>>) -> PyResult<Arc<ErrorTable>> {
    match errors {
        Some(mapping) if !mapping.is_none() => ErrorTable::from_mapping(mapping),
        _ => ErrorTable::plain(py),
    }
}

/// A duration from seconds given by Python.
pub(crate) fn seconds(what: &str, value: f64) -> PyResult<Duration> {
    if value.is_nan() || value <= 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must be a positive number of seconds, got {value}"
        )));
    }
    Duration::try_from_secs_f64(value)
        .map_err(|e| PyValueError::new_err(format!("{what} {value}: {e}")))
}

/// A port from Python, or the invalid-argument error the registry would give.
fn port(value: &Bound<'_, PyAny>) -> Result<u16, Error> {
    value.extract::<u16>().map_err(|_| {
        Error::InvalidArgument(format!(
            "port must be an integer from 1 to 65535, got {}",
            value
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_else(|_| "?".into())
        ))
    })
}

#[pymethods]
impl CoreRegistry {
    /// A client of the Isek Center at `url` (`http://` or `https://`). With an
    /// `identity`, registrations are signed and renewals prove ownership with the lease
    /// token the center returns; without one it speaks the original's unsigned protocol.
    #[staticmethod]
    #[pyo3(signature = (url, identity=None, errors=None, timeout=10.0, renew_timeout=5.0, ca_file=None))]
    fn center(
        py: Python<'_>,
        url: String,
        identity: Option<PyRef<'_, PyNodeIdentity>>,
        errors: Option<&Bound<'_, PyAny>>,
        timeout: f64,
        renew_timeout: f64,
        ca_file: Option<PathBuf>,
    ) -> PyResult<Self> {
        let errors = table(py, errors)?;
        let mut config = CenterConfig::new(url.clone());
        config.timeout = seconds("timeout", timeout)?;
        config.renew_timeout = seconds("renew_timeout", renew_timeout)?;
        config.ca_file = ca_file;
        let mut client = errors.check(py, IsekCenterRegistry::with_config(config))?;
        if let Some(identity) = identity {
            client = client.with_identity(identity.inner.clone());
        }
        Ok(Self::wrap(
            Backend::Center(client.clone()),
            Arc::new(client),
            errors,
            None,
            url,
        ))
    }

    /// A client writing ISEK entries into etcd at `endpoints` under
    /// `/{parent_node_id}/`, signing them with `identity` (a fresh one if `None`).
    /// Connects before returning (`Unavailable` if etcd cannot be reached in `timeout`).
    #[staticmethod]
    #[pyo3(signature = (endpoints, parent_node_id="root".to_owned(), ttl=30.0, identity=None, errors=None, timeout=5.0))]
    fn etcd(
        py: Python<'_>,
        endpoints: Vec<String>,
        parent_node_id: String,
        ttl: f64,
        identity: Option<PyRef<'_, PyNodeIdentity>>,
        errors: Option<&Bound<'_, PyAny>>,
        timeout: f64,
    ) -> PyResult<Self> {
        let errors = table(py, errors)?;
        let config = EtcdConfig::new(endpoints.clone())
            .parent(parent_node_id)
            .ttl(seconds("ttl", ttl)?)
            .timeout(seconds("timeout", timeout)?);
        let identity = identity
            .map(|i| i.inner.clone())
            .unwrap_or_else(isek::identity::NodeIdentity::generate);
        let connected = block_on(py, async move {
            let registry = EtcdRegistry::connect(config, identity).await?;
            // Connecting is lazy for some endpoints: one read proves etcd answers.
            let mut client = registry.client().clone();
            client
                .status()
                .await
                .map_err(|e| Error::Unavailable(format!("etcd does not answer: {e}")))?;
            Ok::<_, Error>(registry)
        })?;
        let client = errors.check(py, connected)?;
        Ok(Self::wrap(
            Backend::Etcd(client.clone()),
            Arc::new(client),
            errors,
            Some(ttl),
            endpoints.join(","),
        ))
    }

    /// Registers `node_id` (or replaces its entry) with a fresh lease.
    #[pyo3(signature = (node_id, host, port, metadata=None))]
    fn register_node(
        &self,
        py: Python<'_>,
        node_id: String,
        host: String,
        port: &Bound<'_, PyAny>,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let port = self.errors.check(py, self::port(port))?;
        let metadata = convert::metadata(metadata)?.map_err(Error::InvalidArgument);
        let metadata = self.errors.check(py, metadata)?;
        let shared = Arc::clone(&self.shared);
        let result = block_on(py, async move {
            shared.register(node_id, host, port, metadata).await
        })?;
        self.errors.check(py, result)
    }

    /// Extends the node's lease; registers it again if the registry lost it and this
    /// object registered it before.
    fn lease_refresh(&self, py: Python<'_>, node_id: String) -> PyResult<()> {
        let shared = Arc::clone(&self.shared);
        let result = block_on(py, async move { shared.refresh(node_id).await })?;
        self.errors.check(py, result)
    }

    /// Removes the node at once.
    fn deregister_node(&self, py: Python<'_>, node_id: String) -> PyResult<()> {
        let shared = Arc::clone(&self.shared);
        let result = block_on(py, async move { shared.deregister(node_id).await })?;
        self.errors.check(py, result)
    }

    /// Every live node, keyed by node id.
    fn get_available_nodes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let registry = Arc::clone(&self.shared.registry);
        let result = block_on(py, async move { registry.get_available_nodes().await })?;
        let nodes = self.errors.check(py, result)?;
        convert::nodes_dict(py, &nodes)
    }

    /// The lease token the center returned for `node_id`'s signed registration.
    fn lease_token(&self, node_id: &str) -> Option<String> {
        match &self.shared.backend {
            Backend::Center(center) => center.lease_token(node_id),
            Backend::Etcd(_) => None,
        }
    }

    /// The public key entries are signed with, if any (always, for etcd).
    #[getter]
    fn public_key(&self) -> Option<String> {
        match &self.shared.backend {
            Backend::Center(_) => None,
            Backend::Etcd(etcd) => Some(etcd.identity().public_key().to_base64().to_owned()),
        }
    }

    /// The etcd lease TTL in seconds (`None` for a center).
    #[getter(ttl)]
    fn ttl_seconds(&self) -> Option<f64> {
        self.ttl
    }

    /// Membership changes: the current nodes as joins, then every join, update and
    /// leave. Streams when the backend can, else polls every `poll_interval` seconds.
    #[pyo3(signature = (poll_interval=5.0, exclude=None, capacity=1024))]
    fn watch(
        &self,
        poll_interval: f64,
        exclude: Option<String>,
        capacity: usize,
    ) -> PyResult<Watch> {
        let config = PyPeerView::config(poll_interval, exclude, capacity)?;
        Watch::start(self.registry(), config, capacity, Arc::clone(&self.errors))
    }

    /// A live view of the membership with lookups.
    #[pyo3(signature = (poll_interval=5.0, exclude=None))]
    fn peer_view(&self, poll_interval: f64, exclude: Option<String>) -> PyResult<PyPeerView> {
        let config = PyPeerView::config(poll_interval, exclude, 1024)?;
        PyPeerView::start(self.registry(), config)
    }

    fn __repr__(&self) -> String {
        let kind = match &self.shared.backend {
            Backend::Center(_) => "center",
            Backend::Etcd(_) => "etcd",
        };
        format!("CoreRegistry({kind} {})", self.label)
    }
}

impl CoreRegistry {
    /// Assembles the object.
    fn wrap(
        backend: Backend,
        registry: Arc<dyn Registry>,
        errors: Arc<ErrorTable>,
        ttl: Option<f64>,
        label: String,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                registry,
                backend,
                remembered: Mutex::new(HashMap::new()),
            }),
            errors,
            ttl,
            label,
        }
    }
}
