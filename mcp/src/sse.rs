//! Answers that are event streams. A call answers with plain JSON when nothing has to come
//! before its result; once something must (a hold, progress, a log line, a request from the
//! upstream), its answer becomes `text/event-stream` and every message is one
//! `event: message` event. Events carry no ids: the sidecar offers no resumption, so a
//! client never tries to resume (MCP allows that). While a stream is open a `: keepalive`
//! comment goes out every few seconds so proxies keep it; clients ignore comments.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body::{Body, Frame};
use tokio::sync::mpsc;

/// What a call's task hands the HTTP answer.
#[derive(Debug)]
pub enum Out {
    /// Answer as an event stream from now on (a hold starts), with these headers.
    Start(Vec<(HeaderName, HeaderValue)>),
    /// A message before the result (progress, log, a request to the client).
    Event(Bytes),
    /// The result (or error); the answer ends after it. With the headers the answer carries.
    Final(Bytes, Vec<(HeaderName, HeaderValue)>),
}

/// The frame of one event.
pub fn frame(json: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(json.len() + 24);
    b.extend_from_slice(b"event: message\ndata: ");
    b.extend_from_slice(json);
    b.extend_from_slice(b"\n\n");
    Bytes::from(b)
}

const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// An event-stream body fed by a channel of [`Out`]: ends after `Final` or when every sender
/// is gone.
pub struct SseBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Out>,
    keepalive: tokio::time::Interval,
    done: bool,
}

impl SseBody {
    /// A stream that starts with `first` (already framed, may be empty) and then relays `rx`.
    pub fn new(first: Option<Bytes>, rx: mpsc::Receiver<Out>, every: Duration) -> SseBody {
        let every = every.max(Duration::from_millis(10));
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        SseBody { first: first.filter(|b| !b.is_empty()), rx, keepalive, done: false }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(b) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Out::Event(b))) => return Poll::Ready(Some(Ok(Frame::data(frame(&b))))),
                Poll::Ready(Some(Out::Final(b, _))) => {
                    self.done = true;
                    return Poll::Ready(Some(Ok(Frame::data(frame(&b)))));
                }
                // Already streaming: a late start changes nothing.
                Poll::Ready(Some(Out::Start(_))) => continue,
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => break,
            }
        }
        match self.keepalive.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(KEEPALIVE))))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn events_then_the_final_message_then_the_end() {
        let (tx, rx) = mpsc::channel(8);
        tx.send(Out::Event(Bytes::from_static(b"{\"a\":1}"))).await.unwrap();
        tx.send(Out::Final(Bytes::from_static(b"{\"b\":2}"), Vec::new())).await.unwrap();
        tx.send(Out::Event(Bytes::from_static(b"{\"late\":1}"))).await.unwrap();
        let body = SseBody::new(Some(frame(b"{\"first\":0}")), rx, Duration::from_secs(60));
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            std::str::from_utf8(&all).unwrap(),
            "event: message\ndata: {\"first\":0}\n\nevent: message\ndata: {\"a\":1}\n\nevent: message\ndata: {\"b\":2}\n\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keepalives_while_waiting() {
        let (tx, rx) = mpsc::channel(8);
        let mut body = SseBody::new(None, rx, Duration::from_secs(15));
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), Bytes::from_static(KEEPALIVE));
        drop(tx);
        assert!(body.frame().await.is_none());
    }
}
