//! Relays an upgraded WebSocket connection between the agent and the upstream. This module
//! owns the framing of both directions: it parses the frames one side sends (the agent's
//! masked, the upstream's unmasked), rejects what RFC 6455 forbids, streams control frames
//! and untouched messages through byte for byte, and passes the payload of every message it
//! rewrites through a [`MessageRewriter`], framing what comes out afresh (masked toward the
//! upstream, and re-fragmented above 64 KiB so memory stays bounded). The agent's text
//! messages are rewritten (placeholders); the upstream's text and binary messages are (echoed
//! credentials). A direction without a rewriter is copied as plain bytes.
//!
//! It knows nothing about credentials or placeholders: what a message becomes is entirely the
//! rewriter's business. Nor does it do the handshake: the caller upgrades both sides, and
//! strips `Sec-WebSocket-Extensions` when rewriting is on, which is what lets this module change
//! how messages are fragmented.

use std::io;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Rewrites the payload of one message as it streams through, fragment by fragment.
pub trait MessageRewriter: Send {
    /// The next payload bytes of the message, unmasked; returns the bytes to send instead (may
    /// be empty: it may hold bytes back).
    fn feed(&mut self, payload: &[u8]) -> Bytes;
    /// The message ended: whatever is still held back.
    fn finish(&mut self) -> Bytes;
}

/// A new rewriter for each message of one direction.
pub type NewRewriter = Box<dyn FnMut() -> Box<dyn MessageRewriter> + Send>;

/// The most payload of a rewritten frame read at once, and so the largest frame re-emitted
/// whole.
const REWRITE_PIECE: usize = 64 * 1024;
/// Bytes passed through verbatim are gathered up to this size before being written.
const VERBATIM_PIECE: usize = 64 * 1024;
const READ_BUFFER: usize = 16 * 1024;
/// 2 fixed bytes, at most 8 of extended length, 4 of mask.
const MAX_HEADER_LEN: usize = 14;
const MAX_CONTROL_PAYLOAD: u8 = 125;

const OPCODE_CONTINUATION: u8 = 0x0;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;

const FIN_BIT: u8 = 0x80;
const MASK_BIT: u8 = 0x80;

/// Which side of the connection frames come from: it decides the masking (RFC 6455 §5.1:
/// a client masks every frame, a server none) and which messages are rewritten.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// The agent (the WebSocket client): its text messages are rewritten.
    Agent,
    /// The upstream (the server): its text and binary messages are rewritten.
    Upstream,
}

impl Side {
    fn masks(self) -> bool {
        self == Side::Agent
    }

    fn name(self) -> &'static str {
        match self {
            Side::Agent => "the agent",
            Side::Upstream => "the upstream",
        }
    }
}

/// Relay frames from `from` (sent by `side`) to `to`, rewriting messages; returns when
/// `from` ends (EOF after a whole frame: Ok; EOF mid-frame or a protocol violation: an
/// io::Error of kind InvalidData with a clear lower-case message). Flushes and shuts down the
/// writer at the end.
pub async fn relay_frames<R, W>(
    side: Side,
    from: R,
    to: W,
    new_rewriter: impl FnMut() -> Box<dyn MessageRewriter> + Send,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut relay = FrameRelay {
        side,
        from: BufReader::with_capacity(READ_BUFFER, from),
        to,
        new_rewriter,
        message: None,
        buf: Vec::new(),
    };
    let relayed = relay.run().await;
    // The other side must learn that this one is gone even when it misbehaved.
    let closed = relay.close_writer().await;
    relayed.and(closed)
}

