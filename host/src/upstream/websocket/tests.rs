//! Tests of the WebSocket frame relay (websocket.rs).

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
