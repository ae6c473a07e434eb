//! `connect-load`: a small load generator for HTTPS through an HTTP `CONNECT` proxy, the way
//! an agent with `HTTPS_PROXY` set reaches an API. wrk cannot open a tunnel, so
//! `bench/transparent` uses this to measure agent-vault's transparent ingress next to the
//! upstream itself and next to squid.
//!
//! Each of `--connections` tasks opens TCP (to `--proxy`, or else to `--connect` or the URL's
//! own address), sends `CONNECT host:port` with an optional Basic `Proxy-Authorization` when
//! going through a proxy and requires 200, does a TLS handshake for the URL's host (ALPN
//! `http/1.1`, no session resumption, roots from `--ca`), and sends `GET` requests with
//! HTTP/1.1. In `keepalive` mode a task keeps its tunnel and sends requests back to back;
//! latency runs from sending a request to the end of its body. In `handshake` mode every
//! request gets a new TCP connection, tunnel and TLS handshake (and `Connection: close`);
//! latency runs from the TCP connect to the end of the body.
//!
//! After `--warmup` seconds, requests are counted for `--duration` seconds (a request counts
//! if it both started and ended inside that window), and one line is printed:
//! `requests=N seconds=S rps=R p50_ms=X p99_ms=Y non2xx=K errors=E`, plus
//! `cpu_us_per_req=C` when `--cpu-pid` names processes (a proxy) whose user+sys time over the
//! window is divided by the requests. `errors` counts failed connections and requests during
//! the warm-up too; their messages and the non-2xx statuses go to stderr.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::client::Resumption;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_rustls::TlsConnector;

/// /proc reports CPU times in USER_HZ ticks, which Linux fixes at 100 per second.
const PROC_TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Parser)]
#[command(about = "HTTPS load through an HTTP CONNECT proxy (or straight to the server)")]
struct Args {
    /// The URL to request, `https://HOST[:PORT]/PATH`; HOST is the TLS name and the Host header.
    #[arg(long)]
    url: Uri,
    /// Where to open TCP without a proxy (default: the URL's host and port).
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "proxy")]
    connect: Option<String>,
    /// Tunnel through this HTTP proxy: `CONNECT HOST:PORT` first, and require 200.
    #[arg(long, value_name = "ADDR:PORT")]
    proxy: Option<String>,
    /// Credentials for the proxy, sent as Basic `Proxy-Authorization`.
    #[arg(long, value_name = "TOKEN:VAULT", requires = "proxy")]
    proxy_auth: Option<String>,
    /// PEM file of roots to trust for the server's (or the proxy's minted) certificate.
    #[arg(long, value_name = "FILE", required = true)]
    ca: Vec<PathBuf>,
    /// An extra request header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Concurrent connections (one task each).
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring (connections opened then are reused in `keepalive`).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, value_enum, default_value_t = Mode::Keepalive)]
    mode: Mode,
    /// Seconds one connection attempt or one request may take before it counts as an error.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// A process whose user+sys CPU time over the measured window is reported per request.
    #[arg(long = "cpu-pid", value_name = "PID")]
    cpu_pids: Vec<u32>,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One tunnel and TLS session per connection, requests back to back.
    Keepalive,
    /// A new TCP connection, tunnel and TLS handshake for every request.
    Handshake,
}

/// Everything a task needs to open a connection and build a request.
struct Target {
    /// Where TCP goes: the proxy, or the server.
    tcp_addr: String,
    /// `host:port` for `CONNECT` when going through a proxy.
    tunnel_to: Option<String>,
    proxy_authorization: Option<String>,
    tls: TlsConnector,
    server_name: ServerName<'static>,
    path: String,
    headers: HeaderMap,
    timeout: Duration,
}

/// The measured window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn contains(&self, started: Instant, ended: Instant) -> bool {
        started >= self.start && ended <= self.end
    }
}

/// What one task saw; merged at the end.
#[derive(Debug, Default)]
struct Stats {
    latencies_ns: Vec<u64>,
    non2xx: HashMap<u16, u64>,
    errors: HashMap<String, u64>,
    reconnects: u64,
}

impl Stats {
    fn response(&mut self, window: Window, started: Instant, status: u16) {
        let ended = Instant::now();
        if window.contains(started, ended) {
            let nanos = ended.duration_since(started).as_nanos();
            self.latencies_ns
                .push(u64::try_from(nanos).unwrap_or(u64::MAX));
            if !(200..300).contains(&status) {
                *self.non2xx.entry(status).or_default() += 1;
            }
        }
    }

    fn error(&mut self, error: &anyhow::Error) {
        *self.errors.entry(format!("{error:#}")).or_default() += 1;
    }

