//! The accept stage, one rule for both listeners (the control plane, and the transparent
//! proxy): what a client that has not authenticated yet can make the server hold.
//!
//! - [`Door`]: a listener accepting with back-off. When accepting fails for lack of file
//!   descriptors (or memory) it pauses, from 10 ms doubling up to 1 s, and retries, so it
//!   never spins; failures are logged at most once per [`LOG_INTERVAL`], with a count, and
//!   once more when accepting works again.
//! - Caps on open connections per listener and per client address (`gate.rs`). A connection
//!   over a cap is answered at once with a 503 (the listener is full) or 429 (its address is),
//!   `Connection: close` and a JSON error in the proxy's style, then closed; refusals are
//!   logged at most once per [`LOG_INTERVAL`], with a count.
//! - What an admitted connection may hold (`http.rs`): the header-read timeout, on every
//!   listener and inside intercepted tunnels, the size of a request head, HTTP/2's streams
//!   and pings.
//! - What the stage guards in the bytes (`heads.rs`, `abort.rs`): a bare LF in an HTTP/1
//!   request head is refused before hyper reads it, and a connection whose relayed answer
//!   broke off ends in a reset, not a clean close.
//! - The per-listener cap's default is fitted to the file-descriptor limit, which the server
//!   raises to its hard limit at start (`cli/process.rs`).

/// `impl AsyncWrite` for an IO wrapper of this stage whose writes go to the wrapped socket
/// (its `io` field) unchanged, vectored where the socket can (hyper asks before choosing how
/// to write). The wrappers differ in their reads.
macro_rules! delegate_writes {
    ($wrapper:ident) => {
        impl<I: ::tokio::io::AsyncWrite + Unpin> ::tokio::io::AsyncWrite for $wrapper<I> {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }
        }
    };
}

mod abort;
mod gate;
mod heads;
mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::client_addr::TrustedProxies;
pub use abort::{Abort, AbortSignal, Abortable};
pub use gate::{Gate, Refusal, Slot};
pub use heads::{HeadScanner, StrictHeads};
pub use http::{Counted, FirstBytes, H2_MAX_STREAMS, H2_PING_INTERVAL, MAX_HEAD_BYTES};

/// How often a repeated accept failure or refusal is logged, at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The first pause after a failed accept; it doubles with each failure in a row.
const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// The longest pause between two accepts that fail.
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// The per-listener cap when none is given, if the file-descriptor limit allows it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// The per-address cap when none is given: room for a busy agent, or several, on the
/// server's own machine (they all share the loopback address).
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 1024;

/// The header timeout when none is given.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// File descriptors kept back from the connection caps for what the server opens as it
/// runs: database files, plugin files, webhook and pooled upstream connections.
const FD_MARGIN: usize = 64;

/// File descriptors one admitted connection may use: its own, and an upstream connection
/// (a blind tunnel, a WebSocket).
const FDS_PER_CONNECTION: usize = 2;

/// What an unauthenticated client can make the server hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request head (on a new connection, its first
    /// bytes too; inside a tunnel, its TLS handshake), and how long a keep-alive connection
    /// may wait for its next request.
    pub header_timeout: Duration,
    /// Open connections per listener; `None`: [`DEFAULT_MAX_CONNECTIONS`], lowered to what
    /// the file-descriptor limit can hold.
    pub max_connections: Option<usize>,
    /// Open connections per client address and listener (`None`: no cap); trusted proxies
    /// are not capped.
    pub max_connections_per_address: Option<usize>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: None,
            max_connections_per_address: Some(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS),
        }
    }
}

