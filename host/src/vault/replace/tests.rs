//! Tests of the literal multi-pattern find-and-replace over buffers and streams (replace.rs).

use std::sync::Mutex;

use http_body_util::BodyExt;

use super::*;

fn pairs(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    list.iter()
        .map(|(pattern, replacement)| {
            (pattern.as_bytes().to_vec(), replacement.as_bytes().to_vec())
        })
        .collect()
}

fn replacements(list: &[(&str, &str)]) -> Arc<Replacements> {
    Arc::new(Replacements::new(pairs(list)).expect("at least one pattern"))
}

/// Leftmost-longest by definition: at each position, the longest pattern that matches there.
fn naive(list: &[(Vec<u8>, Vec<u8>)], input: &[u8]) -> (Vec<u8>, u64) {
    let mut output = Vec::new();
    let mut matches = 0;
    let mut position = 0;
    while position < input.len() {
        let mut best: Option<&(Vec<u8>, Vec<u8>)> = None;
        for pair in list {
            let fits = !pair.0.is_empty() && input[position..].starts_with(&pair.0);
            if fits && best.is_none_or(|best| pair.0.len() > best.0.len()) {
                best = Some(pair);
            }
        }
        match best {
            Some((pattern, replacement)) => {
                output.extend_from_slice(replacement);
                position += pattern.len();
                matches += 1;
            }
            None => {
                output.push(input[position]);
                position += 1;
            }
        }
    }
    (output, matches)
}

fn whole(replacements: &Replacements, input: &[u8]) -> Vec<u8> {
    match replacements.replace_all(input) {
        Some(output) => output.to_vec(),
        None => input.to_vec(),
    }
}

/// Streams `input` cut at `sizes` (cycled) and checks the carry bound after every chunk.
fn streamed(replacements: &Arc<Replacements>, input: &[u8], sizes: &[usize]) -> (Vec<u8>, u64) {
    let mut replacer = StreamReplacer::new(replacements.clone());
    let mut output = Vec::new();
    let mut rest = input;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).clamp(1, rest.len()));
        output.extend_from_slice(&replacer.feed(chunk));
        assert!(replacer.carried() < replacements.longest_pattern());
        rest = tail;
    }
    output.extend_from_slice(&replacer.finish());
    assert_eq!(replacer.carried(), 0);
    (output, replacer.matches())
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[test]
fn streaming_equals_whole_buffer_and_naive_reference_for_random_chunkings() {
    let pattern_sets: [&[&str]; 4] = [
        &["aab", "ab", "abab", "__x__"],
        &["a", "aa", "aaa", "ba"],
        &["abc", "bcd", "cd", "abcde", "e"],
        &["_x_", "__x__", "x__", "__"],
    ];
    let alphabets: [&[u8]; 4] = [b"ab_x", b"ab", b"abcde", b"_x"];
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let set = pattern_sets[round % pattern_sets.len()];
        let alphabet = alphabets[random.below(alphabets.len())];
        let list: Vec<(Vec<u8>, Vec<u8>)> = set
            .iter()
            .map(|pattern| {
                let replacement: Vec<u8> = (0..random.below(4))
                    .map(|_| b"XYZ"[random.below(3)])
                    .collect();
                (pattern.as_bytes().to_vec(), replacement)
            })
            .collect();
        let replacements = Arc::new(Replacements::new(list.clone()).expect("patterns"));
        let input: Vec<u8> = (0..random.below(120))
            .map(|_| alphabet[random.below(alphabet.len())])
            .collect();
        let sizes: Vec<usize> = (0..1 + random.below(6))
            .map(|_| 1 + random.below(9))
            .collect();

        let (expected, expected_matches) = naive(&list, &input);
        assert_eq!(whole(&replacements, &input), expected, "round {round}");
        let (output, matches) = streamed(&replacements, &input, &sizes);
        assert_eq!(output, expected, "round {round}, sizes {sizes:?}");
        assert_eq!(matches, expected_matches, "round {round}");
    }
}