    fn merge(&mut self, other: Stats) {
        self.latencies_ns.extend(other.latencies_ns);
        for (status, count) in other.non2xx {
            *self.non2xx.entry(status).or_default() += count;
        }
        for (message, count) in other.errors {
            *self.errors.entry(message).or_default() += count;
        }
        self.reconnects += other.reconnects;
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let target = Arc::new(target(&args)?);
    let now = Instant::now();
    let start = now + Duration::from_secs_f64(args.warmup);
    let window = Window {
        start,
        end: start + Duration::from_secs_f64(args.duration),
    };

    let cpu = {
        let pids = args.cpu_pids.clone();
        tokio::spawn(async move {
            sleep_until(window.start).await;
            let before = cpu_ticks(&pids)?;
            sleep_until(window.end).await;
            Ok::<_, anyhow::Error>(cpu_ticks(&pids)? - before)
        })
    };
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| {
            let target = target.clone();
            match args.mode {
                Mode::Keepalive => tokio::spawn(keepalive(target, window)),
                Mode::Handshake => tokio::spawn(handshake(target, window)),
            }
        })
        .collect();
    let mut stats = Stats::default();
    for task in tasks {
        stats.merge(task.await?);
    }
    let cpu_ticks = cpu.await??;

    stats.latencies_ns.sort_unstable();
    let requests = stats.latencies_ns.len();
    let non2xx: u64 = stats.non2xx.values().sum();
    let errors: u64 = stats.errors.values().sum();
    let mut line = format!(
        "requests={requests} seconds={:.3} rps={:.1} p50_ms={:.3} p99_ms={:.3} non2xx={non2xx} errors={errors}",
        args.duration,
        requests as f64 / args.duration,
        percentile_ms(&stats.latencies_ns, 0.50),
        percentile_ms(&stats.latencies_ns, 0.99),
    );
    if !args.cpu_pids.is_empty() && requests > 0 {
        let micros = cpu_ticks as f64 / PROC_TICKS_PER_SECOND * 1e6 / requests as f64;
        line.push_str(&format!(" cpu_us_per_req={micros:.1}"));
    }
    println!("{line}");

    for (status, count) in &stats.non2xx {
        eprintln!("connect-load: {count} responses with status {status}");
    }
    let mut messages: Vec<_> = stats.errors.into_iter().collect();
    messages.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    for (message, count) in messages.iter().take(10) {
        eprintln!("connect-load: {count} errors: {message}");
    }
    if stats.reconnects > 0 {
        eprintln!(
            "connect-load: {} keep-alive connections closed by the other side and reopened",
            stats.reconnects
        );
    }
    Ok(())
}

fn target(args: &Args) -> Result<Target> {
    if args.url.scheme_str() != Some("https") {
        bail!("--url must be https://HOST[:PORT]/PATH");
    }
    let host = args.url.host().context("--url has no host")?.to_owned();
    let port = args.url.port_u16().unwrap_or(443);
    let authority = format!("{host}:{port}");
    let path = args
        .url
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();

    let mut roots = rustls::RootCertStore::empty();
    for file in &args.ca {
        for certificate in CertificateDer::pem_file_iter(file)
            .with_context(|| format!("reading {}", file.display()))?
        {
            roots.add(certificate.with_context(|| format!("parsing {}", file.display()))?)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every new connection pays a full handshake, as a fresh client process would.
    tls.resumption = Resumption::disabled();

    let mut headers = HeaderMap::new();
    let host_header = if port == 443 {
        host.clone()
    } else {
        authority.clone()
    };
    headers.insert(HOST, HeaderValue::from_str(&host_header)?);
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("--header {header:?} is not `Name: value`"))?;
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes())?,
            HeaderValue::from_str(value.trim())?,
        );
    }
    if args.mode == Mode::Handshake {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }

    let proxy_authorization = args.proxy_auth.as_ref().map(|credentials| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        format!("Basic {encoded}")
    });
    let (tcp_addr, tunnel_to) = match &args.proxy {
        Some(proxy) => (proxy.clone(), Some(authority.clone())),
        None => (args.connect.clone().unwrap_or(authority), None),
    };
    Ok(Target {
        tcp_addr,
        tunnel_to,
        proxy_authorization,
        tls: TlsConnector::from(Arc::new(tls)),
        server_name: ServerName::try_from(host)?,
        path,
        headers,
        timeout: Duration::from_secs_f64(args.timeout),
    })
}

