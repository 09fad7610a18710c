//! Work that belongs to a call but not to its answer's path: what is left to do once the
//! reply has gone out (the call's end record: building, masking and queueing it for the audit
//! writer). [`after_reply`] queues it as a task on the current runtime. On a connection thread
//! (`threads.rs`, a single-threaded runtime) that task runs when the connection's task next
//! yields, which is after hyper has written the reply it was handed, and before the thread
//! looks at any socket again: so it also runs before the next request on that connection is
//! read. Pushing a task onto the runtime it is spawned from is a queue push, no system call.
//!
//! Invariant: the work runs exactly once. A task dropped unrun (its runtime shutting down, or
//! a spawn refused for that reason) runs the work as it is dropped; outside a runtime it runs
//! at once.

/// Run `work` after the reply the current task is producing has been written (see the module
/// docs). Only for work nothing on the reply's path waits on.
pub fn after_reply<F: FnOnce() + Send + 'static>(work: F) {
    let job = Job(Some(work));
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(async move { drop(job) });
        }
        Err(_) => drop(job),
    }
}

/// Runs its work when dropped: polled once, or dropped unpolled with its task.
struct Job<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for Job<F> {
    fn drop(&mut self) {
        if let Some(work) = self.0.take() {
            work();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn runs_once_after_the_current_task_yields_or_at_once_outside_a_runtime() {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        after_reply(move || {
            m.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 1, "no runtime: at once");

        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let seen = rt.block_on(async {
            let m = n.clone();
            after_reply(move || {
                m.fetch_add(1, Ordering::SeqCst);
            });
            // Not before this task yields...
            let before = n.load(Ordering::SeqCst);
            tokio::task::yield_now().await;
            (before, n.load(Ordering::SeqCst))
        });
        assert_eq!(seen, (1, 2), "deferred to the yield, then run");
    }

    #[test]
    fn work_queued_on_a_runtime_that_shuts_down_still_runs() {
        let n = Arc::new(AtomicUsize::new(0));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let m = n.clone();
        rt.block_on(async move {
            after_reply(move || {
                m.fetch_add(1, Ordering::SeqCst);
            });
        });
        // `block_on` returned without polling the queued task; dropping the runtime drops it.
        drop(rt);
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }
}
