//! Bare LF in HTTP/1 request heads: refused. hyper's parser (httparse) takes a lone `\n` as
//! a line end, as RFC 9112 §2.2 lets a recipient do; we refuse it instead, so that a value
//! with a line feed in it (`X-A: a\nAuthorization: ...`) is never read as two fields.
//! hyper has no switch for it, so [`StrictHeads`] reads a connection's bytes before hyper
//! does and, where a request head has an LF without its CR, turns that LF into a NUL: hyper
//! then refuses the head itself (400, connection closed), exactly as it refuses other bad
//! bytes.
//!
//! To tell heads from bodies it follows the request framing: `Content-Length`, or
//! `Transfer-Encoding` (chunked, the only one the proxy takes). It never changes a byte it
//! is not sure is in a head: anything it does not follow exactly — an upgrade, a `CONNECT`,
//! HTTP/2's preface, a chunk line it cannot read, a length it cannot parse — makes it step
//! aside for the rest of the connection, and hyper's own checks are all that apply there.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The longest line the scanner keeps to read a header it needs (`Content-Length`,
/// `Transfer-Encoding`, `Connection`, `Upgrade`); a longer line of those makes it step aside.
const MAX_LINE: usize = 8 * 1024;

/// Where the scanner is in the stream of requests.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Inside a request head (or before one).
    Head(Head),
    /// Inside a body of known length: this many bytes left.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Not following this connection any more.
    Aside,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Head {
    /// The current line so far, without its line end (only while it may matter).
    line: Vec<u8>,
    /// The current line was too long to keep.
    overflow: bool,
    /// The last byte was a CR.
    after_cr: bool,
    /// The request line has been seen (empty lines before it are skipped, as httparse does).
    started: bool,
    content_length: Option<u64>,
    chunked: bool,
    /// The request asks to leave HTTP/1 (an upgrade, a CONNECT, HTTP/2's preface) or has
    /// framing the scanner does not follow.
    leaves: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line: the size so far, whether an extension began, whether the
    /// last byte was its CR.
    Size {
        size: u64,
        digits: usize,
        extension: bool,
        after_cr: bool,
    },
    /// Inside chunk data: bytes left.
    Data(u64),
    /// After chunk data: expecting CR, then LF.
    DataEnd { after_cr: bool },
    /// After the last chunk: trailer lines until an empty one.
    Trailers { line_empty: bool, after_cr: bool },
}

/// Follows the request heads of one HTTP/1 connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadScanner {
    state: State,
}

impl Default for HeadScanner {
    fn default() -> Self {
        HeadScanner {
            state: State::Head(Head::default()),
        }
    }
}

impl HeadScanner {
    /// Scan the next bytes the client sent, in order; a bare LF in a head becomes a NUL.
    /// Returns whether it changed a byte.
    pub fn scan(&mut self, bytes: &mut [u8]) -> bool {
        let mut index = 0;
        while index < bytes.len() {
            match &mut self.state {
                State::Aside => return false,
                State::Body(left) => {
                    let take = (*left).min((bytes.len() - index) as u64);
                    *left -= take;
                    index += take as usize;
                    if *left == 0 {
                        self.state = State::Head(Head::default());
                    }
                }
                State::Chunked(Chunk::Data(left)) => {
                    let take = (*left).min((bytes.len() - index) as u64);
                    *left -= take;
                    index += take as usize;
                    if *left == 0 {
                        self.state = State::Chunked(Chunk::DataEnd { after_cr: false });
                    }
                }
                State::Head(_) => {
                    if self.head_byte(&mut bytes[index]) {
                        self.state = State::Aside;
                        return true;
                    }
                    index += 1;
                }
                State::Chunked(_) => {
                    self.chunk_byte(bytes[index]);
                    index += 1;
                }
            }
        }
        false
    }

