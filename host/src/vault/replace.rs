//! Literal multi-pattern find-and-replace over a whole buffer or a byte stream, in bounded
//! memory: placeholders swapped for credential values in a request body on its way upstream,
//! and credential values swapped for labels in a response body on its way back.
//!
//! This module owns the matching (leftmost-longest, non-overlapping, across any chunking)
//! and the body adapter that keeps a chunked body chunked. It does not decide which patterns
//! to look for or what they become: [`super::redact`] and the request path build the pairs.
//! Replacement bytes are credentials, so nothing here logs, and `Debug` shows only counts.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use aho_corasick::{AhoCorasick, MatchKind};
use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};
use zeroize::{Zeroize, Zeroizing};

use crate::forward::BoxError;

/// Texts up to this long are searched pattern by pattern; longer ones with an automaton.
const DIRECT_SEARCH_LIMIT: usize = 8 * 1024;

/// A set of literal patterns, each with its replacement; built once per request.
pub struct Replacements {
    /// Built on first use over a long text: building one costs more than searching a
    /// response's headers or a small body pattern by pattern.
    searcher: OnceLock<Option<AhoCorasick>>,
    /// One per pattern, for the search pattern by pattern; each built the first time a text
    /// is long enough to hold its pattern (most response headers hold none).
    finders: Vec<OnceLock<memchr::memmem::Finder<'static>>>,
    /// Indexed by the searcher's pattern id.
    replacements: Vec<Zeroizing<Vec<u8>>>,
    /// The patterns again, to tell which bytes at the end of a chunk could begin one.
    patterns: Vec<Zeroizing<Vec<u8>>>,
    /// Whether a byte begins some pattern.
    first_bytes: [bool; 256],
    longest: usize,
}