#[test]
fn the_automaton_and_the_direct_search_find_the_same_matches() {
    // Texts over DIRECT_SEARCH_LIMIT go through the automaton, small chunks of them
    // through the direct search; both must agree with the naive reference.
    let pattern_sets: [&[&str]; 2] = [&["aab", "ab", "abab", "b"], &["a", "aa", "ba", "bab"]];
    let mut random = XorShift(0x2545_f491_4f6c_dd1d);
    for round in 0..40 {
        let set = pattern_sets[round % pattern_sets.len()];
        let list: Vec<(Vec<u8>, Vec<u8>)> = set
            .iter()
            .enumerate()
            .map(|(index, pattern)| (pattern.as_bytes().to_vec(), vec![b'0' + index as u8]))
            .collect();
        let replacements = Arc::new(Replacements::new(list.clone()).expect("patterns"));
        let input: Vec<u8> = (0..DIRECT_SEARCH_LIMIT + 1 + random.below(20_000))
            .map(|_| b"abx"[random.below(3)])
            .collect();
        let (expected, expected_matches) = naive(&list, &input);
        assert_eq!(whole(&replacements, &input), expected, "round {round}");
        let sizes = [1 + random.below(3000)];
        let (output, matches) = streamed(&replacements, &input, &sizes);
        assert_eq!(output, expected, "round {round}, sizes {sizes:?}");
        assert_eq!(matches, expected_matches, "round {round}");
    }
}

#[test]
fn one_byte_chunks_give_the_whole_buffer_result() {
    let replacements = replacements(&[("__telegram_bot_token__", "123:SECRET"), ("__k__", "K")]);
    let input = b"{\"token\":\"__telegram_bot_token__\",\"k\":\"__k____k__\",\"x\":\"__telegram\"}";
    let (output, matches) = streamed(&replacements, input, &[1]);
    assert_eq!(output, whole(&replacements, input));
    assert_eq!(
        output,
        b"{\"token\":\"123:SECRET\",\"k\":\"KK\",\"x\":\"__telegram\"}".to_vec()
    );
    assert_eq!(matches, 3);
}

#[test]
fn patterns_at_the_very_start_and_end_are_replaced() {
    let replacements = replacements(&[("__a__", "1"), ("__bb__", "22")]);
    for sizes in [&[1][..], &[2], &[3, 1], &[100]] {
        let (output, matches) = streamed(&replacements, b"__a__ middle __bb__", sizes);
        assert_eq!(output, b"1 middle 22".to_vec());
        assert_eq!(matches, 2);
    }
    assert_eq!(streamed(&replacements, b"__a__", &[1]).0, b"1".to_vec());
}

#[test]
fn input_without_a_match_comes_out_unchanged() {
    let replacements = replacements(&[("__token__", "secret")]);
    let input: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    assert!(replacements.replace_all(&input).is_none());
    let (output, matches) = streamed(&replacements, &input, &[7, 1, 300]);
    assert_eq!(output, input);
    assert_eq!(matches, 0);
}

#[test]
fn a_match_spanning_many_chunks_is_replaced() {
    let replacements = replacements(&[("0123456789abcdef", "!")]);
    let input = b"xx0123456789abcdefyy0123456789abcdeZ";
    for size in 1..input.len() {
        assert_eq!(
            streamed(&replacements, input, &[size]).0,
            b"xx!yy0123456789abcdeZ".to_vec()
        );
    }
}

#[test]
fn the_carry_never_exceeds_the_longest_pattern_minus_one() {
    let replacements = replacements(&[("abcdefgh", "1"), ("abc", "2")]);
    let mut replacer = StreamReplacer::new(replacements);
    let mut random = XorShift(7);
    for _ in 0..2000 {
        let chunk: Vec<u8> = (0..1 + random.below(20))
            .map(|_| b"abcdefgh"[random.below(8)])
            .collect();
        replacer.feed(&chunk);
        assert!(replacer.carried() <= 7);
    }
}

