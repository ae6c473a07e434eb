//! Turning fuzz bytes into a target's input. Inputs are text a person can read and write
//! (the seed corpus is hand-made, and a crash file explains itself): each target documents
//! its format at the top. Where a target also needs choices no text should carry (how a body
//! is cut into chunks, how a path is spelled again), they come from the bytes after the
//! first NUL, read with `arbitrary`'s `Unstructured`.

pub use libfuzzer_sys::arbitrary::{Result, Unstructured};

/// The text before the first NUL, and the choices after it (none if there is no NUL).
pub fn text_and_choices(data: &[u8]) -> (&[u8], Unstructured<'_>) {
    match data.iter().position(|&byte| byte == 0) {
        Some(at) => (&data[..at], Unstructured::new(&data[at + 1..])),
        None => (data, Unstructured::new(&[])),
    }
}

/// The longest prefix of `bytes` that is UTF-8.
pub fn utf8_prefix(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => std::str::from_utf8(&bytes[..error.valid_up_to()]).expect("valid prefix"),
    }
}

/// A field written percent-encoded where it needs to be (`%0D%0A` for CR LF, `%25` for `%`);
/// a `%` without two hex digits stands for itself.
pub fn decoded(field: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(field).collect()
}

/// `text` split at its first blank line: what comes before, and what comes after.
pub fn split_blank_line(text: &[u8]) -> (&[u8], &[u8]) {
    match text.windows(2).position(|pair| pair == b"\n\n") {
        Some(at) => (&text[..at], &text[at + 2..]),
        None => (text, &[]),
    }
}

/// Cuts `input` into chunks whose sizes come from `choices` (at least one byte each; the rest
/// in one chunk once the choices run out), the way a body or a message may arrive.
pub fn chunks<'a>(choices: &mut Unstructured, input: &'a [u8]) -> Result<Vec<&'a [u8]>> {
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let size = if choices.is_empty() {
            rest.len()
        } else {
            choices.int_in_range(1..=rest.len().min(64))?
        };
        let (chunk, tail) = rest.split_at(size);
        chunks.push(chunk);
        rest = tail;
    }
    Ok(chunks)
}
