//! The WebSocket frame relay (`upstream::websocket::relay_frames`) with message rewriting:
//! the agent's text messages get their placeholders replaced, the upstream's text and
//! binary messages get credential values redacted.
//!
//! Input: a first line naming the side and what is rewritten, `agent __key__=value ...`
//! (placeholders and their values) or `upstream value` (a credential value to redact), both
//! percent-decoded; then, to the end, the raw bytes that side sends (frames, or not). The
//! seeds mask with the key `00 00 00 00`, which leaves payloads readable.
//!
//! For any byte stream, compared with a reference parser of RFC 6455 framing that applies
//! the relay's rules:
//! - the relay fails exactly when the stream breaks a rule (reserved opcode, fragmented or
//!   long control frame, wrong masking, a 64-bit length with its top bit set, a continuation
//!   without a message, a new message before the last one finished, reserved bits on a
//!   message it must read, a frame cut short);
//! - otherwise control frames and messages it does not rewrite come out byte for byte, in
//!   order; each rewritten message comes out as frames of its opcode without reserved bits,
//!   masked toward the upstream (only), whose payload is the whole message rewritten (for a
//!   message the stream left unfinished: a prefix of it).
#![no_main]

use std::sync::Arc;

use agent_vault::upstream::websocket::{MessageRewriter, Side, relay_frames};
use agent_vault::vault::redact::{MIN_REDACTED_LEN, Redactor};
use agent_vault::vault::replace::{Replacements, StreamReplacer};
use agent_vault_fuzz::{block_on, input, reference};
use bytes::Bytes;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;

/// The rewriter the proxy gives each message (`proxy/body_fill.rs` for the agent's,
/// `proxy/redact.rs` for the upstream's): a stream replacer.
struct Rewriter(StreamReplacer);

impl MessageRewriter for Rewriter {
    fn feed(&mut self, payload: &[u8]) -> Bytes {
        self.0.feed(payload)
    }