    /// One byte of a head; true if it was a bare LF (now a NUL).
    fn head_byte(&mut self, byte: &mut u8) -> bool {
        let State::Head(head) = &mut self.state else {
            unreachable!("called in a head")
        };
        match *byte {
            b'\n' if !head.after_cr => {
                *byte = 0;
                true
            }
            b'\n' => {
                head.after_cr = false;
                let line = std::mem::take(&mut head.line);
                let overflow = std::mem::take(&mut head.overflow);
                if line.is_empty() && !overflow {
                    if head.started {
                        self.state = head_end(head);
                    }
                } else if !head.started {
                    head.started = true;
                    head.leaves |= overflow || leaves_http1(&line);
                } else {
                    read_header(head, &line, overflow);
                }
                false
            }
            other => {
                if head.after_cr {
                    // A CR that is not part of CRLF: httparse refuses it; nothing to follow.
                    self.state = State::Aside;
                    return false;
                }
                head.after_cr = other == b'\r';
                if other != b'\r' {
                    if head.line.len() < MAX_LINE {
                        head.line.push(other);
                    } else {
                        head.overflow = true;
                    }
                }
                false
            }
        }
    }

    /// One byte of the framing of a chunked body (not its data).
    fn chunk_byte(&mut self, byte: u8) {
        let State::Chunked(chunk) = &mut self.state else {
            unreachable!("called in a chunked body")
        };
        let next = match chunk {
            Chunk::Size {
                size,
                digits,
                extension,
                after_cr,
            } => match byte {
                b'\n' if *after_cr && *digits > 0 => Some(if *size == 0 {
                    Chunk::Trailers {
                        line_empty: true,
                        after_cr: false,
                    }
                } else {
                    Chunk::Data(*size)
                }),
                _ if *after_cr => None,
                // A chunk line ended by a bare LF: hyper may read it either way.
                b'\n' => None,
                b'\r' => {
                    *after_cr = true;
                    return;
                }
                _ if *extension => return,
                b';' | b' ' | b'\t' if *digits > 0 => {
                    *extension = true;
                    return;
                }
                _ => match (byte as char).to_digit(16) {
                    Some(digit) if *digits < 15 => {
                        *size = *size * 16 + u64::from(digit);
                        *digits += 1;
                        return;
                    }
                    _ => None,
                },
            },
            Chunk::DataEnd { after_cr } => match byte {
                b'\r' if !*after_cr => {
                    *after_cr = true;
                    return;
                }
                b'\n' if *after_cr => Some(Chunk::Size {
                    size: 0,
                    digits: 0,
                    extension: false,
                    after_cr: false,
                }),
                _ => None,
            },
            Chunk::Trailers {
                line_empty,
                after_cr,
            } => match byte {
                b'\r' if !*after_cr => {
                    *after_cr = true;
                    return;
                }
                b'\n' if *after_cr && *line_empty => {
                    self.state = State::Head(Head::default());
                    return;
                }
                b'\n' if *after_cr => Some(Chunk::Trailers {
                    line_empty: true,
                    after_cr: false,
                }),
                _ if *after_cr => None,
                b'\n' => None,
                _ => {
                    *line_empty = false;
                    return;
                }
            },
            Chunk::Data(_) => unreachable!("data is skipped whole"),
        };
        self.state = match next {
            Some(chunk) => State::Chunked(chunk),
            None => State::Aside,
        };
    }
}

/// What follows a finished head.
fn head_end(head: &Head) -> State {
    if head.leaves {
        State::Aside
    } else if head.chunked {
        State::Chunked(Chunk::Size {
            size: 0,
            digits: 0,
            extension: false,
            after_cr: false,
        })
    } else {
        match head.content_length {
            Some(0) | None => State::Head(Head::default()),
            Some(length) => State::Body(length),
        }
    }
}

/// Whether a request line takes the connection out of HTTP/1 (`CONNECT`, HTTP/2's preface).
fn leaves_http1(line: &[u8]) -> bool {
    line.starts_with(b"CONNECT ") || line.starts_with(b"PRI * HTTP/2")
}

/// Note what a header line says about the framing.
fn read_header(head: &mut Head, line: &[u8], overflow: bool) {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return;
    };
    let name = &line[..colon];
    let value = line[colon + 1..].trim_ascii();
    let is = |wanted: &str| name.eq_ignore_ascii_case(wanted.as_bytes());
    if is("content-length") {
        let parsed = std::str::from_utf8(value)
            .ok()
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse::<u64>().ok());
        match (parsed, head.content_length) {
            (Some(length), None) if !overflow => head.content_length = Some(length),
            _ => head.leaves = true,
        }
    } else if is("transfer-encoding") {
        head.chunked = true;
        if overflow || !value.eq_ignore_ascii_case(b"chunked") {
            head.leaves = true;
        }
    } else if is("upgrade") {
        head.leaves = true;
    } else if is("connection") {
        let upgrade = value
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        head.leaves |= upgrade || overflow;
    }
}