impl ConnectionLimits {
    /// The cap on each of `listeners` listeners: the one given, or the default fitted to the
    /// file descriptors this process may still open. Either way, a warning when the limit
    /// cannot hold that many connections.
    pub fn per_listener(&self, listeners: usize) -> usize {
        let budget = fd_budget().map(|fds| fds / (FDS_PER_CONNECTION * listeners.max(1)));
        match (self.max_connections, budget) {
            (Some(cap), Some(fitting)) if cap > fitting => {
                tracing::warn!(
                    "--max-connections {cap} is more than the file-descriptor limit can hold \
                     ({fitting} per listener): past that, accepting pauses until connections \
                     close (raise the limit with ulimit -n, or LimitNOFILE= under systemd)"
                );
                cap
            }
            (Some(cap), _) => cap,
            (None, Some(fitting)) if fitting < DEFAULT_MAX_CONNECTIONS => {
                let fitting = fitting.max(1);
                tracing::warn!(
                    "at most {fitting} connections per listener, to stay within the \
                     file-descriptor limit (raise it with ulimit -n, or LimitNOFILE= under \
                     systemd, for up to {DEFAULT_MAX_CONNECTIONS})"
                );
                fitting
            }
            (None, _) => DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// File descriptors this process may still open, less [`FD_MARGIN`]; `None` if unlimited.
fn fd_budget() -> Option<usize> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current?;
    let open = std::fs::read_dir("/proc/self/fd").map_or(FD_MARGIN, |entries| entries.count());
    Some(
        usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(open + FD_MARGIN),
    )
}

/// A listener with its caps: hands out admitted connections, refusing those over a cap and
/// riding out failures to accept.
#[derive(Debug)]
pub struct Door {
    listener: TcpListener,
    /// The listener's name in log lines.
    name: &'static str,
    gate: Arc<Gate>,
    /// Set after a failed accept: no accept before then.
    resume_at: Option<Instant>,
    pause: Duration,
    /// Failed accepts since the last one that worked.
    failures_in_a_row: u64,
    failures: Throttle,
    recoveries: Throttle,
    refusals: Throttle,
}

/// A connection that passed the caps: its socket, its peer, and its place under the caps.
#[derive(Debug)]
pub struct Admitted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub slot: Slot,
}

impl Door {
    /// `listener` under `max_connections`, and `max_per_address` per client address except
    /// for `trusted` proxies.
    pub fn new(
        listener: TcpListener,
        name: &'static str,
        max_connections: usize,
        max_per_address: Option<usize>,
        trusted: TrustedProxies,
    ) -> Door {
        Door {
            listener,
            name,
            gate: Gate::new(max_connections, max_per_address, trusted),
            resume_at: None,
            pause: Duration::ZERO,
            failures_in_a_row: 0,
            failures: Throttle::new(LOG_INTERVAL),
            recoveries: Throttle::new(LOG_INTERVAL),
            refusals: Throttle::new(LOG_INTERVAL),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The listener's caps and open connections (for `/metrics`).
    pub fn gate(&self) -> Arc<Gate> {
        self.gate.clone()
    }

    /// The next admitted connection; never an error. Cancel-safe: a pause after a failure
    /// is remembered across calls.
    pub async fn accept(&mut self) -> Admitted {
        loop {
            if let Some(resume_at) = self.resume_at {
                tokio::time::sleep_until(resume_at).await;
                self.resume_at = None;
            }
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => {
                    // That connection is gone; the next may be fine.
                    tracing::debug!(
                        listener = self.name,
                        "a connection closed before accept: {error}"
                    );
                    continue;
                }
                Err(error) => {
                    self.failed(&error);
                    continue;
                }
            };
            self.accepted();
            match self.gate.admit(peer.ip()) {
                Ok(slot) => return Admitted { stream, peer, slot },
                Err(refusal) => {
                    if let Some(refused) = self.refusals.count(Instant::now()) {
                        tracing::warn!(
                            listener = self.name,
                            refused,
                            %peer,
                            "refused new connections: {refusal}; logged at most once per {} s",
                            LOG_INTERVAL.as_secs()
                        );
                    }
                    refuse(stream, &refusal);
                }
            }
        }
    }

    fn failed(&mut self, error: &std::io::Error) {
        self.failures_in_a_row += 1;
        self.pause = (self.pause * 2).clamp(FIRST_PAUSE, LONGEST_PAUSE);
        let now = Instant::now();
        self.resume_at = Some(now + self.pause);
        if let Some(failures) = self.failures.count(now) {
            tracing::warn!(
                listener = self.name,
                failures,
                "accepting connections failed: {error}; retrying with back-off, up to {} s \
                 apart; logged at most once per {} s",
                LONGEST_PAUSE.as_secs(),
                LOG_INTERVAL.as_secs()
            );
        }
    }

    fn accepted(&mut self) {
        if self.failures_in_a_row > 0 {
            // Failures and successes can alternate quickly when descriptors are scarce:
            // this line is throttled too.
            if self.recoveries.count(Instant::now()).is_some() {
                tracing::info!(
                    listener = self.name,
                    failures = self.failures_in_a_row,
                    "accepting connections again"
                );
            }
            self.failures_in_a_row = 0;
            self.pause = Duration::ZERO;
        }
    }
}

/// Errors that end one connection before it was accepted, not the listener's: the next
/// accept may work at once.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// Answer a connection over a cap and close it. The answer is small enough for a new
/// socket's send buffer, so it is written without waiting; what the client has already
/// sent is read first, so that the close is a clean one rather than a reset where possible.
fn refuse(stream: TcpStream, refusal: &Refusal) {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = stream.into_std() else {
        return;
    };
    let mut already_sent = [0u8; 4096];
    let _ = stream.read(&mut already_sent);
    let _ = stream.write(refusal_response(refusal).as_bytes());
}

/// The answer to a connection over a cap: 503 when the listener is full, 429 when the
/// client's address is, in the style of the proxy's own errors (`proxy/errors.rs`).
fn refusal_response(refusal: &Refusal) -> String {
    let (status, code, message) = match refusal {
        Refusal::ListenerFull { limit } => (
            "503 Service Unavailable",
            "server_busy",
            format!("The server has {limit} connections open, its limit; retry later"),
        ),
        Refusal::AddressFull { limit } => (
            "429 Too Many Requests",
            "too_many_connections",
            format!(
                "Your address has {limit} connections open to this server, its limit; close \
                 some or retry later"
            ),
        ),
    };
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
         x-agent-vault-proxy-error: true\r\nretry-after: 1\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Counts events and says when to log them: the first at once, then at most one line per
/// interval, carrying the count since the last line.
#[derive(Debug)]
struct Throttle {
    interval: Duration,
    next_line: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            next_line: None,
            unlogged: 0,
        }
    }

