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

/// The error of a body this wraps, boxed as hyper does (the upstream client's `BoxError`).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
mod tests;