impl Replacements {
    /// `None` when there is no non-empty pattern. Empty patterns are skipped; when two pairs
    /// have the same pattern, the first wins.
    pub fn new(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Option<Replacements> {
        let mut patterns: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut replacements = Vec::new();
        for (pattern, replacement) in pairs {
            let pattern = Zeroizing::new(pattern);
            let replacement = Zeroizing::new(replacement);
            // Quadratic, but a request binds a handful of credentials with a few forms each.
            if pattern.is_empty() || patterns.iter().any(|seen| **seen == *pattern) {
                continue;
            }
            patterns.push(pattern);
            replacements.push(replacement);
        }
        let longest = patterns.iter().map(|pattern| pattern.len()).max()?;
        let mut first_bytes = [false; 256];
        for pattern in &patterns {
            first_bytes[usize::from(pattern[0])] = true;
        }
        Some(Replacements {
            searcher: OnceLock::new(),
            finders: patterns.iter().map(|_| OnceLock::new()).collect(),
            replacements,
            patterns,
            first_bytes,
            longest,
        })
    }

    /// Where the undecided tail of `buffer` starts: the first position whose rest is a
    /// proper prefix of some pattern (a match may start there and end in a later chunk).
    /// Everything before it is decided. Holding back only such a tail, rather than a fixed
    /// window, keeps a streamed response (server-sent events, say) from waiting for the next
    /// chunk when its last bytes cannot begin a pattern.
    fn undecided_from(&self, buffer: &[u8]) -> usize {
        let floor = buffer.len().saturating_sub(self.longest - 1);
        (floor..buffer.len())
            .find(|&start| {
                let rest = &buffer[start..];
                self.first_bytes[usize::from(rest[0])]
                    && self
                        .patterns
                        .iter()
                        .any(|pattern| pattern.len() > rest.len() && pattern.starts_with(rest))
            })
            .unwrap_or(buffer.len())
    }

    /// The length of the longest pattern, in bytes.
    pub fn longest_pattern(&self) -> usize {
        self.longest
    }

    /// How many distinct patterns are looked for.
    pub fn pattern_count(&self) -> usize {
        self.replacements.len()
    }

    /// Replaces every match in a complete buffer; `None` when nothing matched (the caller
    /// keeps the original).
    pub fn replace_all(&self, input: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.replace_all_counted(input).map(|(output, _)| output)
    }

    /// [`Replacements::replace_all`], with the number of matches replaced.
    pub fn replace_all_counted(&self, input: &[u8]) -> Option<(Zeroizing<Vec<u8>>, u64)> {
        let found = self.find_all(input, 0, input.len());
        let first = found.first()?.0;
        let mut output = Zeroizing::new(Vec::with_capacity(input.len()));
        output.extend_from_slice(&input[..first]);
        let (_, matches) = self.rewrite(input, first, input.len(), &mut output);
        Some((output, matches))
    }

    /// The leftmost-longest, non-overlapping matches in `haystack[from..]` that start before
    /// `before`, as (start, end, pattern index).
    fn find_all(&self, haystack: &[u8], from: usize, before: usize) -> Vec<(usize, usize, usize)> {
        let searcher = if haystack.len() - from > DIRECT_SEARCH_LIMIT {
            self.searcher
                .get_or_init(|| {
                    AhoCorasick::builder()
                        .match_kind(MatchKind::LeftmostLongest)
                        .build(self.patterns.iter().map(|pattern| pattern.as_slice()))
                        .ok()
                })
                .as_ref()
        } else {
            None
        };
        if let Some(searcher) = searcher {
            let input = aho_corasick::Input::new(haystack).range(from..);
            return searcher
                .find_iter(input)
                .take_while(|found| found.start() < before)
                .map(|found| (found.start(), found.end(), found.pattern().as_usize()))
                .collect();
        }
        // Every occurrence of every pattern (overlapping ones too), then the leftmost and,
        // among those, the longest, skipping what overlaps a match already taken: the same
        // matches as the automaton's leftmost-longest search.
        let mut candidates = Vec::new();
        for (index, pattern) in self.patterns.iter().enumerate() {
            if pattern.len() > haystack.len() - from {
                continue;
            }
            let finder = self.finders[index]
                .get_or_init(|| memchr::memmem::Finder::new(pattern.as_slice()).into_owned());
            let mut at = from;
            while let Some(offset) = finder.find(&haystack[at..]) {
                let start = at + offset;
                if start >= before {
                    break;
                }
                candidates.push((start, start + finder.needle().len(), index));
                at = start + 1;
            }
        }
        candidates.sort_unstable_by_key(|&(start, end, _)| (start, std::cmp::Reverse(end)));
        let mut position = from;
        candidates.retain(|&(start, end, _)| {
            let taken = start >= position;
            if taken {
                position = end;
            }
            taken
        });
        candidates
    }

    /// Appends `haystack[from..]` to `output` with every match that starts before `decided`
    /// replaced, stopping at the later of `decided` and the end of the last match. Returns
    /// where it stopped and how many matches it replaced.
    fn rewrite(
        &self,
        haystack: &[u8],
        from: usize,
        decided: usize,
        output: &mut Vec<u8>,
    ) -> (usize, u64) {
        let mut position = from;
        let mut matches = 0;
        for (start, end, pattern) in self.find_all(haystack, from, decided) {
            output.extend_from_slice(&haystack[position..start]);
            output.extend_from_slice(&self.replacements[pattern]);
            position = end;
            matches += 1;
        }
        let end = decided.max(position);
        output.extend_from_slice(&haystack[position..end]);
        (end, matches)
    }
}

impl fmt::Debug for Replacements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replacements")
            .field("patterns", &self.replacements.len())
            .field("longest", &self.longest)
            .finish()
    }
}

/// Find-and-replace over a stream: feed chunks in order, get the output in order.
pub struct StreamReplacer {
    replacements: Arc<Replacements>,
    /// Input not yet decided: a match may start in it and end in a later chunk.
    carry: Zeroizing<Vec<u8>>,
    matches: u64,
}

impl StreamReplacer {
    pub fn new(replacements: Arc<Replacements>) -> Self {
        StreamReplacer {
            replacements,
            carry: Zeroizing::new(Vec::new()),
            matches: 0,
        }
    }

    /// The output that is final after this chunk. At most `longest_pattern() - 1` bytes are
    /// held back (only a tail that could begin a pattern), so memory is bounded by the chunk
    /// size plus the longest pattern.
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        if chunk.is_empty() {
            return Bytes::new();
        }
        append_zeroizing(&mut self.carry, chunk);
        // A match starting before `decided` fits in the buffer whatever comes next, so it
        // (and the absence of one) is the same as in the whole stream.
        let decided = self.replacements.undecided_from(&self.carry);
        let mut output = Vec::with_capacity(self.carry.len());
        let (end, matches) = self
            .replacements
            .rewrite(&self.carry, 0, decided, &mut output);
        self.matches += matches;
        self.carry.drain(..end);
        if output.is_empty() {
            return Bytes::new();
        }
        Bytes::from(output)
    }

    /// End of stream: the held-back bytes, with any match in them replaced.
    pub fn finish(&mut self) -> Bytes {
        let mut output = Vec::with_capacity(self.carry.len());
        let (_, matches) = self
            .replacements
            .rewrite(&self.carry, 0, self.carry.len(), &mut output);
        self.matches += matches;
        self.carry.zeroize();
        if output.is_empty() {
            return Bytes::new();
        }
        Bytes::from(output)
    }

    /// Matches replaced so far.
    pub fn matches(&self) -> u64 {
        self.matches
    }

    /// Bytes held back for the next chunk.
    pub fn carried(&self) -> usize {
        self.carry.len()
    }

    /// Drops the held-back bytes without emitting them (the stream failed).
    fn discard(&mut self) {
        self.carry.zeroize();
    }
}

