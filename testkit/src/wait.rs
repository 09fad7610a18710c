//! Waiting in tests for something a sidecar or a gateway does on its own time (a record
//! indexed, a link up, a config applied): poll until it holds, or fail naming what never
//! happened. One copy for every test that waits.

use std::future::Future;
use std::time::{Duration, Instant};

/// Poll `f` every 50 ms until it returns true (how long that took), or panic after `timeout`
/// naming `what`.
pub async fn until<F, Fut>(what: &str, timeout: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f().await {
            return t0.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}
