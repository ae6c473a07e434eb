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
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::io::{DuplexStream, duplex};
    use tokio::time::timeout;

    use super::*;

    const AGENT_MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
    const PIPE: usize = 64 * 1024;
    const PATIENCE: Duration = Duration::from_secs(20);
    const PLACEHOLDER: &[u8] = b"__bot__";
    const SECRET: &[u8] = b"s3cret-token";

    /// Replaces `from` by `to` as the payload streams, holding back only what could be the
    /// start of `from`.
    struct Replace {
        from: &'static [u8],
        to: &'static [u8],
        pending: Vec<u8>,
    }

    impl MessageRewriter for Replace {
        fn feed(&mut self, payload: &[u8]) -> Bytes {
            self.pending.extend_from_slice(payload);
            let mut out = Vec::with_capacity(self.pending.len());
            let mut at = 0;
            while at + self.from.len() <= self.pending.len() {
                if self.pending[at..].starts_with(self.from) {
                    out.extend_from_slice(self.to);
                    at += self.from.len();
                } else {
                    out.push(self.pending[at]);
                    at += 1;
                }
            }
            self.pending.drain(..at);
            Bytes::from(out)
        }

        fn finish(&mut self) -> Bytes {
            Bytes::from(std::mem::take(&mut self.pending))
        }
    }

    /// Sends nothing until the message ends.
    struct HoldEverything(Vec<u8>);

    impl MessageRewriter for HoldEverything {
        fn feed(&mut self, payload: &[u8]) -> Bytes {
            self.0.extend_from_slice(payload);
            Bytes::new()
        }

        fn finish(&mut self) -> Bytes {
            Bytes::from(std::mem::take(&mut self.0))
        }
    }

    fn replacing(
        from: &'static [u8],
        to: &'static [u8],
    ) -> impl FnMut() -> Box<dyn MessageRewriter> + Send + 'static {
        move || {
            Box::new(Replace {
                from,
                to,
                pending: Vec::new(),
            })
        }
    }

    fn bot_token() -> impl FnMut() -> Box<dyn MessageRewriter> + Send + 'static {
        replacing(PLACEHOLDER, SECRET)
    }

    fn counted_bot_token(
        made: &Arc<AtomicUsize>,
    ) -> impl FnMut() -> Box<dyn MessageRewriter> + Send + 'static {
        let made = Arc::clone(made);
        let mut make = bot_token();
        move || {
            made.fetch_add(1, Ordering::SeqCst);
            make()
        }
    }

    fn replace_all(payload: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < payload.len() {
            if payload[at..].starts_with(from) {
                out.extend_from_slice(to);
                at += from.len();
            } else {
                out.push(payload[at]);
                at += 1;
            }
        }
        out
    }

    fn xor_mask(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        payload
            .iter()
            .enumerate()
            .map(|(index, byte)| byte ^ mask[index % 4])
            .collect()
    }

    /// A frame as written on the wire, masked when `mask` is given, with the minimal length.
    fn encode_frame(first_byte: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let mut out = vec![first_byte];
        match payload.len() {
            len @ 0..=125 => out.push(mask_bit | len as u8),
            len @ 126..=0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        match mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend_from_slice(&xor_mask(payload, mask));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    /// A frame as a WebSocket client sends it.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let first_byte = if fin { 0x80 | opcode } else { opcode };
        encode_frame(first_byte, Some(AGENT_MASK), payload)
    }

    #[derive(Debug)]
    struct Frame {
        fin: bool,
        rsv: u8,
        opcode: u8,
        length_code: u8,
        mask: Option<[u8; 4]>,
        /// Unmasked.
        payload: Vec<u8>,
        raw: Vec<u8>,
    }

    /// The frame at the start of `bytes` and its size, or `None` if it is not all there.
    fn decode_frame(bytes: &[u8]) -> Option<(Frame, usize)> {
        let first = *bytes.first()?;
        let second = *bytes.get(1)?;
        let length_code = second & 0x7F;
        let (len, mut at) = match length_code {
            126 => (
                usize::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
                4,
            ),
            127 => (
                usize::try_from(u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?)).ok()?,
                10,
            ),
            len => (usize::from(len), 2),
        };
        let mask: Option<[u8; 4]> = if second & 0x80 != 0 {
            let mask = bytes.get(at..at + 4)?.try_into().ok()?;
            at += 4;
            Some(mask)
        } else {
            None
        };
        let body = bytes.get(at..at + len)?;
        let payload = match mask {
            Some(mask) => xor_mask(body, mask),
            None => body.to_vec(),
        };
        let frame = Frame {
            fin: first & 0x80 != 0,
            rsv: (first >> 4) & 0x7,
            opcode: first & 0x0F,
            length_code,
            mask,
            payload,
            raw: bytes[..at + len].to_vec(),
        };
        Some((frame, at + len))
    }

    fn decode_frames(mut bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let (frame, used) = decode_frame(bytes).expect("only whole frames");
            frames.push(frame);
            bytes = &bytes[used..];
        }
        frames
    }

    async fn read_one_frame(stream: &mut DuplexStream) -> Frame {
        let mut bytes = Vec::new();
        loop {
            if let Some((frame, used)) = decode_frame(&bytes) {
                assert_eq!(used, bytes.len(), "read past one frame");
                return frame;
            }
            let missing = match bytes.len() {
                0 | 1 => 2 - bytes.len(),
                _ => 1,
            };
            let mut more = vec![0; missing];
            stream.read_exact(&mut more).await.expect("a frame");
            bytes.extend_from_slice(&more);
        }
    }

    /// Checks the frames form one message as the proxy must send it (the message's opcode
    /// first, then continuations, FIN on the last only, no reserved bits), and returns its
    /// payload.
    fn message_payload(frames: &[Frame], opcode: u8) -> Vec<u8> {
        assert!(!frames.is_empty(), "no frame at all");
        for (index, frame) in frames.iter().enumerate() {
            let expected = if index == 0 {
                opcode
            } else {
                OPCODE_CONTINUATION
            };
            assert_eq!(frame.opcode, expected, "opcode of frame {index}");
            assert_eq!(frame.fin, index == frames.len() - 1, "FIN of frame {index}");
            assert_eq!(frame.rsv, 0);
        }
        frames
            .iter()
            .flat_map(|frame| frame.payload.clone())
            .collect()
    }

    /// [`message_payload`] of a text message to the upstream: freshly masked.
    fn text_message_payload(frames: &[Frame]) -> Vec<u8> {
        for frame in frames {
            let mask = frame.mask.expect("frames to the upstream are masked");
            assert_ne!(mask, AGENT_MASK, "the agent's mask was reused");
        }
        message_payload(frames, OPCODE_TEXT)
    }

    /// Sends `input` as the agent and closes; returns how the relay ended and what the
    /// upstream received.
    async fn relay(
        input: Vec<u8>,
        new_rewriter: impl FnMut() -> Box<dyn MessageRewriter> + Send,
    ) -> (io::Result<()>, Vec<u8>) {
        relay_from(Side::Agent, input, new_rewriter).await
    }

    /// Sends `input` as `side` and closes; returns how the relay ended and what the other
    /// side received.
    async fn relay_from(
        side: Side,
        input: Vec<u8>,
        new_rewriter: impl FnMut() -> Box<dyn MessageRewriter> + Send,
    ) -> (io::Result<()>, Vec<u8>) {
        let (mut agent, agent_side) = duplex(PIPE);
        let (upstream_side, mut upstream) = duplex(PIPE);
        let sending = async move {
            // The relay may stop early and drop its end; then these fail, as they should.
            let _ = agent.write_all(&input).await;
            let _ = agent.shutdown().await;
        };
        let receiving = async {
            let mut received = Vec::new();
            upstream
                .read_to_end(&mut received)
                .await
                .expect("read upstream");
            received
        };
        let relaying = relay_frames(side, agent_side, upstream_side, new_rewriter);
        let ((), result, received) = timeout(PATIENCE, async {
            tokio::join!(sending, relaying, receiving)
        })
        .await
        .expect("the relay ends in time");
        (result, received)
    }

    /// Sends the rest of the agent's input and closes, reading what the upstream gets until
    /// the relay closes it.
    async fn send_rest_and_read(
        agent: &mut DuplexStream,
        upstream: &mut DuplexStream,
        rest: &[u8],
    ) -> Vec<u8> {
        let sending = async {
            agent.write_all(rest).await.expect("write the rest");
            agent.shutdown().await.expect("close the agent");
        };
        let mut received = Vec::new();
        let ((), read) = timeout(PATIENCE, async {
            tokio::join!(sending, upstream.read_to_end(&mut received))
        })
        .await
        .expect("the rest arrives in time");
        read.expect("read upstream");
        received
    }

    fn assert_invalid_data(result: io::Result<()>, words: &str) {
        let error = result.expect_err("the relay must fail");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert!(error.to_string().contains(words), "{error}");
    }

    #[tokio::test]
    async fn text_frame_arrives_upstream_with_the_token_replaced_under_a_fresh_mask() {
        let input = client_frame(true, OPCODE_TEXT, br#"{"token":"__bot__"}"#);
        let (result, received) = relay(input, bot_token()).await;
        result.expect("the relay ends cleanly");
        let frames = decode_frames(&received);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            text_message_payload(&frames),
            br#"{"token":"s3cret-token"}"#
        );
    }

    #[tokio::test]
    async fn binary_ping_pong_and_close_frames_arrive_byte_identical() {
        let made = Arc::new(AtomicUsize::new(0));
        let mut input = client_frame(true, OPCODE_BINARY, b"binary __bot__ stays");
        input.extend(client_frame(true, OPCODE_PING, b"ping __bot__"));
        input.extend(client_frame(true, OPCODE_PONG, b"pong"));
        input.extend(client_frame(
            true,
            OPCODE_CLOSE,
            &[0x03, 0xE8, b'b', b'y', b'e'],
        ));
        let (result, received) = relay(input.clone(), counted_bot_token(&made)).await;
        result.expect("the relay ends cleanly");
        assert_eq!(received, input);
        assert_eq!(made.load(Ordering::SeqCst), 0, "no rewriter for non-text");
    }

    #[tokio::test]
    async fn placeholder_split_across_two_fragments_is_replaced() {
        let mut input = client_frame(false, OPCODE_TEXT, br#"{"token":"__b"#);
        input.extend(client_frame(true, OPCODE_CONTINUATION, br#"ot__"}"#));
        let (result, received) = relay(input, bot_token()).await;
        result.expect("the relay ends cleanly");
        assert_eq!(
            text_message_payload(&decode_frames(&received)),
            br#"{"token":"s3cret-token"}"#
        );
    }

    #[tokio::test]
    async fn ping_between_fragments_passes_through_in_order() {
        let ping = client_frame(true, OPCODE_PING, b"still there?");
        let mut input = client_frame(false, OPCODE_TEXT, b"hello __bot__ ");
        input.extend(&ping);
        input.extend(client_frame(true, OPCODE_CONTINUATION, b"bye"));
        let (result, received) = relay(input, bot_token()).await;
        result.expect("the relay ends cleanly");
        let mut frames = decode_frames(&received);
        assert_eq!(frames.len(), 3);
        let between = frames.remove(1);
        assert_eq!(between.raw, ping);
        assert_eq!(text_message_payload(&frames), b"hello s3cret-token bye");
    }

    #[tokio::test]
    async fn binary_frames_with_16_and_64_bit_lengths_arrive_byte_identical() {
        let mut input = client_frame(true, OPCODE_BINARY, &[7; 300]);
        input.extend(client_frame(true, OPCODE_BINARY, &[8; 70_000]));
        input.extend(client_frame(false, OPCODE_BINARY, &[9; 200_000]));
        input.extend(client_frame(true, OPCODE_CONTINUATION, &[10; 126]));
        let (result, received) = relay(input.clone(), bot_token()).await;
        result.expect("the relay ends cleanly");
        assert_eq!(received, input);
    }

    #[tokio::test]
    async fn text_frames_with_16_and_64_bit_lengths_are_rewritten() {
        for len in [300, 65_536, 70_000] {
            let mut payload = vec![b'a'; len - PLACEHOLDER.len()];
            payload.extend_from_slice(PLACEHOLDER);
            let input = client_frame(true, OPCODE_TEXT, &payload);
            let (result, received) = relay(input, bot_token()).await;
            result.expect("the relay ends cleanly");
            let frames = decode_frames(&received);
            assert_eq!(
                text_message_payload(&frames),
                replace_all(&payload, PLACEHOLDER, SECRET),
                "payload of {len} bytes"
            );
        }
    }

    async fn rewritten_single_frame(len: usize, replacement: &'static [u8]) -> Frame {
        let mut payload = vec![b'a'; len - PLACEHOLDER.len()];
        payload.extend_from_slice(PLACEHOLDER);
        let input = client_frame(true, OPCODE_TEXT, &payload);
        let (result, received) = relay(input, replacing(PLACEHOLDER, replacement)).await;
        result.expect("the relay ends cleanly");
        let mut frames = decode_frames(&received);
        assert_eq!(
            text_message_payload(&frames),
            replace_all(&payload, PLACEHOLDER, replacement)
        );
        assert_eq!(frames.len(), 1);
        frames.remove(0)
    }

    #[tokio::test]
    async fn rewritten_payload_growing_from_125_to_126_bytes_gets_a_16_bit_length() {
        let frame = rewritten_single_frame(125, b"s3cret-t").await;
        assert_eq!(frame.payload.len(), 126);
        assert_eq!(frame.length_code, 126);
    }

    #[tokio::test]
    async fn rewritten_payload_shrinking_from_126_to_125_bytes_gets_a_7_bit_length() {
        let frame = rewritten_single_frame(126, b"s3cret").await;
        assert_eq!(frame.payload.len(), 125);
        assert_eq!(frame.length_code, 125);
    }

    #[tokio::test]
    async fn rewritten_payload_growing_from_65535_to_65536_bytes_gets_a_64_bit_length() {
        let frame = rewritten_single_frame(65_535, b"s3cret-t").await;
        assert_eq!(frame.payload.len(), 65_536);
        assert_eq!(frame.length_code, 127);
    }

    #[tokio::test]
    async fn one_mebibyte_text_frame_is_re_emitted_as_fragments_with_fin_only_on_the_last() {
        let payload: Vec<u8> = b"x __bot__ y "
            .iter()
            .copied()
            .cycle()
            .take(1 << 20)
            .collect();
        let input = client_frame(true, OPCODE_TEXT, &payload);
        let (result, received) = relay(input, bot_token()).await;
        result.expect("the relay ends cleanly");
        let frames = decode_frames(&received);
        assert!(frames.len() >= 16, "only {} frames", frames.len());
        assert_eq!(
            text_message_payload(&frames),
            replace_all(&payload, PLACEHOLDER, SECRET)
        );
        let largest = frames.iter().map(|frame| frame.payload.len()).max();
        assert!(
            largest <= Some(2 * 64 * 1024),
            "a fragment of {largest:?} bytes"
        );
        let first_mask = frames[0].mask;
        assert!(
            frames.iter().any(|frame| frame.mask != first_mask),
            "every fragment had the same mask"
        );
    }

    #[tokio::test]
    async fn large_text_frame_is_forwarded_before_it_has_fully_arrived() {
        let (mut agent, agent_side) = duplex(PIPE);
        let (upstream_side, mut upstream) = duplex(PIPE);
        let relaying = tokio::spawn(relay_frames(
            Side::Agent,
            agent_side,
            upstream_side,
            bot_token(),
        ));
        let payload = vec![b'a'; 1 << 20];
        let input = client_frame(true, OPCODE_TEXT, &payload);
        let (head, rest) = input.split_at(14 + 2 * 64 * 1024);

        let (written, first) = timeout(PATIENCE, async {
            tokio::join!(agent.write_all(head), read_one_frame(&mut upstream))
        })
        .await
        .expect("a fragment arrives before the rest of the frame is sent");
        written.expect("write the start of the frame");
        assert!(!first.fin);
        assert!(!first.payload.is_empty());

        let received = send_rest_and_read(&mut agent, &mut upstream, rest).await;
        let mut frames = vec![first];
        frames.extend(decode_frames(&received));
        assert_eq!(text_message_payload(&frames), payload);
        relaying
            .await
            .expect("the relay task")
            .expect("the relay ends cleanly");
    }

    #[tokio::test]
    async fn large_binary_frame_is_forwarded_before_it_has_fully_arrived() {
        let (mut agent, agent_side) = duplex(PIPE);
        let (upstream_side, mut upstream) = duplex(PIPE);
        let relaying = tokio::spawn(relay_frames(
            Side::Agent,
            agent_side,
            upstream_side,
            bot_token(),
        ));
        let input = client_frame(true, OPCODE_BINARY, &vec![5; 1 << 20]);
        let (head, rest) = input.split_at(14 + 100);

        agent.write_all(head).await.expect("write the start");
        let mut start = vec![0; head.len()];
        timeout(PATIENCE, upstream.read_exact(&mut start))
            .await
            .expect("the start arrives before the rest is sent")
            .expect("read upstream");
        assert_eq!(start, head);

        let received = send_rest_and_read(&mut agent, &mut upstream, rest).await;
        assert_eq!(received, rest);
        relaying
            .await
            .expect("the relay task")
            .expect("the relay ends cleanly");
    }

    #[tokio::test]
    async fn unmasked_client_frame_stops_the_relay_and_none_of_it_reaches_the_upstream() {
        let ping = client_frame(true, OPCODE_PING, b"hi");
        let mut input = ping.clone();
        input.extend(encode_frame(0x80 | OPCODE_TEXT, None, b"__bot__"));
        input.extend(client_frame(true, OPCODE_TEXT, b"after"));
        let (result, received) = relay(input, bot_token()).await;
        assert_invalid_data(result, "not masked");
        assert_eq!(received, ping);
    }

    #[tokio::test]
    async fn eof_in_the_middle_of_a_frame_is_an_error() {
        let text = client_frame(true, OPCODE_TEXT, &[b'a'; 300]);
        let binary = client_frame(true, OPCODE_BINARY, &[b'b'; 300]);
        // Cut inside the first byte pair, the extended length, the mask and the payload.
        for cut in [1, 3, 6, 20] {
            for frame in [&text, &binary] {
                let (result, _) = relay(frame[..cut].to_vec(), bot_token()).await;
                assert_invalid_data(result, "ended in the middle of a websocket frame");
            }
        }
    }

    #[tokio::test]
    async fn agent_closing_between_frames_ends_the_relay_cleanly() {
        let (result, received) = relay(Vec::new(), bot_token()).await;
        result.expect("the relay ends cleanly");
        assert!(received.is_empty());
    }

    #[tokio::test]
    async fn text_message_with_reserved_bits_set_passes_through_untouched() {
        let made = Arc::new(AtomicUsize::new(0));
        // RSV1 on the first frame, as permessage-deflate would send it.
        let mut input = encode_frame(0x40 | OPCODE_TEXT, Some(AGENT_MASK), b"__bot__ one");
        input.extend(client_frame(true, OPCODE_CONTINUATION, b"__bot__ two"));
        let untouched = input.clone();
        input.extend(client_frame(true, OPCODE_TEXT, b"__bot__"));
        let (result, received) = relay(input, counted_bot_token(&made)).await;
        result.expect("the relay ends cleanly");
        let (passed, rewritten) = received.split_at(untouched.len());
        assert_eq!(passed, untouched);
        assert_eq!(text_message_payload(&decode_frames(rewritten)), SECRET);
        assert_eq!(made.load(Ordering::SeqCst), 1, "only the plain message");
    }

    #[tokio::test]
    async fn reserved_bits_set_midway_through_a_rewritten_text_message_stop_the_relay() {
        let mut input = client_frame(false, OPCODE_TEXT, b"start");
        input.extend(encode_frame(
            0x80 | 0x40 | OPCODE_CONTINUATION,
            Some(AGENT_MASK),
            b"end",
        ));
        let (result, _) = relay(input, bot_token()).await;
        assert_invalid_data(result, "reserved bits");
    }

    #[tokio::test]
    async fn reserved_opcodes_stop_the_relay() {
        for opcode in [0x3, 0x7, 0xB, 0xF] {
            let input = client_frame(true, opcode, b"??");
            let (result, received) = relay(input, bot_token()).await;
            assert_invalid_data(result, "reserved opcode");
            assert!(received.is_empty());
        }
    }

    #[tokio::test]
    async fn fragmented_or_oversized_control_frames_stop_the_relay() {
        let cases = [
            (client_frame(false, OPCODE_PING, b"ping"), "fragmented"),
            (
                client_frame(true, OPCODE_PING, &[0; 126]),
                "longer than 125",
            ),
            (
                client_frame(true, OPCODE_CLOSE, &[0; 300]),
                "longer than 125",
            ),
        ];
        for (input, words) in cases {
            let (result, received) = relay(input, bot_token()).await;
            assert_invalid_data(result, words);
            assert!(received.is_empty());
        }
    }

    #[tokio::test]
    async fn data_frames_out_of_message_order_stop_the_relay() {
        let stray_continuation = client_frame(true, OPCODE_CONTINUATION, b"orphan");
        let (result, _) = relay(stray_continuation, bot_token()).await;
        assert_invalid_data(result, "without a message to continue");

        let mut interleaved = client_frame(false, OPCODE_TEXT, b"first");
        interleaved.extend(client_frame(true, OPCODE_BINARY, b"second"));
        let (result, _) = relay(interleaved, bot_token()).await;
        assert_invalid_data(result, "before the previous one finished");
    }

    #[tokio::test]
    async fn each_text_message_gets_its_own_rewriter() {
        let made = Arc::new(AtomicUsize::new(0));
        let mut input = client_frame(true, OPCODE_TEXT, b"x__b");
        input.extend(client_frame(true, OPCODE_TEXT, b"ot__y"));
        let (result, received) = relay(input, counted_bot_token(&made)).await;
        result.expect("the relay ends cleanly");
        let frames = decode_frames(&received);
        assert_eq!(frames.len(), 2);
        assert_eq!(text_message_payload(&frames[..1]), b"x__b");
        assert_eq!(text_message_payload(&frames[1..]), b"ot__y");
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn fragments_the_rewriter_holds_back_are_skipped_and_the_message_still_opens_as_text() {
        let mut input = client_frame(false, OPCODE_TEXT, b"ab");
        input.extend(client_frame(false, OPCODE_CONTINUATION, b"cd"));
        input.extend(client_frame(true, OPCODE_CONTINUATION, b"ef"));
        let hold = || Box::new(HoldEverything(Vec::new())) as Box<dyn MessageRewriter>;
        let (result, received) = relay(input, hold).await;
        result.expect("the relay ends cleanly");
        let frames = decode_frames(&received);
        assert_eq!(frames.len(), 1);
        assert_eq!(text_message_payload(&frames), b"abcdef");
    }

    #[tokio::test]
    async fn empty_text_message_arrives_as_an_empty_final_frame() {
        let input = client_frame(true, OPCODE_TEXT, b"");
        let (result, received) = relay(input, bot_token()).await;
        result.expect("the relay ends cleanly");
        let frames = decode_frames(&received);
        assert_eq!(frames.len(), 1);
        assert!(text_message_payload(&frames).is_empty());
    }

    #[tokio::test]
    async fn join_copies_upstream_bytes_unchanged_rewrites_agent_frames_and_ends_when_both_close() {
        let (mut agent, agent_side) = duplex(PIPE);
        let (upstream_side, mut upstream) = duplex(PIPE);
        let joined = tokio::spawn(join(
            agent_side,
            upstream_side,
            Some(Box::new(bot_token())),
            None,
        ));

        // The upstream speaks and stops sending first...
        let from_upstream = encode_frame(0x80 | OPCODE_TEXT, None, b"__bot__ from the server");
        upstream
            .write_all(&from_upstream)
            .await
            .expect("upstream writes");
        upstream.shutdown().await.expect("upstream stops sending");
        let mut to_agent = Vec::new();
        timeout(PATIENCE, agent.read_to_end(&mut to_agent))
            .await
            .expect("the agent sees the upstream's end")
            .expect("read the agent side");
        assert_eq!(to_agent, from_upstream);

        // ...and the agent's direction keeps working until the agent closes too.
        let from_agent = client_frame(true, OPCODE_TEXT, br#"{"token":"__bot__"}"#);
        agent.write_all(&from_agent).await.expect("agent writes");
        agent.shutdown().await.expect("agent stops sending");
        let mut to_upstream = Vec::new();
        timeout(PATIENCE, upstream.read_to_end(&mut to_upstream))
            .await
            .expect("the upstream sees the agent's end")
            .expect("read the upstream side");
        assert_eq!(
            text_message_payload(&decode_frames(&to_upstream)),
            br#"{"token":"s3cret-token"}"#
        );

        timeout(PATIENCE, joined)
            .await
            .expect("join ends once both sides closed")
            .expect("the join task")
            .expect("join ends cleanly");
    }

    #[tokio::test]
    async fn join_reports_a_protocol_violation_once_both_directions_end() {
        let (mut agent, agent_side) = duplex(PIPE);
        let (upstream_side, mut upstream) = duplex(PIPE);
        let joined = tokio::spawn(join(
            agent_side,
            upstream_side,
            Some(Box::new(bot_token())),
            None,
        ));

        let unmasked = encode_frame(0x80 | OPCODE_TEXT, None, b"__bot__");
        agent.write_all(&unmasked).await.expect("agent writes");
        let mut to_upstream = Vec::new();
        timeout(PATIENCE, upstream.read_to_end(&mut to_upstream))
            .await
            .expect("the upstream side is closed")
            .expect("read the upstream side");
        assert!(to_upstream.is_empty());

        upstream
            .write_all(b"goodbye")
            .await
            .expect("upstream writes");
        upstream.shutdown().await.expect("upstream stops sending");
        let mut to_agent = Vec::new();
        timeout(PATIENCE, agent.read_to_end(&mut to_agent))
            .await
            .expect("the agent sees the upstream's end")
            .expect("read the agent side");
        assert_eq!(to_agent, b"goodbye");

        let result = timeout(PATIENCE, joined)
            .await
            .expect("join ends once both directions ended")
            .expect("the join task");
        assert_invalid_data(result, "not masked");
    }

    /// A frame as a WebSocket server sends it: unmasked.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let first_byte = if fin { 0x80 | opcode } else { opcode };
        encode_frame(first_byte, None, payload)
    }

    const REDACTED: &[u8] = b"[REDACTED:TOKEN]";

    fn redacting() -> impl FnMut() -> Box<dyn MessageRewriter> + Send + 'static {
        replacing(SECRET, REDACTED)
    }

    /// [`message_payload`] of a message to the agent: not masked.
    fn message_to_agent(frames: &[Frame], opcode: u8) -> Vec<u8> {
        for frame in frames {
            assert_eq!(frame.mask, None, "frames to the agent are not masked");
        }
        message_payload(frames, opcode)
    }

    #[tokio::test]
    async fn the_upstreams_text_and_binary_messages_reach_the_agent_without_the_secret() {
        let mut input = server_frame(true, OPCODE_TEXT, b"you sent: s3cret-token");
        input.extend(server_frame(true, OPCODE_PING, b"ping"));
        input.extend(server_frame(
            true,
            OPCODE_BINARY,
            b"\x00\x01s3cret-token\x02",
        ));
        let (result, received) = relay_from(Side::Upstream, input, redacting()).await;
        result.expect("the relay ends cleanly");
        let frames = decode_frames(&received);
        assert_eq!(frames.len(), 3);
        assert_eq!(
            message_to_agent(&frames[..1], OPCODE_TEXT),
            b"you sent: [REDACTED:TOKEN]"
        );
        assert_eq!(frames[1].raw, server_frame(true, OPCODE_PING, b"ping"));
        assert_eq!(
            message_to_agent(&frames[2..], OPCODE_BINARY),
            b"\x00\x01[REDACTED:TOKEN]\x02"
        );
    }

    #[tokio::test]
    async fn a_secret_split_across_the_upstreams_fragments_is_still_found() {
        let mut input = server_frame(false, OPCODE_TEXT, b"echo: s3cr");
        input.extend(server_frame(true, OPCODE_PONG, b""));
        input.extend(server_frame(false, OPCODE_CONTINUATION, b"et-to"));
        input.extend(server_frame(true, OPCODE_CONTINUATION, b"ken!"));
        let (result, received) = relay_from(Side::Upstream, input, redacting()).await;
        result.expect("the relay ends cleanly");
        let frames = decode_frames(&received);
        let data: Vec<Frame> = frames
            .into_iter()
            .filter(|frame| frame.opcode != OPCODE_PONG)
            .collect();
        assert_eq!(
            message_to_agent(&data, OPCODE_TEXT),
            b"echo: [REDACTED:TOKEN]!"
        );
    }

    #[tokio::test]
    async fn a_masked_frame_from_the_upstream_stops_the_relay() {
        let input = client_frame(true, OPCODE_TEXT, b"s3cret-token");
        let (result, received) = relay_from(Side::Upstream, input, redacting()).await;
        assert_invalid_data(result, "from the upstream is masked");
        assert!(received.is_empty());
    }

    #[tokio::test]
    async fn an_upstream_message_an_extension_encoded_is_not_passed_on_unread() {
        // RSV1: compressed with permessage-deflate, which the proxy never lets be agreed.
        let input = server_frame(true, 0x40 | OPCODE_TEXT, b"s3cret-token");
        let (result, received) = relay_from(Side::Upstream, input, redacting()).await;
        assert_invalid_data(result, "reserved bits");
        assert!(received.is_empty());
    }

    #[tokio::test]
    async fn join_rewrites_both_directions_when_both_have_a_rewriter() {
        let (mut agent, agent_side) = duplex(PIPE);
        let (upstream_side, mut upstream) = duplex(PIPE);
        let joined = tokio::spawn(join(
            agent_side,
            upstream_side,
            Some(Box::new(bot_token())),
            Some(Box::new(redacting())),
        ));
        let from_agent = client_frame(true, OPCODE_TEXT, b"token=__bot__");
        agent.write_all(&from_agent).await.expect("agent writes");
        let at_upstream = read_one_frame(&mut upstream).await;
        assert_eq!(at_upstream.payload, b"token=s3cret-token");

        // An echo server sends it straight back.
        let echoed = server_frame(true, OPCODE_TEXT, &at_upstream.payload);
        upstream.write_all(&echoed).await.expect("upstream writes");
        let at_agent = read_one_frame(&mut agent).await;
        assert_eq!(at_agent.payload, b"token=[REDACTED:TOKEN]");
        assert_eq!(at_agent.mask, None);

        agent.shutdown().await.expect("agent stops sending");
        upstream.shutdown().await.expect("upstream stops sending");
        timeout(PATIENCE, joined)
            .await
            .expect("join ends once both sides closed")
            .expect("the join task")
            .expect("join ends cleanly");
    }
}
