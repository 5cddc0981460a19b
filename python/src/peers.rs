//! `PeerView`: a live copy of the membership, with lookups.
//!
//! Wraps `isek::runtime::PeerView` (fed by the registry's change stream, or by polling
//! where there is none). A view is either standalone (`CoreRegistry.peer_view()`) or
//! the one a running `Node` keeps; the latter is held weakly, so a view object that
//! outlives its node keeps nothing running and reads as empty.

use std::sync::{Arc, Weak};
use std::time::Duration;

use isek::runtime::{NodeHandle, PeerSource, PeerSync};
use isek::{NodeInfo, PeerView, PeerViewConfig, Registry};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::convert;
use crate::errors::ErrorTable;
use crate::registry::seconds;
use crate::runtime::{block_on, runtime};

/// Whose view it is.
enum Owner {
    /// A view this object started; dropped (stopped) with it or by `close()`.
    Own(std::sync::Mutex<Option<Arc<PeerView>>>),
    /// The view of a running node.
    Node(Weak<NodeHandle>),
}

/// A live, read-only copy of the registry's membership.
#[pyclass(name = "PeerView", module = "isek_rs._core", frozen)]
pub struct PyPeerView {
    /// The view, or the node that has it.
    owner: Owner,
}

impl PyPeerView {
    /// A view configuration from Python arguments.
    pub(crate) fn config(
        poll_interval: f64,
        exclude: Option<String>,
        capacity: usize,
    ) -> PyResult<PeerViewConfig> {
        if capacity == 0 {
            return Err(PyValueError::new_err("capacity must be at least 1"));
        }
        Ok(PeerViewConfig {
            poll_interval: seconds("poll_interval", poll_interval)?,
            exclude,
            channel_capacity: capacity,
            ..PeerViewConfig::default()
        })
    }

    /// Starts a standalone view of `registry`.
    pub(crate) fn start(registry: Arc<dyn Registry>, config: PeerViewConfig) -> PyResult<Self> {
        let _entered = runtime()?.enter();
        let view = PeerView::start(registry, config);
        Ok(Self {
            owner: Owner::Own(std::sync::Mutex::new(Some(Arc::new(view)))),
        })
    }

    /// The view of a node.
    pub(crate) fn of_node(handle: &Arc<NodeHandle>) -> Self {
        Self {
            owner: Owner::Node(Arc::downgrade(handle)),
        }
    }

    /// Runs `read` on the view if it is still running.
    fn with<T>(&self, read: impl FnOnce(&PeerView) -> T) -> Option<T> {
        match &self.owner {
            Owner::Own(view) => {
                let view = view
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                view.as_deref().map(read)
            }
            Owner::Node(handle) => {
                let handle = handle.upgrade()?;
                handle.peer_view().map(read)
            }
        }
    }

    /// A copy of the peers (empty once stopped).
    fn snapshot(&self) -> std::collections::BTreeMap<String, NodeInfo> {
        self.with(PeerView::peers).unwrap_or_default()
    }
}

#[pymethods]
impl PyPeerView {
    /// Every known peer, keyed by node id (the shape of `get_available_nodes()`).
    fn peers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        convert::nodes_dict(py, &self.snapshot())
    }

    /// The peer `node_id`, or `None`.
    fn peer<'py>(&self, py: Python<'py>, node_id: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        match self.with(|view| view.peer(node_id)).flatten() {
            Some(node) => convert::node_dict(py, &node).map(Some),
            None => Ok(None),
        }
    }

    /// Peers that match the CEL `filter` (if given, see `isek::filter`: e.g.
    /// `'"web-search" in metadata.agent_card.skills.map(s, s.id)'`), whose metadata has
    /// every given key with an equal value, and for which `predicate(node_dict)` (if
    /// given) is true; in node id order. A bad filter is `InvalidArgument`.
    #[pyo3(signature = (predicate=None, *, filter=None, **metadata))]
    fn find<'py>(
        &self,
        py: Python<'py>,
        predicate: Option<&Bound<'py, PyAny>>,
        filter: Option<&str>,
        metadata: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let filter = match filter {
            Some(source) => Some(isek::Filter::compile(source).map_err(|e| {
                let error = isek::Error::InvalidArgument(format!("filter: {e}"));
                match ErrorTable::plain(py) {
                    Ok(table) => table.to_py(py, &error),
                    Err(import_failed) => import_failed,
                }
            })?),
            None => None,
        };
        let wanted = match metadata {
            Some(dict) => convert::metadata(Some(dict.as_any()))?.map_err(PyValueError::new_err)?,
            None => isek::Metadata::new(),
        };
        let found = PyList::empty(py);
        for node in self.snapshot().values() {
            if !convert::metadata_matches(node, &wanted)
                || filter.as_ref().is_some_and(|f| !f.matches(node))
            {
                continue;
            }
            let dict = convert::node_dict(py, node)?;
            if let Some(predicate) = predicate
                && !predicate.call1((&dict,))?.is_truthy()?
            {
                continue;
            }
            found.append(dict)?;
        }
        Ok(found)
    }

    /// Revision of the latest change applied (0 when polling).
    #[getter]
    fn revision(&self) -> u64 {
        self.with(PeerView::revision).unwrap_or(0)
    }

    /// `"pending"` (no list yet), `"live"`, `"stale"` (contact lost, last peers kept)
    /// or `"closed"`.
    #[getter]
    fn sync(&self) -> &'static str {
        match self.with(PeerView::sync) {
            None => "closed",
            Some(PeerSync::Pending) => "pending",
            Some(PeerSync::Live { .. }) => "live",
            Some(PeerSync::Stale { .. }) => "stale",
        }
    }

    /// `"stream"` or `"poll"` while live, else `None`.
    #[getter]
    fn source(&self) -> Option<&'static str> {
        match self.with(PeerView::sync)? {
            PeerSync::Live {
                source: PeerSource::Stream,
            } => Some("stream"),
            PeerSync::Live {
                source: PeerSource::Poll,
            } => Some("poll"),
            _ => None,
        }
    }

    /// Waits until the view is live; `False` if `timeout` seconds passed first.
    #[pyo3(signature = (timeout=None))]
    fn wait_live(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let Some(mut changes) = self.with(PeerView::sync_changes) else {
            return Ok(false);
        };
        let limit = match timeout {
            Some(t) => Some(
                Duration::try_from_secs_f64(t.max(0.0))
                    .map_err(|e| PyValueError::new_err(format!("timeout {t}: {e}")))?,
            ),
            None => None,
        };
        block_on(py, async move {
            let live = changes.wait_for(|sync| matches!(sync, PeerSync::Live { .. }));
            match limit {
                Some(limit) => matches!(tokio::time::timeout(limit, live).await, Ok(Ok(_))),
                None => live.await.is_ok(),
            }
        })
    }

    /// Stops a standalone view (a node's view stops with the node).
    fn close(&self) {
        if let Owner::Own(view) = &self.owner {
            view.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
        }
    }

    fn __len__(&self) -> usize {
        self.with(PeerView::len).unwrap_or(0)
    }

    fn __contains__(&self, node_id: &str) -> bool {
        self.with(|view| view.peer(node_id).is_some())
            .unwrap_or(false)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!("PeerView(peers={}, sync={})", self.__len__(), self.sync())
    }
}