    /// Count one event at `now`; `Some(count)` if a line is due, with the events it
    /// reports (this one and those not logged before).
    fn count(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self.next_line.is_some_and(|next| now < next) {
            return None;
        }
        self.next_line = Some(now + self.interval);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_logs_the_first_event_then_one_line_per_interval_with_a_count() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(10));
        assert_eq!(throttle.count(start), Some(1));
        for millis in 1..=1000 {
            assert_eq!(throttle.count(start + Duration::from_millis(millis)), None);
        }
        assert_eq!(throttle.count(start + Duration::from_secs(10)), Some(1001));
        assert_eq!(throttle.count(start + Duration::from_secs(11)), None);
        assert_eq!(throttle.count(start + Duration::from_secs(25)), Some(2));
    }

    #[test]
    fn a_refusal_is_a_complete_http_answer_that_closes() {
        let answer = refusal_response(&Refusal::AddressFull { limit: 3 });
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "too_many_connections");
        let full = refusal_response(&Refusal::ListenerFull { limit: 3 });
        assert!(
            full.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{full}"
        );
        assert!(full.contains("\"error\":\"server_busy\""), "{full}");
    }

    #[tokio::test]
    async fn accepting_refuses_over_the_cap_and_admits_again_once_a_connection_closes() {
        use tokio::io::AsyncReadExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut door = Door::new(listener, "test", 1, None, TrustedProxies::default());
        let _first_client = TcpStream::connect(address).await.unwrap();
        let first = door.accept().await;

        let mut second = TcpStream::connect(address).await.unwrap();
        let accepting = tokio::spawn(async move {
            let admitted = door.accept().await;
            (door, admitted)
        });
        let mut answer = String::new();
        second.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

        drop(first);
        let _third_client = TcpStream::connect(address).await.unwrap();
        let (door, _third) = accepting.await.unwrap();
        assert_eq!(door.gate.open(), 1);
    }
}
