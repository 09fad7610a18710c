//! Connection threads: a listener may serve its connections on a few threads of its own, each
//! running a single-threaded tokio runtime, instead of on the process's shared work-stealing
//! runtime. A connection then lives on one thread from accept to close, with everything its
//! requests do (the call, its upstream connection when the caller keeps one per thread, the
//! timers): no task moves between threads and no thread wakes another to pass work along,
//! which is what a proxy at saturation otherwise spends much of its CPU on
//! (docs/performance.md, "Saturation").
//!
//! Connections are handed out round robin. Dropping [`ConnThreads`] stops the threads; tasks
//! still open on them are dropped with their runtime (the listener has given them its grace
//! period first).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// See the module docs.
pub struct ConnThreads {
    handles: Vec<Handle>,
    next: AtomicUsize,
    // Dropped with `self`: each thread's runtime then returns and is dropped on its thread.
    _stop: Vec<oneshot::Sender<()>>,
}

impl ConnThreads {
    /// Start `n` threads (at least one) named `<name>-io-<i>`, each staying awake for `spin`
    /// after it sent something it awaits an answer to (`spin.rs`; zero: never).
    pub fn start(name: &str, n: usize, spin: std::time::Duration) -> std::io::Result<ConnThreads> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(rt.handle().clone());
            let (tx, rx) = oneshot::channel::<()>();
            std::thread::Builder::new().name(format!("{name}-io-{i}")).spawn(move || {
                rt.block_on(async {
                    tokio::spawn(crate::spin::spinner(spin));
                    let _ = rx.await;
                });
            })?;
            stops.push(tx);
        }
        Ok(ConnThreads { handles, next: AtomicUsize::new(0), _stop: stops })
    }

    /// Run `fut` on the next thread.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len().max(1);
        if let Some(h) = self.handles.get(i) {
            h.spawn(fut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn tasks_run_on_their_own_threads_round_robin_and_stop_with_the_pool() {
        let pool = ConnThreads::start("t", 2, std::time::Duration::ZERO).unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..4 {
            let (tx, rx) = oneshot::channel();
            let names = names.clone();
            pool.spawn(async move {
                // A timer works on the connection thread's own runtime.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                names.lock().unwrap().push(std::thread::current().name().unwrap_or("").to_string());
                let _ = tx.send(());
            });
            rx.await.unwrap();
        }
        let names = names.lock().unwrap().clone();
        assert_eq!(names, ["t-io-0", "t-io-1", "t-io-0", "t-io-1"]);
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), 2);
        // A task still waiting when the pool goes is dropped, not leaked.
        let (tx, rx) = oneshot::channel::<()>();
        pool.spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        drop(pool);
        assert!(tokio::time::timeout(std::time::Duration::from_secs(5), rx).await.unwrap().is_err());
    }
}