/// Join both sides of an upgraded connection, each direction through [`relay_frames`] when
/// it has a rewriter, as plain bytes otherwise. Ends when both directions are done, like
/// `tokio::io::copy_bidirectional`: when one direction ends, the write side it feeds is shut
/// down and the other keeps running until it ends too. An error ends its direction only; the
/// first error to happen is returned.
pub async fn join<A, U>(
    agent: A,
    upstream: U,
    to_upstream: Option<NewRewriter>,
    to_agent: Option<NewRewriter>,
) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (agent_reader, agent_writer) = tokio::io::split(agent);
    let (upstream_reader, upstream_writer) = tokio::io::split(upstream);

    let to_upstream = one_direction(Side::Agent, agent_reader, upstream_writer, to_upstream);
    let to_agent = one_direction(Side::Upstream, upstream_reader, agent_writer, to_agent);
    tokio::pin!(to_upstream, to_agent);

    let mut to_upstream_done = false;
    let mut to_agent_done = false;
    let mut first_error = None;
    while !(to_upstream_done && to_agent_done) {
        tokio::select! {
            result = &mut to_upstream, if !to_upstream_done => {
                to_upstream_done = true;
                if let Err(error) = result {
                    first_error.get_or_insert(error);
                }
            }
            result = &mut to_agent, if !to_agent_done => {
                to_agent_done = true;
                if let Err(error) = result {
                    first_error.get_or_insert(error);
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn one_direction<R, W>(
    side: Side,
    mut from: R,
    mut to: W,
    rewriter: Option<NewRewriter>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match rewriter {
        Some(new_rewriter) => relay_frames(side, from, to, new_rewriter).await,
        None => {
            let copied = tokio::io::copy(&mut from, &mut to).await;
            let closed = to.shutdown().await;
            copied.and(closed).map(drop)
        }
    }
}

/// What the frame carries, as far as relaying it is concerned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FrameKind {
    Continuation,
    Text,
    Binary,
    Control,
}

struct FrameHeader {
    fin: bool,
    rsv: u8,
    kind: FrameKind,
    /// `None` for the upstream's frames, which are not masked.
    mask: Option<[u8; 4]>,
    payload_len: u64,
    /// The header exactly as it was sent, for frames relayed verbatim.
    raw: [u8; MAX_HEADER_LEN],
    raw_len: usize,
}

impl FrameHeader {
    fn raw(&self) -> &[u8] {
        &self.raw[..self.raw_len]
    }
}

/// The data message whose frames are still arriving.
enum Message {
    /// Binary, or text using an extension (RSV bits): passed through untouched.
    Verbatim,
    Rewritten(RewrittenMessage),
}

struct RewrittenMessage {
    rewriter: Box<dyn MessageRewriter>,
    /// The message's opcode (text or binary), which its first frame out must carry.
    opcode: u8,
    /// Whether a frame of this message went out yet.
    started: bool,
}

struct FrameRelay<R, W, F> {
    side: Side,
    from: BufReader<R>,
    to: W,
    new_rewriter: F,
    message: Option<Message>,
    /// Reused for every frame: the bytes in flight, never more than about one piece.
    buf: Vec<u8>,
}

impl<R, W, F> FrameRelay<R, W, F>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: FnMut() -> Box<dyn MessageRewriter>,
{
    async fn run(&mut self) -> io::Result<()> {
        while let Some(header) = self.read_header().await? {
            self.relay_frame(&header).await?;
        }
        Ok(())
    }

    async fn close_writer(&mut self) -> io::Result<()> {
        self.to.flush().await?;
        self.to.shutdown().await
    }

    /// `None` when the sending side ended cleanly, between two frames.
    async fn read_header(&mut self) -> io::Result<Option<FrameHeader>> {
        if self.from.fill_buf().await?.is_empty() {
            return Ok(None);
        }
        let mut raw = [0u8; MAX_HEADER_LEN];
        read_frame_bytes(&mut self.from, self.side, &mut raw[..2]).await?;
        let fin = raw[0] & FIN_BIT != 0;
        let rsv = (raw[0] >> 4) & 0x7;
        let kind = match raw[0] & 0x0F {
            OPCODE_CONTINUATION => FrameKind::Continuation,
            OPCODE_TEXT => FrameKind::Text,
            OPCODE_BINARY => FrameKind::Binary,
            OPCODE_CLOSE | OPCODE_PING | OPCODE_PONG => FrameKind::Control,
            reserved => {
                return Err(protocol_violation(format!(
                    "websocket frame with reserved opcode {reserved:#x}"
                )));
            }
        };
        let short_len = raw[1] & 0x7F;
        if kind == FrameKind::Control {
            if !fin {
                return Err(protocol_violation("fragmented websocket control frame"));
            }
            if short_len > MAX_CONTROL_PAYLOAD {
                return Err(protocol_violation(
                    "websocket control frame with a payload longer than 125 bytes",
                ));
            }
        }
        match (self.side.masks(), raw[1] & MASK_BIT != 0) {
            (true, false) => {
                return Err(protocol_violation(format!(
                    "websocket frame from {} is not masked",
                    self.side.name()
                )));
            }
            (false, true) => {
                return Err(protocol_violation(format!(
                    "websocket frame from {} is masked",
                    self.side.name()
                )));
            }
            _ => {}
        }

        let (payload_len, mask_at) = match short_len {
            126 => {
                read_frame_bytes(&mut self.from, self.side, &mut raw[2..4]).await?;
                (u64::from(u16::from_be_bytes([raw[2], raw[3]])), 4)
            }
            127 => {
                let mut len = [0u8; 8];
                read_frame_bytes(&mut self.from, self.side, &mut len).await?;
                raw[2..10].copy_from_slice(&len);
                let len = u64::from_be_bytes(len);
                if len >> 63 != 0 {
                    return Err(protocol_violation(
                        "websocket frame length with the most significant bit set",
                    ));
                }
                (len, 10)
            }
            len => (u64::from(len), 2),
        };
        let mut mask = None;
        let mut raw_len = mask_at;
        if self.side.masks() {
            let mut key = [0u8; 4];
            read_frame_bytes(&mut self.from, self.side, &mut key).await?;
            raw[mask_at..mask_at + 4].copy_from_slice(&key);
            mask = Some(key);
            raw_len += 4;
        }

        Ok(Some(FrameHeader {
            fin,
            rsv,
            kind,
            mask,
            payload_len,
            raw,
            raw_len,
        }))
    }

    async fn relay_frame(&mut self, header: &FrameHeader) -> io::Result<()> {
        // Control frames may come between the fragments of a message and do not touch it.
        if header.kind == FrameKind::Control {
            return self.relay_verbatim(header).await;
        }
        let mut message = match (header.kind, self.message.take()) {
            (FrameKind::Continuation, Some(message)) => message,
            (FrameKind::Continuation, None) => {
                return Err(protocol_violation(
                    "websocket continuation frame without a message to continue",
                ));
            }
            (_, Some(_)) => {
                return Err(protocol_violation(
                    "websocket data frame starting a message before the previous one finished",
                ));
            }
            (FrameKind::Text | FrameKind::Binary, None)
                if header.rsv != 0 && self.side == Side::Upstream =>
            {
                // The rewriter could not read a message an extension (compression...) encoded,
                // and none can have been agreed: the caller strips the offer when rewriting.
                return Err(protocol_violation(
                    "websocket message from the upstream with reserved bits set, though no extension was agreed",
                ));
            }
            (FrameKind::Text, None) if header.rsv == 0 => self.rewritten(OPCODE_TEXT),
            (FrameKind::Binary, None) if self.side == Side::Upstream => {
                self.rewritten(OPCODE_BINARY)
            }
            // The agent's binary messages, or text whose RSV bits say an extension encoded
            // it: a rewriter could not read it, and re-framing it would break the extension.
            (_, None) => Message::Verbatim,
        };
        match &mut message {
            Message::Verbatim => self.relay_verbatim(header).await?,
            Message::Rewritten(rewritten) => {
                if header.rsv != 0 {
                    return Err(protocol_violation(
                        "websocket continuation frame with reserved bits set in a message without extensions",
                    ));
                }
                self.relay_rewritten(header, rewritten).await?;
            }
        }
        if !header.fin {
            self.message = Some(message);
        }
        Ok(())
    }

    fn rewritten(&mut self, opcode: u8) -> Message {
        Message::Rewritten(RewrittenMessage {
            rewriter: (self.new_rewriter)(),
            opcode,
            started: false,
        })
    }

    /// Passes the frame on byte for byte, forwarding its payload as it arrives.
    async fn relay_verbatim(&mut self, header: &FrameHeader) -> io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(header.raw());
        let mut remaining = header.payload_len;
        loop {
            if remaining > 0 {
                let available = self.from.fill_buf().await?;
                if available.is_empty() {
                    return Err(ended_mid_frame(self.side));
                }
                let taken = available
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                self.buf.extend_from_slice(&available[..taken]);
                self.from.consume(taken);
                remaining -= taken as u64;
            }
            // Write when the next read might wait, so a slowly arriving frame is not held back.
            if remaining == 0 || self.from.buffer().is_empty() || self.buf.len() >= VERBATIM_PIECE {
                self.send_buf().await?;
            }
            if remaining == 0 {
                return Ok(());
            }
        }
    }

    /// Unmasks the payload piece by piece, feeds it to the message's rewriter and sends what
    /// comes back as fresh frames (freshly masked toward the upstream).
    async fn relay_rewritten(
        &mut self,
        header: &FrameHeader,
        text: &mut RewrittenMessage,
    ) -> io::Result<()> {
        let mut remaining = header.payload_len;
        let mut mask_phase = 0;
        loop {
            let piece_len = remaining.min(REWRITE_PIECE as u64) as usize;
            self.buf.clear();
            self.buf.resize(piece_len, 0);
            read_frame_bytes(&mut self.from, self.side, &mut self.buf).await?;
            if let Some(mask) = header.mask {
                apply_mask(&mut self.buf, mask, mask_phase);
                mask_phase = (mask_phase + piece_len) % 4;
            }
            remaining -= piece_len as u64;

            let last_piece = remaining == 0;
            let ends_message = last_piece && header.fin;
            let rewritten = if piece_len == 0 {
                Bytes::new()
            } else {
                text.rewriter.feed(&self.buf)
            };
            let held_back = if ends_message {
                text.rewriter.finish()
            } else {
                Bytes::new()
            };
            // An empty fragment carries nothing, but the final one is what ends the message.
            if ends_message || !rewritten.is_empty() || !held_back.is_empty() {
                let opcode = if text.started {
                    OPCODE_CONTINUATION
                } else {
                    text.opcode
                };
                text.started = true;
                self.send_frame(ends_message, opcode, &[&rewritten, &held_back])
                    .await?;
            }
            if last_piece {
                return Ok(());
            }
        }
    }

    async fn send_frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload_parts: &[&[u8]],
    ) -> io::Result<()> {
        let payload_len = payload_parts.iter().map(|part| part.len()).sum();
        let mask = if self.side.masks() {
            // RFC 6455 section 10.3: masks must be unpredictable, so fresh from the OS each
            // frame.
            let mut mask = [0u8; 4];
            getrandom::getrandom(&mut mask).map_err(|error| {
                io::Error::other(format!("no randomness for a websocket frame mask: {error}"))
            })?;
            Some(mask)
        } else {
            None
        };
        self.buf.clear();
        encode_header(&mut self.buf, fin, opcode, mask, payload_len);
        let payload_start = self.buf.len();
        for part in payload_parts {
            self.buf.extend_from_slice(part);
        }
        if let Some(mask) = mask {
            apply_mask(&mut self.buf[payload_start..], mask, 0);
        }
        self.send_buf().await
    }

    async fn send_buf(&mut self) -> io::Result<()> {
        self.to.write_all(&self.buf).await?;
        self.buf.clear();
        // Flush before the relay may wait on the sender, so nothing sits in a writer's buffer.
        if self.from.buffer().is_empty() {
            self.to.flush().await?;
        }
        Ok(())
    }
}

/// Reads bytes that belong to a frame already begun: EOF here is a truncated frame.
async fn read_frame_bytes<R: AsyncRead + Unpin>(
    from: &mut BufReader<R>,
    side: Side,
    buf: &mut [u8],
) -> io::Result<()> {
    match from.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Err(ended_mid_frame(side)),
        Err(error) => Err(error),
    }
}

fn encode_header(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload_len: usize,
) {
    out.push(if fin { FIN_BIT | opcode } else { opcode });
    let mask_bit = if mask.is_some() { MASK_BIT } else { 0 };
    match payload_len {
        0..=125 => out.push(mask_bit | payload_len as u8),
        126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
}

/// XORs `bytes` with `mask`; `phase` is the position of `bytes[0]` within the frame's payload.
fn apply_mask(bytes: &mut [u8], mask: [u8; 4], phase: usize) {
    let mut key = mask;
    key.rotate_left(phase % 4);
    for chunk in bytes.chunks_mut(4) {
        for (byte, key_byte) in chunk.iter_mut().zip(key) {
            *byte ^= key_byte;
        }
    }
}

fn protocol_violation(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

fn ended_mid_frame(side: Side) -> io::Error {
    protocol_violation(format!(
        "{}'s connection ended in the middle of a websocket frame",
        side.name()
    ))
}

#[cfg(test)]
mod tests;
