//! A response cut short must look cut short. When an upstream's answer breaks off mid-body,
//! hyper ends the agent's HTTP/1 connection; over HTTP/1.1 a chunked body then lacks its last
//! chunk and a sized one its last bytes, but an HTTP/1.0 agent reads a body without a length
//! up to the close, so a clean close would hand it a truncated answer as a whole one.
//!
//! So the request path raises the connection's [`AbortSignal`] when the body it relays fails
//! (`proxy::relay_failures`), and [`Abortable`] then turns the close into an abort: a TCP
//! reset instead of a FIN (`SO_LINGER` 0), or, for TLS inside a tunnel, no `close_notify`.
//! Either way the agent's client reports an error instead of a short answer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Raised when a response on this connection broke off: the connection must end in an
/// abort. Handed to the request path in the request's extensions; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AbortSignal(Arc<AtomicBool>);

impl AbortSignal {
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A transport whose close can be made an abort.
pub trait Abort {
    /// Make the coming close an abort.
    fn abort_close(&mut self);
}

impl Abort for tokio::net::TcpStream {
    fn abort_close(&mut self) {
        // Closing with a zero linger sends a reset; it never blocks.
        let _ = self.set_zero_linger();
    }
}

impl<I> Abort for tokio_rustls::server::TlsStream<I> {
    /// Nothing to do: [`Abortable`] withholds the shutdown, so no `close_notify` is sent.
    fn abort_close(&mut self) {}
}

/// A connection that ends in an abort once its [`AbortSignal`] is raised.
#[derive(Debug)]
pub struct Abortable<I: Abort> {
    io: I,
    signal: AbortSignal,
}

impl<I: Abort> Abortable<I> {
    /// `io`, and the signal to hand to the requests served on it.
    pub fn new(io: I) -> (Abortable<I>, AbortSignal) {
        let signal = AbortSignal::default();
        (
            Abortable {
                io,
                signal: signal.clone(),
            },
            signal,
        )
    }
}

impl<I: Abort> Drop for Abortable<I> {
    fn drop(&mut self) {
        if self.signal.raised() {
            self.io.abort_close();
        }
    }
}

impl<I: Abort + AsyncRead + Unpin> AsyncRead for Abortable<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: Abort + AsyncWrite + Unpin> AsyncWrite for Abortable<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.signal.raised() {
            this.io.abort_close();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "a response on this connection broke off",
            )));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn a_raised_signal_ends_the_connection_with_a_reset() {
        let (mut client, server) = pair().await;
        let (mut server, signal) = Abortable::new(server);
        server.write_all(b"partial").await.unwrap();
        signal.raise();
        assert!(server.shutdown().await.is_err());
        drop(server);
        let mut read = Vec::new();
        let error = client.read_to_end(&mut read).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn without_it_the_close_is_clean() {
        let (mut client, server) = pair().await;
        let (mut server, _signal) = Abortable::new(server);
        server.write_all(b"whole").await.unwrap();
        server.shutdown().await.unwrap();
        drop(server);
        let mut read = Vec::new();
        client.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, b"whole");
    }
}
