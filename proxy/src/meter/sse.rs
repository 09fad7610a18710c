//! Incremental server-sent-events framing: split a byte stream into complete events, holding
//! at most one partial event, and never more than a cap of it.
//!
//! An event longer than the cap (a misbehaving upstream can send one that never ends) is given
//! up on: what is held passes on as raw bytes, and so does everything up to the event's end;
//! framing resumes after it. Memory per stream is therefore bounded by the cap plus one chunk.

use bytes::{Buf, BytesMut};

/// What the splitter hands on, in stream order.
#[derive(Debug, PartialEq)]
pub enum Piece<'a> {
    /// One complete event, terminator included.
    Event(&'a [u8]),
    /// Bytes of an event too long to decode, passed on undecoded.
    Raw(&'a [u8]),
}

/// Accumulates bytes and hands out complete events; see the module docs.
#[derive(Debug)]
pub struct SseSplitter {
    buf: BytesMut,
    /// Bytes of `buf` already searched for a terminator.
    scanned: usize,
    cap: usize,
    /// Inside an event longer than `cap`, until its terminator.
    skipping: bool,
    /// The last bytes passed while skipping (a terminator may straddle two chunks).
    tail: Vec<u8>,
    /// Events passed on undecoded because they were longer than the cap.
    pub oversized: u64,
    /// The most bytes ever held at once (for tests and the bound in the docs).
    pub peak: usize,
}

impl Default for SseSplitter {
    fn default() -> Self {
        SseSplitter::new(8 * 1024 * 1024)
    }
}

/// End (exclusive) of the first event terminator (`\n\n` or `\n\r\n`) that ends inside `b`.
fn terminator_end(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < b.len() {
        if b[i] == b'\n' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(b'\n'), _) => return Some(i + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

impl SseSplitter {
    /// A splitter that holds at most `cap` bytes of one event.
    pub fn new(cap: usize) -> SseSplitter {
        SseSplitter {
            buf: BytesMut::new(),
            scanned: 0,
            cap: cap.max(4),
            skipping: false,
            tail: Vec::new(),
            oversized: 0,
            peak: 0,
        }
    }

    /// Bytes held (a partial event).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether an oversized event is being passed through right now (its start already went
    /// out undecoded).
    pub fn in_oversized_event(&self) -> bool {
        self.skipping
    }

    /// Feed bytes; `f` receives every complete event and every undecoded piece, in order.
    pub fn push(&mut self, mut data: &[u8], mut f: impl FnMut(Piece<'_>)) {
        if self.skipping {
            // Look for the end of the oversized event, across the chunk boundary too.
            let joined: Vec<u8> = self.tail.iter().chain(data.iter().take(2)).copied().collect();
            let end = match terminator_end(&joined, 0) {
                Some(e) if e > self.tail.len() => Some(e - self.tail.len()),
                _ => terminator_end(data, 0),
            };
            match end {
                Some(e) => {
                    f(Piece::Raw(&data[..e]));
                    data = &data[e..];
                    self.skipping = false;
                    self.tail.clear();
                }
                None => {
                    f(Piece::Raw(data));
                    let mut keep: Vec<u8> = self.tail.iter().chain(data.iter()).rev().take(2).copied().collect();
                    keep.reverse();
                    self.tail = keep;
                    return;
                }
            }
        }
        self.buf.extend_from_slice(data);
        self.peak = self.peak.max(self.buf.len());
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(end) = terminator_end(&self.buf, from) {
            f(Piece::Event(&self.buf[start..end]));
            start = end;
            from = end;
        }
        self.buf.advance(start);
        // The last byte or two may begin a terminator: rescan them next time.
        self.scanned = self.buf.len().saturating_sub(2);
        if self.buf.len() > self.cap {
            // Give up on this event: pass what is held on undecoded and skip to its end.
            f(Piece::Raw(&self.buf));
            self.tail = self.buf[self.buf.len().saturating_sub(2)..].to_vec();
            self.buf = BytesMut::new();
            self.scanned = 0;
            self.skipping = true;
            self.oversized += 1;
        }
    }

    /// Whatever is left after the stream ended (an unterminated last event).
    pub fn take_rest(&mut self) -> BytesMut {
        self.scanned = 0;
        std::mem::take(&mut self.buf)
    }
}

/// One parsed event: its `event:` name and its `data:` lines joined by `\n`.
#[derive(Debug, Default, PartialEq)]
pub struct SseEvent<'a> {
    pub event: Option<&'a str>,
    pub data: String,
}

/// Parse the fields of one raw event.
pub fn parse_event(raw: &[u8]) -> SseEvent<'_> {
    let mut ev = SseEvent::default();
    let text = match std::str::from_utf8(raw) {
        Ok(t) => t,
        Err(_) => return ev,
    };
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(v) = line.strip_prefix("data:") {
            if !ev.data.is_empty() {
                ev.data.push('\n');
            }
            ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
        } else if let Some(v) = line.strip_prefix("event:") {
            ev.event = Some(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events and raw pieces, in order.
    fn split_all(s: &mut SseSplitter, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut evs = Vec::new();
        let mut all = Vec::new();
        for c in chunks {
            s.push(c, |p| match p {
                Piece::Event(e) => {
                    evs.push(e.to_vec());
                    all.extend_from_slice(e);
                }
                Piece::Raw(r) => all.extend_from_slice(r),
            });
        }
        (evs, all)
    }

    #[test]
    fn splits_across_arbitrary_chunk_boundaries() {
        let stream = b"data: {\"a\":1}\n\nevent: x\ndata: 2\n\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            let (evs, all) = split_all(&mut SseSplitter::default(), &[a, b]);
            assert_eq!(evs.len(), 3, "cut at {cut}");
            assert_eq!(all, stream.to_vec());
        }
    }

    #[test]
    fn crlf_terminators() {
        let (evs, _) = split_all(&mut SseSplitter::default(), &[b"data: 1\r\n\r\ndata: 2\r\n\r\n"]);
        assert_eq!(evs.len(), 2);
        assert_eq!(parse_event(&evs[1]).data, "2");
    }

    #[test]
    fn parses_event_and_multiline_data() {
        let ev = parse_event(b"event: message_start\ndata: {\"x\":\ndata: 1}\n\n");
        assert_eq!(ev.event, Some("message_start"));
        assert_eq!(ev.data, "{\"x\":\n1}");
    }

    #[test]
    fn a_partial_event_is_held_until_it_ends() {
        let mut s = SseSplitter::default();
        let (evs, all) = split_all(&mut s, &[b"data: 1\n\ndata: 2"]);
        assert_eq!((evs.len(), all.as_slice()), (1, &b"data: 1\n\n"[..]));
        assert_eq!(s.buffered(), 7);
        assert_eq!(&s.take_rest()[..], b"data: 2");
    }

    #[test]
    fn an_endless_event_never_holds_more_than_the_cap() {
        // The reproduction: one unterminated 400 MB event, in 64 KiB chunks.
        let cap = 1024 * 1024;
        let mut s = SseSplitter::new(cap);
        let chunk = vec![b'x'; 64 * 1024];
        let mut passed = 0usize;
        let (mut events, mut n) = (0, 0);
        s.push(b"data: {\"ok\":1}\n\ndata: ", |p| match p {
            Piece::Event(_) => events += 1,
            Piece::Raw(r) => passed += r.len(),
        });
        while n < 400 * 1024 * 1024 {
            s.push(&chunk, |p| match p {
                Piece::Event(_) => events += 1,
                Piece::Raw(r) => passed += r.len(),
            });
            n += chunk.len();
            assert!(s.buffered() <= cap, "held {} bytes", s.buffered());
        }
        assert!(s.peak <= cap + chunk.len(), "peak {}", s.peak);
        assert_eq!(events, 1);
        assert_eq!(passed, n + "data: ".len(), "every byte of the oversized event passes on");
        assert_eq!(s.oversized, 1);
        // Framing resumes after the oversized event, even when its terminator is split.
        let mut got = Vec::new();
        for c in [&b"xx\n"[..], b"\ndata: after\n\n"] {
            s.push(c, |p| {
                if let Piece::Event(e) = p {
                    got.push(e.to_vec())
                }
            });
        }
        assert_eq!(got, vec![b"data: after\n\n".to_vec()]);
        assert!(!s.in_oversized_event());
    }
}
