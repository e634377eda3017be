//! Thread-per-core execution for connection tasks: `--workers` OS threads,
//! each driving its own current-thread tokio runtime (own epoll, own timers,
//! a plain FIFO run queue), with connections spread over them round-robin.
//!
//! Compared with one work-stealing runtime this keeps every connection on one
//! thread for its whole life and, above all, treats ready connections first
//! come first served when the generator is saturated: with the multi-thread
//! scheduler, some connections of a saturated generator waited tens of
//! milliseconds in their socket while others were served, which showed up as
//! a latency tail that was the generator's, not the server's. The scenario
//! coordinator runs on the main thread's own current-thread runtime and only
//! sleeps, counts and signals.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

struct Pool {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Starts `n` worker threads (once per process; later calls are no-ops).
pub fn start(n: usize) -> std::io::Result<()> {
    if POOL.get().is_some() {
        return Ok(());
    }
    let mut handles = Vec::with_capacity(n.max(1));
    for i in 0..n.max(1) {
        let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<Handle>>();
        std::thread::Builder::new()
            .name(format!("loadgen-w{i}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        // Drive spawned tasks until the process exits.
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        let handle = rx
            .recv()
            .map_err(|_| std::io::Error::other("worker thread died at start"))??;
        handles.push(handle);
    }
    let _ = POOL.set(Pool {
        handles,
        next: AtomicUsize::new(0),
    });
    Ok(())
}

/// Spawns `fut` on the next worker (round-robin); on the current runtime if
/// the pool was not started (unit tests).
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match POOL.get() {
        Some(p) => {
            let i = p.next.fetch_add(1, Ordering::Relaxed) % p.handles.len();
            p.handles[i].spawn(fut)
        }
        None => tokio::spawn(fut),
    }
}
