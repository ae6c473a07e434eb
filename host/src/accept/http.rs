//! What a client may hold once its connection is admitted: the HTTP settings of every
//! server-side connection (the control plane, the transparent proxy, inside intercepted
//! tunnels), and the IO wrappers that keep a connection's [`Slot`] and bound the wait for its
//! first bytes.
//!
//! - HTTP/1: hyper's header-read timeout (it needs a timer, without which the timeout is
//!   silently off). It runs from the moment hyper waits for a request head to the end of
//!   that head, so it also closes a keep-alive connection left idle that long. A head is at
//!   most [`MAX_HEAD_BYTES`] (431 beyond), which also bounds what a slow head holds in memory.
//! - HTTP/2: pings every [`H2_PING_INTERVAL`] that must be answered within the header
//!   timeout, at most [`H2_MAX_STREAMS`] streams at once, header lists of at most
//!   [`MAX_HEAD_BYTES`].
//! - hyper-util's automatic protocol choice (HTTP/1 or HTTP/2 prior knowledge) reads up to
//!   24 bytes, the length of HTTP/2's preface, before either of the above starts, and has no
//!   timeout of its own: [`FirstBytes`] gives it one.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, ReadBuf};

use super::ConnectionLimits;
use super::gate::Slot;

/// The largest request head: an HTTP/1 request line and headers, or an HTTP/2 header list.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How often an HTTP/2 connection is pinged; an unanswered ping closes it.
pub const H2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Requests in flight at once on one HTTP/2 connection.
pub const H2_MAX_STREAMS: u32 = 100;

/// The bytes hyper-util reads to choose between HTTP/1 and HTTP/2: the length of HTTP/2's
/// connection preface.
const PROTOCOL_SNIFF_BYTES: usize = 24;

impl ConnectionLimits {
    /// A server for HTTP/1 and HTTP/2 connections under these limits (the control plane, and
    /// inside intercepted tunnels). Serve a [`FirstBytes`] with it.
    pub fn http(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(self.header_timeout)
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_header_list_size(MAX_HEAD_BYTES as u32);
        builder
    }

    /// A server for HTTP/1 connections under these limits (the transparent proxy).
    pub fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        builder
    }
}

/// An admitted connection's socket, holding its [`Slot`] until it is dropped: wherever the
/// socket goes (an upgraded WebSocket, a tunnel), its place under the caps goes with it.
#[derive(Debug)]
pub struct Counted<I> {
    io: I,
    _slot: Slot,
}

impl<I> Counted<I> {
    pub fn new(io: I, slot: Slot) -> Counted<I> {
        Counted { io, _slot: slot }
    }
}

/// A connection whose first bytes (as many as hyper-util reads to choose the protocol) must
/// arrive within a deadline; a read still waiting then fails with `TimedOut`. From then on
/// it reads without a deadline of its own (hyper's timeouts take over).
#[derive(Debug)]
pub struct FirstBytes<I> {
    io: I,
    /// `None` once the first bytes have arrived (or the client closed).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    awaited: usize,
}

impl<I> FirstBytes<I> {
    /// `io`, whose first bytes must arrive within `timeout` from now. Call on the runtime
    /// that will serve it.
    pub fn new(io: I, timeout: Duration) -> FirstBytes<I> {
        FirstBytes {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            awaited: PROTOCOL_SNIFF_BYTES,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstBytes<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read == 0 || read >= this.awaited {
                    this.deadline = None;
                } else {
                    this.awaited -= read;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent no request within the header timeout",
                    )));
                }
                Poll::Pending
            }
            error => error,
        }
    }
}

delegate_writes!(FirstBytes);
delegate_writes!(Counted);

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_client_silent_past_the_deadline_times_out() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = FirstBytes::new(server, SHORT);
        let mut buf = [0u8; 24];
        let error = server.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    #[tokio::test]
    async fn a_client_that_sent_part_of_the_preface_still_times_out() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = FirstBytes::new(server, SHORT);
        client.write_all(b"PRI * HTTP/2.0").await.unwrap();
        let mut buf = [0u8; 24];
        assert_eq!(server.read(&mut buf).await.unwrap(), 14);
        let error = server.read(&mut buf[14..]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn after_the_first_bytes_reads_wait_as_long_as_they_need() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut server = FirstBytes::new(server, SHORT);
        client.write_all(&[b'x'; 24]).await.unwrap();
        let mut buf = [0u8; 24];
        assert_eq!(server.read(&mut buf).await.unwrap(), 24);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4];
            server.read(&mut buf).await.map(|read| buf[..read].to_vec())
        });
        tokio::time::sleep(SHORT * 4).await;
        client.write_all(b"late").await.unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), b"late");
    }
}
