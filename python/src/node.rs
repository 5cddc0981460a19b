//! `Node`: a node kept registered from Rust while a `with` block runs.
//!
//! Drives `isek::runtime::Node` on the module's runtime: register on enter, renew at a
//! third of the TTL with jitter, register again when the registry forgot the node,
//! back off while it is unreachable, and deregister on exit, so peers see the node
//! leave at once. Usable with `with` and `async with`, or `start()`/`stop()`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use isek::runtime::{NodeHandle, NodeState};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert;
use crate::errors::ErrorTable;
use crate::peers::PyPeerView;
use crate::registry::{CoreRegistry, seconds};
use crate::runtime::{block_on, into_asyncio};

/// Where the node is in its life.
enum Phase {
    /// Configured, not started.
    New(Box<isek::Node>),
    /// Starting (between `start` and its answer).
    Starting,
    /// Running.
    Running(Arc<NodeHandle>),
    /// Stopped (or failed to start); cannot be started again.
    Done,
}

/// A node registered and kept alive in the background. Dropped while running, it
/// stops renewing without deregistering (the entry expires, as after a crash).
#[pyclass(name = "Node", module = "isek_rs._core", frozen)]
pub struct PyNode {
    /// The node's phase.
    phase: Mutex<Phase>,
    /// The id it registers under.
    node_id: String,
    /// The registry's exception classes.
    errors: Arc<ErrorTable>,
}

/// Seconds since the Unix epoch.
fn unix(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The core registry behind a Python registry object (ours, or its `_core`).
fn core<'py>(registry: &Bound<'py, PyAny>) -> PyResult<Bound<'py, CoreRegistry>> {
    if let Ok(core) = registry.cast::<CoreRegistry>() {
        return Ok(core.clone());
    }
    registry
        .getattr("_core")
        .ok()
        .and_then(|inner| inner.cast_into::<CoreRegistry>().ok())
        .ok_or_else(|| {
            pyo3::exceptions::PyTypeError::new_err(
                "registry must be an isek_rs IsekCenterRegistry or EtcdRegistry",
            )
        })
}

impl PyNode {
    /// The phase, even after a panic elsewhere poisoned the lock.
    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The running handle, if any.
    fn handle(&self) -> Option<Arc<NodeHandle>> {
        match &*self.phase() {
            Phase::Running(handle) => Some(Arc::clone(handle)),
            _ => None,
        }
    }

    /// Takes the configuration to start it.
    fn take_config(&self) -> PyResult<isek::Node> {
        let mut phase = self.phase();
        match std::mem::replace(&mut *phase, Phase::Starting) {
            Phase::New(node) => Ok(*node),
            other => {
                *phase = other;
                Err(PyRuntimeError::new_err("the node was already started"))
            }
        }
    }

    /// Records the outcome of a start.
    fn started(&self, outcome: isek::Result<NodeHandle>) -> isek::Result<()> {
        let mut phase = self.phase();
        match outcome {
            Ok(handle) => {
                *phase = Phase::Running(Arc::new(handle));
                Ok(())
            }
            Err(error) => {
                *phase = Phase::Done;
                Err(error)
            }
        }
    }

    /// Takes the handle to stop it.
    fn take_handle(&self) -> Option<Arc<NodeHandle>> {
        let mut phase = self.phase();
        match std::mem::replace(&mut *phase, Phase::Done) {
            Phase::Running(handle) => Some(handle),
            Phase::New(_) | Phase::Done => None,
            Phase::Starting => {
                *phase = Phase::Starting;
                None
            }
        }
    }
}

/// Stops a node: deregisters, then drops the handle (which stops its peer view).
async fn shutdown(handle: Option<Arc<NodeHandle>>) -> isek::Result<()> {
    match handle {
        Some(handle) => handle.shutdown().await,
        None => Ok(()),
    }
}