impl fmt::Debug for StreamReplacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReplacer")
            .field("replacements", &self.replacements)
            .field("carried", &self.carry.len())
            .field("matches", &self.matches)
            .finish()
    }
}

/// Appends `more` to `buffer`, zeroizing the old allocation if the buffer has to grow.
fn append_zeroizing(buffer: &mut Zeroizing<Vec<u8>>, more: &[u8]) {
    let needed = buffer.len() + more.len();
    if needed > buffer.capacity() {
        let mut grown = Vec::with_capacity(needed.max(buffer.capacity() * 2));
        grown.extend_from_slice(buffer);
        // The old allocation is zeroized when `Zeroizing` drops it.
        *buffer = Zeroizing::new(grown);
    }
    buffer.extend_from_slice(more);
}

/// A body passed through a [`StreamReplacer`]: each data frame in gives at most one data
/// frame out, so a chunked body stays chunked. At the end of the data the held-back bytes go
/// out as one data frame, then the trailers if any.
pub struct ReplacedBody<B> {
    inner: B,
    replacer: StreamReplacer,
    state: State,
    on_end: Option<Box<dyn FnOnce(u64) + Send>>,
}

enum State {
    Streaming,
    /// The inner body ended with these trailers; the flushed carry has gone out before them.
    Trailers(HeaderMap),
    Done,
}

impl<B> ReplacedBody<B> {
    pub fn new(inner: B, replacer: StreamReplacer) -> Self {
        ReplacedBody {
            inner,
            replacer,
            state: State::Streaming,
            on_end: None,
        }
    }

    /// `callback` is called exactly once with the number of matches, when the body ends,
    /// fails, or is dropped before its end.
    pub fn on_end(mut self, callback: impl FnOnce(u64) + Send + 'static) -> Self {
        self.on_end = Some(Box::new(callback));
        self
    }

    fn report_end(&mut self) {
        if let Some(callback) = self.on_end.take() {
            callback(self.replacer.matches());
        }
    }

    /// The inner body has no more data: the held-back bytes, then `trailers`, then the end.
    fn end_of_data(&mut self, trailers: Option<HeaderMap>) -> Option<Frame<Bytes>> {
        let tail = self.replacer.finish();
        self.report_end();
        self.state = State::Done;
        match (tail.is_empty(), trailers) {
            (false, trailers) => {
                if let Some(trailers) = trailers {
                    self.state = State::Trailers(trailers);
                }
                Some(Frame::data(tail))
            }
            (true, Some(trailers)) => Some(Frame::trailers(trailers)),
            (true, None) => None,
        }
    }
}

impl<B> Body for ReplacedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match std::mem::replace(&mut this.state, State::Done) {
            State::Done => return Poll::Ready(None),
            State::Trailers(trailers) => return Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            State::Streaming => this.state = State::Streaming,
        }
        loop {
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(this.end_of_data(None).map(Ok)),
                Poll::Ready(Some(Err(error))) => {
                    this.replacer.discard();
                    this.state = State::Done;
                    this.report_end();
                    return Poll::Ready(Some(Err(error.into())));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(data) => {
                    let output = this.replacer.feed(&data);
                    if !output.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(output))));
                    }
                }
                Err(frame) => {
                    // A frame that is neither data nor trailers cannot exist in http-body 1;
                    // treat it as the end of the data like trailers would be.
                    let trailers = frame.into_trailers().ok();
                    return Poll::Ready(this.end_of_data(trailers).map(Ok));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl<B> Drop for ReplacedBody<B> {
    fn drop(&mut self) {
        self.report_end();
    }
}

impl<B> fmt::Debug for ReplacedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Streaming => "streaming",
            State::Trailers(_) => "trailers",
            State::Done => "done",
        };
        f.debug_struct("ReplacedBody")
            .field("replacer", &self.replacer)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
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
        let replacements =
            replacements(&[("__telegram_bot_token__", "123:SECRET"), ("__k__", "K")]);
        let input =
            b"{\"token\":\"__telegram_bot_token__\",\"k\":\"__k____k__\",\"x\":\"__telegram\"}";
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
}
