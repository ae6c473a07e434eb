//! Streaming find-and-replace in bounded memory (`vault::replace`), which swaps placeholders
//! for values in request bodies and WebSocket messages, and values for labels in responses.
//!
//! Input: `pattern=replacement` lines (both percent-decoded, so any byte can be written),
//! a blank line, then the text. After a NUL, choices: how many times the text repeats (past
//! 8 KiB the search switches from one pattern at a time to an automaton) and the chunks it
//! arrives in.
//!
//! For any patterns and any input cut into any chunks:
//! - the whole-buffer replace and the streamed one equal the reference (leftmost-longest,
//!   non-overlapping, the first of equal patterns wins), with the same number of matches;
//! - the streamer never holds back as many bytes as the longest pattern.
#![no_main]

use std::sync::Arc;

use agent_vault::vault::replace::{Replacements, StreamReplacer};
use agent_vault_fuzz::input::{self, Result, Unstructured};
use agent_vault_fuzz::reference;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (text, mut choices) = input::text_and_choices(data);
    let (spec, text) = input::split_blank_line(text);
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = input::utf8_prefix(spec)
        .lines()
        .map(|line| {
            let (pattern, replacement) = line.split_once('=').unwrap_or((line, ""));
            (input::decoded(pattern), input::decoded(replacement))
        })
        .take(16)
        .collect();
    let _ = run(&pairs, text, &mut choices);
});

fn run(pairs: &[(Vec<u8>, Vec<u8>)], unit: &[u8], u: &mut Unstructured) -> Result<()> {
    let Some(replacements) = Replacements::new(pairs.to_vec()) else {
        assert!(pairs.iter().all(|(pattern, _)| pattern.is_empty()));
        return Ok(());
    };
    let replacements = Arc::new(replacements);
    // Sometimes repeated past the 8 KiB where the automaton takes over, to at most 16 KiB
    // (the reference is slow, and instrumented slower still).
    let repeat = if u.ratio(1, 8)? {
        u.int_in_range(1..=(16 * 1024 / unit.len().max(1)).max(1))?
    } else {
        1
    };
    let text = unit.repeat(repeat);

    let (expected, expected_matches) = reference::replace_all(pairs, &text);
    match replacements.replace_all_counted(&text) {
        Some((output, matches)) => {
            assert_eq!(*output, expected, "whole buffer");
            assert_eq!(matches, expected_matches);
            assert!(matches > 0);
        }
        None => assert_eq!(expected_matches, 0, "whole buffer found nothing"),
    }

    let mut replacer = StreamReplacer::new(replacements.clone());
    let mut streamed = Vec::new();
    for chunk in input::chunks(u, &text)? {
        streamed.extend_from_slice(&replacer.feed(chunk));
        assert!(
            replacer.carried() < replacements.longest_pattern(),
            "held back {} bytes with patterns up to {}",
            replacer.carried(),
            replacements.longest_pattern()
        );
    }
    streamed.extend_from_slice(&replacer.finish());
    assert_eq!(streamed, expected, "streamed");
    assert_eq!(replacer.matches(), expected_matches);
    assert_eq!(replacer.carried(), 0);
    Ok(())
}