#[pymethods]
impl PyNode {
    /// A node to keep registered in `registry` at `host:port`.
    ///
    /// `ttl` is the lease the registry grants (default: an etcd registry's own TTL,
    /// else 30 s, the center's default); renewals come every third of it.
    #[new]
    #[pyo3(signature = (registry, host, port, *, node_id=None, metadata=None, ttl=None, follow_peers=true, include_self=false, poll_interval=5.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        registry: &Bound<'_, PyAny>,
        host: String,
        port: u16,
        node_id: Option<String>,
        metadata: Option<&Bound<'_, PyAny>>,
        ttl: Option<f64>,
        follow_peers: bool,
        include_self: bool,
        poll_interval: f64,
    ) -> PyResult<Self> {
        let core = core(registry)?;
        let core = core.get();
        let metadata = convert::metadata(metadata)?.map_err(PyValueError::new_err)?;
        let ttl = seconds("ttl", ttl.or(core.ttl()).unwrap_or(30.0))?;
        let peers = if follow_peers {
            Some(PyPeerView::config(poll_interval, None, 1024)?)
        } else {
            None
        };
        let mut node = isek::Node::new(core.registry(), host, port)
            .metadata(metadata)
            .ttl(ttl)
            .peer_view(peers)
            .include_self(include_self);
        if let Some(id) = node_id {
            node = node.node_id(id);
        }
        Ok(Self {
            node_id: node.id().to_owned(),
            phase: Mutex::new(Phase::New(Box::new(node))),
            errors: Arc::clone(&core.errors),
        })
    }

    /// Registers the node and starts keeping it alive. Raises if the registry refuses
    /// it for good; if the registry is merely unreachable, the node starts `lost` and
    /// keeps trying in the background.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let node = self.take_config()?;
        let outcome = block_on(py, node.start());
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(interrupted) => {
                *self.phase() = Phase::Done;
                return Err(interrupted);
            }
        };
        self.errors.check(py, self.started(outcome))
    }

    /// Stops renewing and deregisters the node. Idempotent.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.take_handle();
        let result = block_on(py, shutdown(handle))?;
        self.errors.check(py, result)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyResult<PyRef<'_, Self>> {
        slf.start(slf.py())?;
        Ok(slf)
    }

    /// Stops the node; a failed deregistration is raised unless the block raised.
    #[pyo3(signature = (exc_type, _exc_value, _traceback))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: &Bound<'_, PyAny>,
        _exc_value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        match self.stop(py) {
            Err(error) if exc_type.is_none() => Err(error),
            _ => Ok(false),
        }
    }

    fn __aenter__<'py>(slf: PyRef<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let node = slf.take_config()?;
        let this: Py<PyNode> = slf.into_pyobject(py)?.unbind();
        into_asyncio(py, node.start(), move |py, outcome| {
            let bound = this.bind(py);
            let node = bound.get();
            node.errors.check(py, node.started(outcome))?;
            Ok(bound.clone().into_any())
        })
    }

    #[pyo3(signature = (exc_type, _exc_value, _traceback))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        exc_type: &Bound<'py, PyAny>,
        _exc_value: &Bound<'py, PyAny>,
        _traceback: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.take_handle();
        let errors = Arc::clone(&self.errors);
        let raise = exc_type.is_none();
        into_asyncio(py, shutdown(handle), move |py, result| match result {
            Err(error) if raise => Err(errors.to_py(py, &error)),
            _ => Ok(false.into_pyobject(py)?.to_owned().into_any()),
        })
    }

    /// The id the node registers under (random hex unless given).
    #[getter]
    fn node_id(&self) -> &str {
        &self.node_id
    }

    /// `"new"`, `"registered"`, `"retrying"`, `"lost"`, `"stopped"` or `"failed"`.
    #[getter]
    fn state(&self) -> &'static str {
        match &*self.phase() {
            Phase::New(_) | Phase::Starting => "new",
            Phase::Done => "stopped",
            Phase::Running(handle) => state_name(&handle.state()),
        }
    }

    /// The state with details: `{"state", "since", "attempts", "error"}`.
    fn state_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let info = PyDict::new(py);
        let state = self.handle().map(|h| h.state());
        info.set_item("state", self.state())?;
        let (since, attempts, error) = match &state {
            Some(NodeState::Registered { since }) => (Some(unix(*since)), 0, None),
            Some(NodeState::Retrying {
                since,
                attempts,
                last_error,
            }) => (Some(unix(*since)), *attempts, Some(last_error.to_string())),
            Some(NodeState::Lost {
                since,
                attempts,
                last_error,
            }) => (
                Some(unix(*since)),
                *attempts,
                last_error.as_ref().map(ToString::to_string),
            ),
            Some(NodeState::Unhealthy {
                since,
                failures,
                last_error,
            }) => (Some(unix(*since)), *failures, Some(last_error.clone())),
            Some(NodeState::Failed(error)) => (None, 0, Some(error.to_string())),
            Some(NodeState::Stopped) | None => (None, 0, None),
        };
        info.set_item("since", since)?;
        info.set_item("attempts", attempts)?;
        info.set_item("error", error)?;
        Ok(info)
    }

    /// Whether the node holds a live lease now.
    #[getter]
    fn registered(&self) -> bool {
        self.handle().is_some_and(|h| h.state().is_registered())
    }

    /// Waits until the node is registered; `False` if `timeout` seconds passed first
    /// or the node stopped.
    #[pyo3(signature = (timeout=None))]
    fn wait_registered(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let Some(handle) = self.handle() else {
            return Ok(false);
        };
        let limit = timeout
            .map(|t| {
                Duration::try_from_secs_f64(t.max(0.0))
                    .map_err(|e| PyValueError::new_err(format!("timeout {t}: {e}")))
            })
            .transpose()?;
        let mut states = handle.states();
        drop(handle);
        block_on(py, async move {
            let registered = states.wait_for(|state| {
                state.is_registered() || matches!(state, NodeState::Stopped | NodeState::Failed(_))
            });
            match limit {
                Some(limit) => match tokio::time::timeout(limit, registered).await {
                    Ok(Ok(state)) => state.is_registered(),
                    _ => false,
                },
                None => registered.await.is_ok_and(|state| state.is_registered()),
            }
        })
    }

    /// The node's live view of its peers (empty once the node stopped).
    #[getter]
    fn peers(&self) -> PyResult<PyPeerView> {
        match &*self.phase() {
            Phase::Running(handle) if handle.peer_view().is_some() => {
                Ok(PyPeerView::of_node(handle))
            }
            Phase::Running(_) => Err(PyRuntimeError::new_err(
                "the node was created with follow_peers=False",
            )),
            _ => Err(PyRuntimeError::new_err("the node is not running")),
        }
    }

    fn __repr__(&self) -> String {
        format!("Node(node_id={:?}, state={:?})", self.node_id, self.state())
    }
}

/// The name of a state.
fn state_name(state: &NodeState) -> &'static str {
    match state {
        NodeState::Registered { .. } => "registered",
        NodeState::Retrying { .. } => "retrying",
        NodeState::Lost { .. } => "lost",
        NodeState::Unhealthy { .. } => "unhealthy",
        NodeState::Stopped => "stopped",
        NodeState::Failed(_) => "failed",
    }
}
