//! Hashing a request body for plugins that sign it (`body-need` `sha256`).
//!
//! The plugin decides the request's headers before the body is sent, so a body it signs must
//! be read in full first: [`hash_body`] reads it once, hashing as it goes, and keeps the bytes
//! to forward after the plugin has decided, up to a size cap. Bodies of services whose plugin
//! does not ask (see `needs_body_sha256`) never come here and stream straight through.

use std::fmt::Display;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Body;
use sha2::{Digest as _, Sha256};

/// The largest body the host hashes for a plugin, by default.
pub const DEFAULT_MAX_HASHED_BODY: usize = 32 * 1024 * 1024;

/// A body read in full, and its SHA-256.
#[derive(Debug, Clone)]
pub struct HashedBody {
    pub bytes: Bytes,
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BodyHashError {
    #[error(
        "the request body is larger than {limit} bytes, the most this service's plugin can sign; \
         send a payload hash header if the API has one"
    )]
    TooLarge { limit: usize },
    #[error("reading the request body failed: {0}")]
    Read(String),
}

/// Read `body` to the end (at most `limit` bytes), hashing as it streams.
pub async fn hash_body<B>(body: B, limit: usize) -> Result<HashedBody, BodyHashError>
where
    B: Body<Data = Bytes>,
    B::Error: Display,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyHashError::TooLarge { limit });
    }
    let mut body = std::pin::pin!(body);
    let mut hasher = Sha256::new();
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| BodyHashError::Read(error.to_string()))?;
        // Trailers carry no body bytes; the data frames are what gets signed.
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(BodyHashError::TooLarge { limit });
            }
            hasher.update(&data);
            bytes.extend_from_slice(&data);
        }
    }
    Ok(HashedBody {
        bytes: bytes.freeze(),
        sha256: hasher.finalize().into(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http_body_util::Full;
    use hyper::body::Frame;

    use super::*;

    /// A body that arrives in the given chunks and does not say its length up front.
    struct Chunked(VecDeque<&'static [u8]>);

    impl Body for Chunked {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|chunk| Ok(Frame::data(Bytes::from_static(chunk)))),
            )
        }
    }

    fn chunked(chunks: &[&'static [u8]]) -> Chunked {
        Chunked(chunks.iter().copied().collect())
    }

    #[tokio::test]
    async fn hashes_every_chunk_and_keeps_the_bytes() {
        let hashed = hash_body(chunked(&[b"Param1", b"=value1"]), 1024)
            .await
            .unwrap();
        assert_eq!(hashed.bytes, Bytes::from_static(b"Param1=value1"));
        assert_eq!(
            hex::encode(hashed.sha256),
            "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
    }

    #[tokio::test]
    async fn refuses_a_body_over_the_cap() {
        let streamed = hash_body(chunked(&[b"1234", b"5678"]), 6)
            .await
            .unwrap_err();
        assert_eq!(streamed, BodyHashError::TooLarge { limit: 6 });
        let declared = hash_body(Full::new(Bytes::from_static(b"1234567")), 6)
            .await
            .unwrap_err();
        assert_eq!(declared, BodyHashError::TooLarge { limit: 6 });
    }

    #[tokio::test]
    async fn an_empty_body_hashes_to_the_empty_digest() {
        let hashed = hash_body(Full::new(Bytes::new()), 10).await.unwrap();
        assert_eq!(
            hex::encode(hashed.sha256),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