/// A task of `keepalive` mode: one connection, reopened only if it breaks.
async fn keepalive(target: Arc<Target>, window: Window) -> Stats {
    let mut stats = Stats::default();
    let mut connection: Option<SendRequest<Empty<Bytes>>> = None;
    while Instant::now() < window.end {
        let sender = match &mut connection {
            Some(sender) if !sender.is_closed() => sender,
            stale => {
                if stale.is_some() {
                    stats.reconnects += 1;
                }
                match timeout(target.timeout, open(&target)).await {
                    Ok(Ok(sender)) => connection.insert(sender),
                    Ok(Err(error)) => {
                        stats.error(&error);
                        sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    Err(_) => {
                        stats.error(&anyhow::anyhow!("opening a connection timed out"));
                        continue;
                    }
                }
            }
        };
        let started = Instant::now();
        match timeout(target.timeout, exchange(sender, &target)).await {
            Ok(Ok(status)) => stats.response(window, started, status),
            Ok(Err(error)) => {
                stats.error(&error);
                connection = None;
            }
            Err(_) => {
                stats.error(&anyhow::anyhow!("request timed out"));
                connection = None;
            }
        }
    }
    stats
}

/// A task of `handshake` mode: a new connection for every request.
async fn handshake(target: Arc<Target>, window: Window) -> Stats {
    let mut stats = Stats::default();
    while Instant::now() < window.end {
        let started = Instant::now();
        let attempt = async {
            let mut sender = open(&target).await?;
            exchange(&mut sender, &target).await
        };
        match timeout(target.timeout, attempt).await {
            Ok(Ok(status)) => stats.response(window, started, status),
            Ok(Err(error)) => {
                stats.error(&error);
                sleep(Duration::from_millis(10)).await;
            }
            Err(_) => stats.error(&anyhow::anyhow!("connection and request timed out")),
        }
    }
    stats
}

/// TCP, the tunnel if going through a proxy, TLS, and an HTTP/1.1 connection over it.
async fn open(target: &Target) -> Result<SendRequest<Empty<Bytes>>> {
    let mut tcp = TcpStream::connect(&target.tcp_addr)
        .await
        .with_context(|| format!("connecting to {}", target.tcp_addr))?;
    tcp.set_nodelay(true)?;
    if let Some(authority) = &target.tunnel_to {
        tunnel(&mut tcp, authority, target.proxy_authorization.as_deref()).await?;
    }
    let tls = target
        .tls
        .connect(target.server_name.clone(), tcp)
        .await
        .context("TLS handshake")?;
    let (sender, connection) = http1::handshake(TokioIo::new(tls))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        // Its errors surface in the request that was in flight.
        let _ = connection.await;
    });
    Ok(sender)
}

/// `CONNECT authority` on a fresh connection to the proxy; Ok once it answers 200.
async fn tunnel(tcp: &mut TcpStream, authority: &str, authorization: Option<&str>) -> Result<()> {
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(authorization) = authorization {
        request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await?;

    // The proxy sends nothing after its answer until the client's TLS hello, so reading
    // until the blank line leaves no tunnel bytes behind.
    let mut head = Vec::with_capacity(128);
    let mut buffer = [0u8; 1024];
    loop {
        let read = tcp.read(&mut buffer).await?;
        if read == 0 {
            bail!("the proxy closed the connection before answering CONNECT");
        }
        head.extend_from_slice(&buffer[..read]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            if end + 4 != head.len() {
                bail!("the proxy sent bytes after its answer to CONNECT");
            }
            break;
        }
        if head.len() > 16 * 1024 {
            bail!("the proxy's answer to CONNECT is over 16 KiB");
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => bail!("the proxy answered CONNECT with {status_line:?}"),
    }
}

/// One GET on an open connection, read to the end of its body; the status.
async fn exchange(sender: &mut SendRequest<Empty<Bytes>>, target: &Target) -> Result<u16> {
    sender.ready().await.context("connection not ready")?;
    let mut request = Request::get(target.path.as_str()).body(Empty::<Bytes>::new())?;
    *request.headers_mut() = target.headers.clone();
    let response = sender
        .send_request(request)
        .await
        .context("sending the request")?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .context("reading the body")?;
    Ok(status)
}

/// Sum of user+sys ticks of the processes, from /proc/PID/stat.
fn cpu_ticks(pids: &[u32]) -> Result<u64> {
    let mut total = 0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // After the command name (in parentheses, may hold spaces): state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        for index in [11, 12] {
            total += fields
                .get(index)
                .context("short /proc stat line")?
                .parse::<u64>()?;
        }
    }
    Ok(total)
}

fn percentile_ms(sorted_ns: &[u64], quantile: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let rank = (quantile * sorted_ns.len() as f64).ceil() as usize;
    sorted_ns[rank.clamp(1, sorted_ns.len()) - 1] as f64 / 1e6
}
