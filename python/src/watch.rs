//! `Watch`: membership changes as an iterator and an async iterator.
//!
//! A Rust task follows the registry through a `PeerView` (change stream, or polling
//! where the backend has none) and forwards every change into a bounded channel: first
//! the current nodes as joins, then each join, update and leave. When the consumer is
//! too slow and the view resyncs it, the task turns the fresh full list into the
//! joins, updates and leaves that bring the consumer up to date, so nothing is lost
//! and memory stays bounded by the channel capacity and the membership.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use isek::runtime::{PeerChange, PeerUpdate};
use isek::{NodeInfo, PeerView, PeerViewConfig, Registry};
use pyo3::exceptions::{PyStopAsyncIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::{Mutex, mpsc};
use tokio::task::AbortHandle;

use crate::convert;
use crate::errors::ErrorTable;
use crate::runtime::{block_on, into_asyncio, runtime};

/// One membership change.
#[pyclass(module = "isek_rs._core", frozen)]
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// `"join"`, `"update"` or `"leave"`.
    kind: &'static str,
    /// The node's entry (its last one, for a leave).
    node: NodeInfo,
    /// The entry before an update.
    previous: Option<NodeInfo>,
}

impl WatchEvent {
    /// The event for a peer change.
    fn from_change(change: PeerChange) -> Self {
        match change {
            PeerChange::Joined(node) => Self {
                kind: "join",
                node,
                previous: None,
            },
            PeerChange::Updated { previous, current } => Self {
                kind: "update",
                node: current,
                previous: Some(previous),
            },
            PeerChange::Left(node) => Self {
                kind: "leave",
                node,
                previous: None,
            },
        }
    }
}

#[pymethods]
impl WatchEvent {
    /// `"join"`, `"update"` or `"leave"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind
    }

    /// Id of the node the event is about.
    #[getter]
    fn node_id(&self) -> &str {
        &self.node.node_id
    }

    /// The node's entry as `get_available_nodes()` lists it (its last one for a leave).
    #[getter]
    fn node<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        convert::node_dict(py, &self.node)
    }

    /// The entry before an update; `None` for joins and leaves.
    #[getter]
    fn previous<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.previous
            .as_ref()
            .map(|node| convert::node_dict(py, node))
            .transpose()
    }

    fn __repr__(&self) -> String {
        format!(
            "WatchEvent(kind={:?}, node_id={:?}, address='{}:{}')",
            self.kind, self.node.node_id, self.node.host, self.node.port
        )
    }
}

/// Whether two entries are the same registration (ignoring the lease deadline).
fn same(a: &NodeInfo, b: &NodeInfo) -> bool {
    a.host == b.host && a.port == b.port && a.metadata == b.metadata && a.public_key == b.public_key
}

/// The changes that turn `known` into `current`.
fn diff(
    known: &BTreeMap<String, NodeInfo>,
    current: &BTreeMap<String, NodeInfo>,
) -> Vec<PeerChange> {
    let mut changes = Vec::new();
    for (id, node) in known {
        if !current.contains_key(id) {
            changes.push(PeerChange::Left(node.clone()));
        }
    }
    for (id, node) in current {
        match known.get(id) {
            None => changes.push(PeerChange::Joined(node.clone())),
            Some(before) if !same(before, node) => changes.push(PeerChange::Updated {
                previous: before.clone(),
                current: node.clone(),
            }),
            Some(_) => {}
        }
    }
    changes
}

/// The forwarding task: view → changes → channel.
async fn forward(
    registry: Arc<dyn Registry>,
    config: PeerViewConfig,
    tx: mpsc::Sender<WatchEvent>,
) {
    let view = PeerView::start(registry, config);
    let (initial, mut subscription) = view.subscribe_with_peers();
    let mut known: BTreeMap<String, NodeInfo> = BTreeMap::new();
    let mut pending = diff(&known, &initial);
    known = initial;
    loop {
        for change in pending.drain(..) {
            if tx.send(WatchEvent::from_change(change)).await.is_err() {
                return;
            }
        }
        match subscription.recv().await {
            None => return,
            Some(PeerUpdate::Change(change)) => {
                match &change {
                    PeerChange::Joined(node) | PeerChange::Updated { current: node, .. } => {
                        known.insert(node.node_id.clone(), node.clone());
                    }
                    PeerChange::Left(node) => {
                        known.remove(&node.node_id);
                    }
                }
                pending.push(change);
            }
            Some(PeerUpdate::Resync(current)) => {
                pending = diff(&known, &current);
                known = current;
            }
        }
    }
}

/// Membership changes of a registry, until closed.
#[pyclass(module = "isek_rs._core", frozen)]
pub struct Watch {
    /// The forwarded events. An async mutex held across the receive on purpose: a
    /// receiver has one consumer at a time, so concurrent `next` calls take turns.
    events: Arc<Mutex<mpsc::Receiver<WatchEvent>>>,
    /// The forwarding task (stopping it stops the view).
    task: AbortHandle,
    /// Exception classes of the registry (unused by events today; kept for errors).
    _errors: Arc<ErrorTable>,
}

impl Watch {
    /// Starts following `registry`.
    pub(crate) fn start(
        registry: Arc<dyn Registry>,
        config: PeerViewConfig,
        capacity: usize,
        errors: Arc<ErrorTable>,
    ) -> PyResult<Self> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let task = runtime()?.spawn(forward(registry, config, tx));
        Ok(Self {
            events: Arc::new(Mutex::new(rx)),
            task: task.abort_handle(),
            _errors: errors,
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[pymethods]
impl Watch {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next event, blocking (GIL released, Ctrl-C honoured); stops once closed.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<WatchEvent>> {
        let events = Arc::clone(&self.events);
        block_on(py, async move { events.lock().await.recv().await })
    }

    /// The next event, or `None` if none came within `timeout` seconds or the watch
    /// is closed.
    #[pyo3(signature = (timeout=None))]
    fn next_event(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<WatchEvent>> {
        let events = Arc::clone(&self.events);
        let limit = timeout
            .map(|t| {
                Duration::try_from_secs_f64(t.max(0.0))
                    .map_err(|e| PyValueError::new_err(format!("timeout {t}: {e}")))
            })
            .transpose()?;
        block_on(py, async move {
            let mut events = events.lock().await;
            match limit {
                Some(limit) => tokio::time::timeout(limit, events.recv())
                    .await
                    .ok()
                    .flatten(),
                None => events.recv().await,
            }
        })
    }

    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// An awaitable of the next event; `StopAsyncIteration` once closed.
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let events = Arc::clone(&self.events);
        into_asyncio(
            py,
            async move { events.lock().await.recv().await },
            |py, event| match event {
                Some(event) => Ok(Bound::new(py, event)?.into_any()),
                None => Err(PyStopAsyncIteration::new_err(())),
            },
        )
    }

    /// Stops following the registry; iteration ends after the events already queued.
    fn close(&self) {
        self.task.abort();
    }

    /// Whether the watch was closed (or its task ended).
    #[getter]
    fn closed(&self) -> bool {
        self.task.is_finished()
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __aenter__<'py>(slf: PyRef<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.into_pyobject(py)?.into_any().unbind();
        into_asyncio(py, async {}, move |py, ()| Ok(this.into_bound(py)))
    }

    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.close();
        into_asyncio(py, async {}, |py, ()| {
            Ok(false.into_pyobject(py)?.to_owned().into_any())
        })
    }
}
