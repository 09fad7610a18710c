//! Incremental server-sent-events framing: split a byte stream into complete events without
//! copying more than one partial event.

/// Accumulates bytes and hands out complete events (terminator included).
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a terminator.
    scanned: usize,
}

impl SseSplitter {
    /// Feed bytes; `emit` receives each complete raw event in order.
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        let mut i = self.scanned.max(start);
        while i < self.buf.len() {
            if self.buf[i] == b'\n' {
                let end = match (self.buf.get(i + 1), self.buf.get(i + 2)) {
                    (Some(b'\n'), _) => Some(i + 2),
                    (Some(b'\r'), Some(b'\n')) => Some(i + 3),
                    _ => None,
                };
                if let Some(end) = end {
                    emit(&self.buf[start..end]);
                    start = end;
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
        self.buf.drain(..start);
        // The last byte or two may begin a terminator: rescan them next time.
        self.scanned = self.buf.len().saturating_sub(2);
    }

    /// Whatever is left after the stream ended (an unterminated last event).
    pub fn take_rest(&mut self) -> Vec<u8> {
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

    fn split_all(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = SseSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |e| out.push(e.to_vec()));
        }
        out
    }

    #[test]
    fn splits_across_arbitrary_chunk_boundaries() {
        let stream = b"data: {\"a\":1}\n\nevent: x\ndata: 2\n\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            let evs = split_all(&[a, b]);
            assert_eq!(evs.len(), 3, "cut at {cut}");
            assert_eq!(evs.concat(), stream.to_vec());
        }
    }

    #[test]
    fn crlf_terminators() {
        let evs = split_all(&[b"data: 1\r\n\r\ndata: 2\r\n\r\n"]);
        assert_eq!(evs.len(), 2);
        assert_eq!(parse_event(&evs[1]).data, "2");
    }

    #[test]
    fn parses_event_and_multiline_data() {
        let ev = parse_event(b"event: message_start\ndata: {\"x\":\ndata: 1}\n\n");
        assert_eq!(ev.event, Some("message_start"));
        assert_eq!(ev.data, "{\"x\":\n1}");
    }
}
