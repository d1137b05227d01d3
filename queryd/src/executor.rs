//! A dedicated runtime for query work, so that CPU-heavy execution (DataFusion plans, index
//! scans, encoding) never runs on the runtime that accepts and answers HTTP requests.
//!
//! The runtime lives on its own thread; dropping the [`Executor`] stops it. (A tokio runtime
//! must not be dropped from inside an async context, hence the thread.)

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::error::QueryError;

pub struct Executor {
    handle: Handle,
    /// Bounds concurrently executing requests: beyond it, requests queue (admission control)
    /// instead of all slowing down together.
    permits: Arc<Semaphore>,
    _stop: std::sync::mpsc::SyncSender<()>,
}

impl Executor {
    /// A runtime with `threads` workers admitting `concurrency` requests at a time.
    pub fn new(threads: usize, concurrency: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("queryd-exec")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = std::sync::mpsc::sync_channel::<()>(0);
        std::thread::Builder::new()
            .name("queryd-exec-owner".into())
            .spawn(move || {
                // Returns when the sender is dropped.
                let _ = stopped.recv();
                runtime.shutdown_background();
            })?;
        Ok(Self {
            handle,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            _stop: stop,
        })
    }

    /// The query runtime, for work that is not a request's ([`compute`]).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `work` on the query runtime once admitted.
    pub async fn run<T, F>(&self, work: F) -> Result<T, QueryError>
    where
        F: Future<Output = Result<T, QueryError>> + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| QueryError::Internal("executor closed".into()))?;
        let task = self.handle.spawn(work);
        // If the caller gives up (timeout, client gone), the work stops too.
        let _abort = AbortOnDrop(task.abort_handle());
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(QueryError::Internal("query execution panicked".into())),
            Err(e) => Err(QueryError::Internal(format!("query execution failed: {e}"))),
        }
    }

    /// Starts `work` on the query runtime once admitted; it keeps its admission until done.
    /// For producers that outlive the request handler (streamed responses).
    pub async fn spawn<F>(&self, work: F) -> Result<(), QueryError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| QueryError::Internal("executor closed".into()))?;
        self.handle.spawn(async move {
            work.await;
            drop(permit);
        });
        Ok(())
    }
}

/// Runs the CPU-heavy `work` of building or changing a dataset state (decoding row groups,
/// building indexes, applying deltas) as a task of the query runtime `compute`.
///
/// Not on the blocking pool: a state's small buffers are allocated by the thread that builds
/// them, and each blocking-pool thread that did so kept the partly used pages of its own heap
/// once the load's transients were freed. Which and how many threads took part varied from
/// start to start, and with it the resident memory after a load: 82–109 MiB for the same
/// binary and data (`benches/read`, 2026-12-03); on the query runtime's long-lived workers,
/// 88–90 MiB.
pub async fn compute<T, F>(compute: &Handle, what: &'static str, work: F) -> Result<T, QueryError>
where
    F: FnOnce() -> Result<T, QueryError> + Send + 'static,
    T: Send + 'static,
{
    match compute.spawn(async move { work() }).await {
        Ok(result) => result,
        Err(e) => Err(QueryError::Internal(format!("{what}: {e}"))),
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