#[test]
fn a_chunk_whose_end_cannot_begin_a_pattern_goes_out_whole() {
    let replacements = replacements(&[("tok_live_0123456789", "[REDACTED:KEY]")]);
    let mut replacer = StreamReplacer::new(replacements);
    let event = b"data: {\"token\":\"hello\"}\n\n";
    assert_eq!(replacer.feed(event).as_ref(), event);
    assert_eq!(replacer.carried(), 0);
    // A tail that could begin the pattern waits for the next chunk, and only that tail.
    assert_eq!(replacer.feed(b"data: tok_li").as_ref(), b"data: ");
    assert_eq!(replacer.carried(), 6);
    assert_eq!(
        replacer.feed(b"ve_0123456789\n\n").as_ref(),
        b"[REDACTED:KEY]\n\n"
    );
}

#[test]
fn empty_and_duplicate_patterns_are_skipped_and_the_first_pair_wins() {
    assert!(Replacements::new(pairs(&[("", "x")])).is_none());
    assert!(Replacements::new(Vec::new()).is_none());
    let replacements = replacements(&[("", "x"), ("ab", "first"), ("ab", "second")]);
    assert_eq!(replacements.pattern_count(), 1);
    assert_eq!(whole(&replacements, b"ab"), b"first".to_vec());
}

#[test]
fn debug_output_shows_counts_and_no_bytes() {
    let replacements = replacements(&[("__token__", "hunter2-secret")]);
    let mut replacer = StreamReplacer::new(replacements.clone());
    replacer.feed(b"xx__tok");
    let shown = format!("{replacements:?} {replacer:?}");
    assert!(!shown.contains("hunter2") && !shown.contains("token") && !shown.contains("tok"));
    assert!(shown.contains("carried: 5"));
}

#[test]
fn sixty_four_mib_in_64_kib_chunks_are_rewritten_with_a_match_every_mib() {
    const MIB: usize = 1024 * 1024;
    let replacements = replacements(&[("__token__", "the-credential")]);
    let mut replacer = StreamReplacer::new(replacements);
    let mut chunk = vec![b'.'; 64 * 1024];
    let mut out_len = 0;
    for index in 0..1024 {
        // Every 16th chunk has the placeholder across its end and the next one's start.
        chunk.fill(b'.');
        if index % 16 == 15 {
            let len = chunk.len();
            chunk[len - 4..].copy_from_slice(b"__to");
        } else if index % 16 == 0 && index > 0 {
            chunk[..5].copy_from_slice(b"ken__");
        }
        out_len += replacer.feed(&chunk).len();
        assert!(replacer.carried() < 9);
    }
    out_len += replacer.finish().len();
    assert_eq!(replacer.matches(), 63);
    assert_eq!(
        out_len,
        64 * MIB + 63 * ("the-credential".len() - "__token__".len())
    );
}

type Frames = Vec<Result<Frame<Bytes>, std::io::Error>>;

/// A body that yields the given frames in order, then ends.
struct Scripted(std::collections::VecDeque<Result<Frame<Bytes>, std::io::Error>>);

impl Body for Scripted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.get_mut().0.pop_front())
    }
}

fn body_of(frames: Frames) -> Scripted {
    Scripted(frames.into())
}

async fn collect_frames<B>(mut body: B) -> Vec<Result<Frame<Bytes>, String>>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        frames.push(frame.map_err(|error| error.to_string()));
    }
    assert!(body.is_end_stream());
    frames
}

fn data(frame: &Result<Frame<Bytes>, String>) -> Option<&[u8]> {
    frame.as_ref().ok()?.data_ref().map(|data| data.as_ref())
}

fn counter() -> (Arc<Mutex<Vec<u64>>>, impl FnOnce(u64) + Send + 'static) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorder = calls.clone();
    (calls, move |matches| {
        recorder.lock().expect("not poisoned").push(matches)
    })
}

