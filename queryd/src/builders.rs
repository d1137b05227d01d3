//! The threads that build dataset states, each dataset always on the same one.
//!
//! Why not tokio's blocking pool: the allocator (mimalloc) keeps memory in the heap of the
//! thread that allocated it, and a block another thread frees goes back to that heap only when
//! its owner allocates again. A state built on the blocking pool belongs to whichever pool
//! thread ran the build; when a newer version replaces it (a rebuild after a compaction), its
//! memory stays with that idle thread while the new build takes fresh memory from the OS, so
//! queryd's resident memory doubled even though the old state was released first
//! (`benches/compact`, 1M rows). Building every version of a dataset on one thread lets each
//! build reuse what the versions before it freed.
//!
//! Datasets are spread over the threads by a hash of their name, so different datasets
//! usually build in parallel; two that share a thread build one after the other.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::mpsc;

use crate::error::QueryError;

type Job = Box<dyn FnOnce() + Send>;

pub struct Builders {
    threads: Vec<mpsc::Sender<Job>>,
}

impl Builders {
    /// `n` threads (at least one). They stop when the `Builders` is dropped.
    pub fn new(n: usize) -> std::io::Result<Self> {
        let threads = (0..n.max(1))
            .map(|i| {
                let (tx, rx) = mpsc::channel::<Job>();
                std::thread::Builder::new()
                    .name(format!("queryd-build-{i}"))
                    .spawn(move || {
                        // A panicking job drops its answer channel (its caller gets an
                        // error); the thread goes on with the next job.
                        while let Ok(job) = rx.recv() {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                    })?;
                Ok(tx)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self { threads })
    }

    /// Runs `work` on `dataset`'s thread and waits for it without blocking the runtime.
    pub async fn run<T, F>(&self, dataset: &str, work: F) -> Result<T, QueryError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let mut hasher = DefaultHasher::new();
        dataset.hash(&mut hasher);
        let thread = &self.threads[(hasher.finish() % self.threads.len() as u64) as usize];
        let (tx, rx) = tokio::sync::oneshot::channel();
        thread
            .send(Box::new(move || {
                let _ = tx.send(work());
            }))
            .map_err(|_| QueryError::Internal("the build threads stopped".into()))?;
        rx.await
            .map_err(|_| QueryError::Internal(format!("building a state of {dataset} panicked")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dataset_always_builds_on_the_same_thread_and_a_panic_is_an_error() {
        let builders = Builders::new(3).unwrap();
        let name = || std::thread::current().name().map(str::to_owned);
        let first = builders.run("orders", name).await.unwrap();
        for _ in 0..10 {
            assert_eq!(builders.run("orders", name).await.unwrap(), first);
        }
        let failed = builders.run("orders", || panic!("boom")).await;
        assert!(matches!(failed, Err(QueryError::Internal(_))), "{failed:?}");
        assert_eq!(builders.run("orders", name).await.unwrap(), first);
    }
}
