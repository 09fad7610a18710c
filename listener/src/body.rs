//! A request body with a deadline: the whole body must arrive within the listener's body
//! timeout, counted from the request head. A client trickling a byte every few seconds gets a
//! [`BodyTimeout`] error where the handler reads the body, which each listener turns into a
//! 408 in its own dialect; the connection is then closed (the rest of the body is never read).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::BoxError;

/// The body of a request did not arrive in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeout {
    /// The configured body timeout.
    pub after: Duration,
}

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {} ms", self.after.as_millis())
    }
}

impl std::error::Error for BodyTimeout {}

/// Set when a request's body ran out of time (a request extension, so a handler that only
/// sees a generic "could not read the body" error can still answer 408).
#[derive(Debug, Clone, Default)]
pub struct BodyTimer(Arc<AtomicBool>);

impl BodyTimer {
    /// Whether this request's body timed out.
    pub fn expired(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pin_project_lite::pin_project! {
    /// See the module docs. The timer is created lazily, the first time the body is not
    /// already there, so a body that arrives with its head costs no timer.
    pub struct TimedBody<B = Incoming> {
        #[pin]
        inner: B,
        timeout: Duration,
        deadline: Instant,
        sleep: Option<Pin<Box<Sleep>>>,
        timer: BodyTimer,
        done: bool,
    }
}

impl<B> TimedBody<B> {
    /// Wrap `inner`, whose whole content must arrive within `timeout` from now.
    pub fn new(inner: B, timeout: Duration) -> (TimedBody<B>, BodyTimer) {
        let timer = BodyTimer::default();
        let deadline = Instant::now() + timeout;
        (TimedBody { inner, timeout, deadline, sleep: None, timer: timer.clone(), done: false }, timer)
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(f) => Poll::Ready(f.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let deadline = *this.deadline;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    *this.done = true;
                    this.timer.0.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout { after: *this.timeout }))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// One byte, then nothing, ever: a trickling client.
    struct Trickle(bool);

    impl Body for Trickle {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.0 {
                return Poll::Pending;
            }
            self.0 = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{")))))
        }
    }

    #[tokio::test]
    async fn a_body_that_never_ends_times_out_and_says_so() {
        let (body, timer) = TimedBody::new(Trickle(false), Duration::from_millis(200));
        let err = body.collect().await.expect_err("must time out");
        assert!(err.is::<BodyTimeout>(), "{err}");
        assert_eq!(err.to_string(), "the request body did not arrive within 200 ms");
        assert!(timer.expired());
    }

    #[tokio::test]
    async fn a_prompt_body_is_untouched() {
        let (body, timer) =
            TimedBody::new(http_body_util::Full::new(Bytes::from_static(b"{}")), Duration::from_millis(1));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(body.collect().await.unwrap().to_bytes(), Bytes::from_static(b"{}"));
        assert!(!timer.expired());
    }
}