#[tokio::test]
async fn a_replaced_body_keeps_one_frame_per_productive_chunk_and_sends_trailers_last() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
    let frames: Frames = vec![
        Ok(Frame::data(Bytes::from_static(b"one __tok"))),
        Ok(Frame::data(Bytes::from_static(b"en__ two"))),
        Ok(Frame::data(Bytes::from_static(b"_"))),
        Ok(Frame::data(Bytes::from_static(b"_"))),
        Ok(Frame::data(Bytes::from_static(b"three __"))),
        Ok(Frame::trailers(trailers.clone())),
    ];
    let (calls, on_end) = counter();
    let replacer = StreamReplacer::new(replacements(&[("__token__", "SECRET")]));
    let body = ReplacedBody::new(body_of(frames), replacer).on_end(on_end);
    let out = collect_frames(body).await;

    let chunks: Vec<&[u8]> = out.iter().filter_map(data).collect();
    assert_eq!(
        chunks,
        [&b"one "[..], b"SECRET two", b"__three ", b"__"],
        "one output frame per input frame that produced output, then the carry"
    );
    let last = out.last().expect("frames").as_ref().expect("no error");
    assert_eq!(last.trailers_ref(), Some(&trailers));
    assert_eq!(*calls.lock().expect("not poisoned"), [1]);
}

#[tokio::test]
async fn a_replaced_body_flushes_the_carry_when_the_inner_body_ends() {
    let frames: Frames = vec![
        Ok(Frame::data(Bytes::from_static(b"ab"))),
        Ok(Frame::data(Bytes::from_static(b"__k__"))),
    ];
    let (calls, on_end) = counter();
    let replacer = StreamReplacer::new(replacements(&[("__k__", "K")]));
    let body = ReplacedBody::new(body_of(frames), replacer).on_end(on_end);
    assert!(!body.is_end_stream());
    assert_eq!(body.size_hint().exact(), None);
    let out = collect_frames(body).await;
    let chunks: Vec<&[u8]> = out.iter().filter_map(data).collect();
    assert_eq!(chunks.concat(), b"abK");
    assert!(chunks.iter().all(|chunk| !chunk.is_empty()));
    assert_eq!(*calls.lock().expect("not poisoned"), [1]);
}

#[tokio::test]
async fn an_inner_error_passes_through_and_reports_the_matches_so_far() {
    let frames: Frames = vec![
        Ok(Frame::data(Bytes::from_static(b"__k__ and more _"))),
        Err(std::io::Error::other("connection reset")),
        Ok(Frame::data(Bytes::from_static(b"never read"))),
    ];
    let (calls, on_end) = counter();
    let replacer = StreamReplacer::new(replacements(&[("__k__", "K")]));
    let body = ReplacedBody::new(body_of(frames), replacer).on_end(on_end);
    let out = collect_frames(body).await;
    assert_eq!(out.len(), 2);
    // The held-back "_" is discarded, never presented as the end of the body.
    assert_eq!(data(&out[0]), Some(&b"K and more "[..]));
    assert_eq!(
        out[1].as_ref().err().map(String::as_str),
        Some("connection reset")
    );
    assert_eq!(*calls.lock().expect("not poisoned"), [1]);
}

#[tokio::test]
async fn a_replaced_body_dropped_early_reports_once() {
    let frames: Frames = vec![
        Ok(Frame::data(Bytes::from_static(b"__k__ __k__ "))),
        Ok(Frame::data(Bytes::from_static(b"__k__"))),
    ];
    let (calls, on_end) = counter();
    let replacer = StreamReplacer::new(replacements(&[("__k__", "K")]));
    let mut body = ReplacedBody::new(body_of(frames), replacer).on_end(on_end);
    assert!(body.frame().await.is_some());
    drop(body);
    assert_eq!(*calls.lock().expect("not poisoned"), [2]);
}

#[test]
fn a_replaced_body_is_send_when_its_inner_body_is() {
    fn assert_send<T: Send>() {}
    assert_send::<ReplacedBody<http_body_util::Full<Bytes>>>();
    assert_send::<Replacements>();
    fn assert_sync<T: Sync>() {}
    assert_sync::<Replacements>();
}