/// A client connection whose HTTP/1 request heads may not use a bare LF (see the module
/// documentation). Writes pass through unchanged.
#[derive(Debug)]
pub struct StrictHeads<I> {
    io: I,
    scanner: HeadScanner,
}

impl<I> StrictHeads<I> {
    pub fn new(io: I) -> StrictHeads<I> {
        StrictHeads {
            io,
            scanner: HeadScanner::default(),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for StrictHeads<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let fresh = &mut buf.filled_mut()[before..];
            if this.scanner.scan(fresh) {
                tracing::debug!("refused a request head with a bare LF");
            }
        }
        polled
    }
}

delegate_writes!(StrictHeads);

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes after scanning `input` in the given pieces, and whether one was changed.
    fn scanned(pieces: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut scanner = HeadScanner::default();
        let mut out = Vec::new();
        let mut changed = false;
        for piece in pieces {
            let mut piece = piece.to_vec();
            changed |= scanner.scan(&mut piece);
            out.extend(piece);
        }
        (out, changed)
    }

    /// Every split of `input` in two gives the same answer as scanning it whole.
    fn same_in_every_split(input: &[u8]) -> (Vec<u8>, bool) {
        let whole = scanned(&[input]);
        for split in 0..=input.len() {
            assert_eq!(
                scanned(&[&input[..split], &input[split..]]),
                whole,
                "split at {split}"
            );
        }
        whole
    }

    #[test]
    fn a_bare_lf_in_a_head_becomes_a_nul() {
        for head in [
            &b"GET / HTTP/1.1\r\nX-A: a\nAuthorization: Bearer x\r\n\r\n"[..],
            b"GET / HTTP/1.1\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\n",
            b"GET / HTTP/1.1\r\nX-A\n: a\r\n\r\n",
        ] {
            let (out, changed) = same_in_every_split(head);
            assert!(changed, "{}", String::from_utf8_lossy(head));
            assert_eq!(out.iter().filter(|&&b| b == 0).count(), 1);
            assert_eq!(out.len(), head.len());
        }
    }

    #[test]
    fn bodies_are_never_touched() {
        let request = b"POST /a HTTP/1.1\r\nContent-Length: 11\r\n\r\n{\"a\":\n1}\n\n\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        let (out, changed) = same_in_every_split(request);
        assert!(!changed);
        assert_eq!(out, request);
        let chunked = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\na\nb\nc\r\n3\r\n\n\n\n\r\n0\r\nX-Trailer: t\r\n\r\n\
            GET /b HTTP/1.1\r\nX: 1\nY: 2\r\n\r\n";
        let (out, changed) = same_in_every_split(chunked);
        assert!(changed, "the head after the chunked body is followed");
        let nul = out.iter().position(|&b| b == 0).unwrap();
        assert_eq!(&out[nul - 4..nul], b"X: 1");
    }

    #[test]
    fn keep_alive_heads_after_bodies_are_checked() {
        let requests = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nx\ny\
            GET /b HTTP/1.1\r\nHost: x\nEvil: 1\r\n\r\n";
        let (_, changed) = same_in_every_split(requests);
        assert!(changed);
    }

    #[test]
    fn what_it_does_not_follow_it_leaves_alone() {
        for request in [
            // Leaves HTTP/1.
            &b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nbinary\nframes\n"[..],
            b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: x\r\n\r\ntls\nbytes\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\n\n",
            // Framing it does not follow: hyper decides.
            b"POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\nab\ncGET / HTTP/1.1\nX: y\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\n\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x\nabc\r\n0\r\n\r\nGET / HTTP/1.1\nX: y\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\n\r\nGET / HTTP/1.1\nX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n\n",
        ] {
            let (out, changed) = same_in_every_split(request);
            assert!(!changed, "{}", String::from_utf8_lossy(request));
            assert_eq!(out, request);
        }
    }

    #[test]
    fn empty_lines_before_a_request_line_are_skipped_with_crlf_only() {
        let (_, changed) = same_in_every_split(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!changed);
        let (_, changed) = same_in_every_split(b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(changed);
    }
}