    fn finish(&mut self) -> Bytes {
        self.0.finish()
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (first_line, stream) = match data.iter().position(|&byte| byte == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => return,
    };
    let mut fields = input::utf8_prefix(first_line).split(' ');
    match fields.next() {
        Some("agent") => {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = fields
                .take(4)
                .map(|pair| {
                    let (pattern, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (input::decoded(pattern), input::decoded(value))
                })
                .collect();
            let Some(replacements) = Replacements::new(pairs.clone()) else {
                return;
            };
            let replacements = Arc::new(replacements);
            check(
                Side::Agent,
                stream,
                move || Box::new(Rewriter(StreamReplacer::new(replacements.clone()))),
                |payload| reference::replace_all(&pairs, payload).0,
            );
        }
        Some("upstream") => {
            let secret = input::decoded(fields.next().unwrap_or_default());
            if secret.len() < MIN_REDACTED_LEN {
                return;
            }
            let redactor = Redactor::new([(secret.as_slice(), "[REDACTED:KEY]")])
                .expect("a long enough value");
            let streaming = redactor.clone();
            check(
                Side::Upstream,
                stream,
                move || Box::new(Rewriter(streaming.stream())),
                |payload| {
                    redactor
                        .body(payload)
                        .map_or(payload.to_vec(), |(output, _)| output.to_vec())
                },
            );
        }
        _ => {}
    }
});

fn check(
    side: Side,
    stream: &[u8],
    new_rewriter: impl FnMut() -> Box<dyn MessageRewriter> + Send,
    rewrite: impl Fn(&[u8]) -> Vec<u8>,
) {
    let mut output = Vec::new();
    let relayed = block_on(relay_frames(side, stream, &mut output, new_rewriter));
    let expected = read(stream, side);
    match (&relayed, &expected) {
        (Ok(()), Ok(expected)) => {
            let actual = read(&output, side).expect("the relay's output is well framed");
            assert_eq!(actual.verbatim, expected.verbatim, "frames passed through");
            check_messages(&actual.messages, &expected.messages, &rewrite);
            if side == Side::Agent {
                assert!(
                    actual.all_masked,
                    "a frame toward the upstream is not masked"
                );
            }
        }
        (Err(error), Err(())) => assert_eq!(error.kind(), std::io::ErrorKind::InvalidData),
        (relayed, expected) => {
            panic!(
                "the relay said {relayed:?}, the reference {:?}",
                expected.is_ok()
            )
        }
    }
}

fn check_messages(actual: &[Message], expected: &[Message], rewrite: &impl Fn(&[u8]) -> Vec<u8>) {
    let unfinished = expected.last().filter(|message| !message.finished);
    let finished = &expected[..expected.len() - usize::from(unfinished.is_some())];
    assert!(
        actual.len() == finished.len() || actual.len() == expected.len(),
        "{} messages out, {} in",
        actual.len(),
        expected.len()
    );
    for (actual, expected) in actual.iter().zip(finished) {
        assert_eq!(actual.opcode, expected.opcode);
        assert!(actual.finished);
        assert_eq!(
            actual.payload,
            rewrite(&expected.payload),
            "a rewritten message"
        );
    }
    if let (Some(last), Some(unfinished)) = (actual.get(finished.len()), unfinished) {
        assert_eq!(last.opcode, unfinished.opcode);
        assert!(!last.finished, "an unfinished message came out finished");
        let whole = rewrite(&unfinished.payload);
        assert!(
            whole.starts_with(&last.payload),
            "an unfinished message's output is not a prefix"
        );
    }
}

/// What a reader makes of a stream of frames from `side`.
#[derive(Debug, Default)]
struct Read {
    /// Control frames and frames of messages that are not rewritten, exactly as sent.
    verbatim: Vec<Vec<u8>>,
    /// The messages that are rewritten, payloads unmasked and joined.
    messages: Vec<Message>,
    all_masked: bool,
}

#[derive(Debug)]
struct Message {
    opcode: u8,
    payload: Vec<u8>,
    finished: bool,
}

enum Current {
    Verbatim,
    Rewritten,
}

/// The reference: RFC 6455 framing with the relay's rules; `Err` where the relay must fail.
fn read(stream: &[u8], side: Side) -> std::result::Result<Read, ()> {
    let mut read = Read {
        all_masked: true,
        ..Read::default()
    };
    let mut current: Option<Current> = None;
    let mut rest = stream;
    while !rest.is_empty() {
        let take = |rest: &mut &[u8], n: usize| -> std::result::Result<Vec<u8>, ()> {
            if rest.len() < n {
                return Err(());
            }
            let (taken, tail) = rest.split_at(n);
            *rest = tail;
            Ok(taken.to_vec())
        };
        let start = rest;
        let head = take(&mut rest, 2)?;
        let fin = head[0] & 0x80 != 0;
        let rsv = (head[0] >> 4) & 0x7;
        let opcode = head[0] & 0x0F;
        if matches!(opcode, 0x3..=0x7 | 0xB..=0xF) {
            return Err(());
        }
        let control = opcode >= 0x8;
        let short = head[1] & 0x7F;
        if control && (!fin || short > 125) {
            return Err(());
        }
        let masked = head[1] & 0x80 != 0;
        if masked != (side == Side::Agent) {
            return Err(());
        }
        read.all_masked &= masked;
        let len = match short {
            126 => u64::from(u16::from_be_bytes(
                take(&mut rest, 2)?.try_into().expect("2"),
            )),
            127 => {
                let len = u64::from_be_bytes(take(&mut rest, 8)?.try_into().expect("8"));
                if len >> 63 != 0 {
                    return Err(());
                }
                len
            }
            len => u64::from(len),
        };
        let key = if masked {
            take(&mut rest, 4)?
        } else {
            vec![0; 4]
        };
        let len = usize::try_from(len).map_err(|_| ())?;
        let mut payload = take(&mut rest, len)?;
        for (index, byte) in payload.iter_mut().enumerate() {
            *byte ^= key[index % 4];
        }
        let raw = start[..start.len() - rest.len()].to_vec();

        if control {
            read.verbatim.push(raw);
            continue;
        }
        let frame_of = match (opcode, current.take()) {
            (CONTINUATION, Some(current)) => current,
            (CONTINUATION, None) | (_, Some(_)) => return Err(()),
            (TEXT | BINARY, None) if rsv != 0 && side == Side::Upstream => return Err(()),
            (TEXT, None) if rsv == 0 => {
                read.messages.push(Message {
                    opcode,
                    payload: Vec::new(),
                    finished: false,
                });
                Current::Rewritten
            }
            (BINARY, None) if side == Side::Upstream => {
                read.messages.push(Message {
                    opcode,
                    payload: Vec::new(),
                    finished: false,
                });
                Current::Rewritten
            }
            _ => Current::Verbatim,
        };
        match frame_of {
            Current::Verbatim => read.verbatim.push(raw),
            Current::Rewritten => {
                if rsv != 0 {
                    return Err(());
                }
                let message = read.messages.last_mut().expect("a message");
                message.payload.extend_from_slice(&payload);
                message.finished = fin;
            }
        }
        if !fin {
            current = Some(frame_of);
        }
    }
    Ok(read)
}
