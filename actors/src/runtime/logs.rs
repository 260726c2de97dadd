//! A task's recent output: a ring of timestamped lines with a bound on lines and on bytes.
//!
//! The process runtime fills one per task from the child's stdout and stderr; the docker runtime
//! fills one per `logs` call from the engine. Older lines fall out first.

use std::collections::VecDeque;

/// Lines kept per task.
pub const LOG_LINES_MAX: usize = 1_000;
/// Bytes of text kept per task (line text only).
pub const LOG_BYTES_MAX: usize = 1 << 20;
/// The longest line kept; a longer one is cut into pieces of this size.
pub const LOG_LINE_BYTES_MAX: usize = 16 * 1024;

// The line itself is a model type: the wire carries it too.
pub use crate::model::{LogLine, LogStream};

/// Keeps the newest entries of `lines` (oldest first) whose sizes add up to at most `budget`
/// bytes, dropping the older ones; returns the bytes kept.
pub fn keep_newest<T>(lines: &mut Vec<T>, budget: usize, size: impl Fn(&T) -> usize) -> usize {
    let mut bytes = 0usize;
    let mut keep = 0;
    for l in lines.iter().rev() {
        let s = size(l);
        if bytes + s > budget {
            break;
        }
        bytes += s;
        keep += 1;
    }
    lines.drain(..lines.len() - keep);
    bytes
}

#[derive(Debug)]
pub struct LogBuffer {
    lines: VecDeque<LogLine>,
    bytes: usize,
    /// Lines that fell out, so a reader can tell the log was cut.
    dropped: u64,
    /// What arrived after the last newline, per stream.
    partial: [Vec<u8>; 2],
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LogBuffer {
    pub fn new() -> Self {
        LogBuffer {
            lines: VecDeque::new(),
            bytes: 0,
            dropped: 0,
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// Adds one complete line (cut to [`LOG_LINE_BYTES_MAX`]).
    pub fn push(&mut self, ts_ms: u64, stream: LogStream, text: &str) {
        let mut text = text.to_string();
        if text.len() > LOG_LINE_BYTES_MAX {
            let mut cut = LOG_LINE_BYTES_MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        self.bytes += text.len();
        self.lines.push_back(LogLine {
            ts_ms,
            stream,
            text,
        });
        while self.lines.len() > LOG_LINES_MAX || self.bytes > LOG_BYTES_MAX {
            let old = self
                .lines
                .pop_front()
                .expect("over a bound means not empty");
            self.bytes -= old.text.len();
            self.dropped += 1;
        }
    }

    /// Adds raw output: complete lines go in, a trailing piece waits for its newline (or is
    /// flushed once it reaches [`LOG_LINE_BYTES_MAX`], so one endless line cannot grow memory).
    pub fn push_bytes(&mut self, ts_ms: u64, stream: LogStream, mut data: &[u8]) {
        let i = stream as usize;
        while !data.is_empty() {
            let room = LOG_LINE_BYTES_MAX - self.partial[i].len();
            let take = data.len().min(room);
            match data[..take].iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    self.partial[i].extend_from_slice(&data[..nl]);
                    data = &data[nl + 1..];
                    self.flush_partial(ts_ms, stream);
                }
                None => {
                    self.partial[i].extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.partial[i].len() >= LOG_LINE_BYTES_MAX {
                        self.flush_partial(ts_ms, stream);
                    }
                }
            }
        }
    }

    /// Ends a stream: its unfinished last line goes in as it is.
    pub fn close(&mut self, ts_ms: u64, stream: LogStream) {
        if !self.partial[stream as usize].is_empty() {
            self.flush_partial(ts_ms, stream);
        }
    }

    fn flush_partial(&mut self, ts_ms: u64, stream: LogStream) {
        let raw = std::mem::take(&mut self.partial[stream as usize]);
        let text = String::from_utf8_lossy(&raw);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        self.push(ts_ms, stream, text);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.iter().skip(skip).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks_and_streams() {
        let mut b = LogBuffer::new();
        b.push_bytes(1, LogStream::Stdout, b"hel");
        b.push_bytes(2, LogStream::Stderr, b"oops\n");
        b.push_bytes(3, LogStream::Stdout, b"lo\r\nworld\npart");
        b.close(4, LogStream::Stdout);
        let texts: Vec<(LogStream, String)> =
            b.tail(10).into_iter().map(|l| (l.stream, l.text)).collect();
        assert_eq!(
            texts,
            [
                (LogStream::Stderr, "oops".to_string()),
                (LogStream::Stdout, "hello".to_string()),
                (LogStream::Stdout, "world".to_string()),
                (LogStream::Stdout, "part".to_string()),
            ]
        );
        assert_eq!(b.tail(1)[0].ts_ms, 4);
    }

    #[test]
    fn keeps_within_line_and_byte_bounds() {
        let mut b = LogBuffer::new();
        for i in 0..(LOG_LINES_MAX + 10) {
            b.push(i as u64, LogStream::Stdout, &format!("line {i}"));
        }
        assert_eq!(b.len(), LOG_LINES_MAX);
        assert_eq!(b.dropped(), 10);
        assert_eq!(b.tail(1)[0].text, format!("line {}", LOG_LINES_MAX + 9));
        assert_eq!(b.tail(usize::MAX)[0].text, "line 10");

        let mut b = LogBuffer::new();
        let big = "x".repeat(LOG_LINE_BYTES_MAX);
        for _ in 0..(LOG_BYTES_MAX / LOG_LINE_BYTES_MAX + 5) {
            b.push(0, LogStream::Stdout, &big);
        }
        assert!(b.bytes() <= LOG_BYTES_MAX);
        assert_eq!(b.len(), LOG_BYTES_MAX / LOG_LINE_BYTES_MAX);
    }

    #[test]
    fn an_endless_line_is_cut_into_bounded_pieces() {
        let mut b = LogBuffer::new();
        let endless = vec![b'y'; LOG_LINE_BYTES_MAX * 2 + 7];
        b.push_bytes(0, LogStream::Stdout, &endless);
        assert_eq!(b.len(), 2);
        b.close(0, LogStream::Stdout);
        let lens: Vec<usize> = b.tail(10).iter().map(|l| l.text.len()).collect();
        assert_eq!(lens, [LOG_LINE_BYTES_MAX, LOG_LINE_BYTES_MAX, 7]);
        // Over-long single lines pushed whole are cut too.
        b.push(0, LogStream::Stderr, &"z".repeat(LOG_LINE_BYTES_MAX + 1));
        assert_eq!(b.tail(1)[0].text.len(), LOG_LINE_BYTES_MAX);
    }
}
