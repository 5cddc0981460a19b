//! The one Tokio runtime of the module, and the two bridges to Python.
//!
//! Every Rust future runs on one multi-threaded runtime created on first use (two
//! worker threads named `isek-rs`). Python calls it in two ways:
//!
//! - [`block_on`]: a blocking call. The GIL is released while the future runs, and the
//!   calling thread wakes every [`SIGNAL_POLL`] to let Python run its signal handlers,
//!   so Ctrl-C interrupts the call (the future is cancelled) well within a second.
//! - [`into_asyncio`]: an `asyncio.Future` of the running loop, resolved from the Rust
//!   task with `loop.call_soon_threadsafe`; cancelling the Python future aborts the task.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::runtime::Runtime;
use tokio::task::AbortHandle;

/// How often a blocking call gives Python a chance to handle a signal.
pub const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The runtime, once built.
static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The shared runtime, built on first use.
pub fn runtime() -> PyResult<&'static Runtime> {
    let built = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("isek-rs")
            // Idle blocking-pool threads (DNS lookups, signature checks) leave soon.
            .thread_keep_alive(Duration::from_secs(1))
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    built
        .as_ref()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the isek runtime: {e}")))
}

/// Runs `future` to completion on the runtime with the GIL released; a pending
/// `KeyboardInterrupt` (or any exception a signal handler raises) cancels it.
pub fn block_on<T, F>(py: Python<'_>, future: F) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let rt = runtime()?;
    let mut task = rt.spawn(future);
    loop {
        let waited =
            py.detach(|| rt.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut task).await }));
        match waited {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => {
                return Err(PyRuntimeError::new_err(format!(
                    "isek task failed: {error}"
                )));
            }
            Err(_) => {
                if let Err(interrupt) = py.check_signals() {
                    task.abort();
                    return Err(interrupt);
                }
            }
        }
    }
}

/// Calls `fut.<method>(value)` unless the future is already done (cancelled): what a
/// Rust task schedules on the event loop to resolve an [`into_asyncio`] future.
#[pyfunction]
#[pyo3(name = "_resolve")]
pub fn resolve_future(
    future: &Bound<'_, PyAny>,
    method: &str,
    value: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if !future.call_method0("done")?.is_truthy()? {
        future.call_method1(method, (value,))?;
    }
    Ok(())
}

/// Aborts a Rust task when the asyncio future it resolves is cancelled.
#[pyclass(frozen)]
struct AbortOnCancel {
    /// The task to abort.
    task: AbortHandle,
}

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            self.task.abort();
        }
        Ok(())
    }
}

/// An `asyncio.Future` on the running loop that `future` resolves; its output is
/// turned into a Python object by `convert` with the GIL held.
pub fn into_asyncio<'py, T, F, C>(
    py: Python<'py>,
    future: F,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
    C: for<'a> FnOnce(Python<'a>, T) -> PyResult<Bound<'a, PyAny>> + Send + 'static,
{
    let rt = runtime()?;
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let py_future = event_loop.call_method0("create_future")?;
    let resolve = py.import("isek_rs._core")?.getattr("_resolve")?.unbind();
    let loop_ref = event_loop.unbind();
    let future_ref = py_future.clone().unbind();
    let task = rt.spawn(async move {
        let output = future.await;
        Python::attach(|py| {
            let (method, value) = match convert(py, output) {
                Ok(value) => ("set_result", value),
                Err(error) => (
                    "set_exception",
                    error.into_value(py).into_bound(py).into_any(),
                ),
            };
            let scheduled = loop_ref.call_method1(
                py,
                "call_soon_threadsafe",
                (resolve, future_ref, method, value),
            );
            // The loop is closed: nobody awaits the future any more.
            drop(scheduled);
        });
    });
    py_future.call_method1(
        "add_done_callback",
        (AbortOnCancel {
            task: task.abort_handle(),
        },),
    )?;
    Ok(py_future)
}

/// Counters of the runtime, for leak tests: `{"workers", "alive_tasks"}`.
#[pyfunction]
#[pyo3(name = "_runtime_stats")]
pub fn runtime_stats(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let metrics = runtime()?.metrics();
    let stats = PyDict::new(py);
    stats.set_item("workers", metrics.num_workers())?;
    stats.set_item("alive_tasks", metrics.num_alive_tasks())?;
    Ok(stats)
}

/// Sleeps `seconds` in Rust with the GIL released, interruptible like every blocking
/// call (for tests of Ctrl-C handling).
#[pyfunction]
#[pyo3(name = "_sleep")]
pub fn sleep(py: Python<'_>, seconds: f64) -> PyResult<()> {
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("bad duration: {e}")))?;
    block_on(py, tokio::time::sleep(duration))
}
