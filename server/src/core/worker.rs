//! CPU-heavy work (decoding, LOF) off the async runtime.

use tokio::sync::oneshot;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkerError {
    #[error("a worker panicked")]
    Panicked,
    #[error("a worker went away")]
    Gone,
}

/// Runs `work` on the rayon pool (bounded by the core count, unlike tokio's blocking
/// pool) and waits for it without blocking the async runtime.
pub(crate) async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, WorkerError> {
    let (tx, rx) = oneshot::channel();
    rayon::spawn(move || {
        // A panic must not abort the process (rayon's default): it fails this work.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        let _ = tx.send(result);
    });
    match rx.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(WorkerError::Panicked),
        Err(_) => Err(WorkerError::Gone),
    }
}
