//! The server's Prometheus metrics: every series `/metrics` shows, the calls the request
//! path's stages make to move them, and the text a scrape gets (`endpoint.rs` serves it,
//! behind its guard). Series are kept by the Prometheus project's client
//! (`prometheus-client`): counters and gauges are atomics, histograms a short lock.
//!
//! Labels are bounded: vault, service and plugin names come from the store and the plugin
//! directory (what an administrator made), ingress and status class from fixed sets. Nothing
//! an agent chooses becomes a label: a request for a host no service covers counts under
//! `service=""`, one whose token was refused under `vault=""`; never a path, a host, a
//! query, a token or an id.
//!
//! The request path finds its series without allocating: each (vault, service) pair and each
//! plugin gets its handles once, kept in a map looked up by `&str`; after that a request costs
//! a read lock, two hash lookups and a few atomic adds. Gauges that other parts already count
//! (open connections per listener, the request log's queue) are read at scrape time.
//!
//! The series live in one process-wide set ([`metrics`]), as a process serves one instance:
//! the stages call it where they are, without a handle passed down to each.

pub mod endpoint;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::accept::Gate;
use crate::request_log::RequestLog;

/// The content type of a scrape (the OpenMetrics text format, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bounds of the request latency buckets, in seconds.
const REQUEST_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Bounds of the plugin call buckets, in seconds (a warm call takes tens of microseconds).
const PLUGIN_BUCKETS: [f64; 13] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The ingresses, in the order of [`INGRESSES`] (`proxy::Ingress::as_str`).
const INGRESSES: [&str; 2] = ["explicit", "transparent"];
/// Tunnel kinds, in the order of [`TunnelKind`].
const TUNNEL_KINDS: [&str; 2] = ["intercepted", "blind"];
/// Status classes, `1xx` to `5xx`.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    vault: Arc<str>,
    service: Arc<str>,
    ingress: &'static str,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    vault: Arc<str>,
    service: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngressLabels {
    ingress: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelLabels {
    kind: &'static str,
}

/// Every series, and the handles the request path keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    redactions: Family<ServiceLabels, Counter>,
    request_duration: [Histogram; INGRESSES.len()],
    upstream_duration: Histogram,
    plugin_calls: Family<PluginLabels, Counter>,
    plugin_errors: Family<PluginLabels, Counter>,
    plugin_timeouts: Family<PluginLabels, Counter>,
    plugin_duration: Family<PluginLabels, Histogram>,
    rate_limited: Family<LimitLabels, Counter>,
    tunnels: [Gauge; 2],
    proposals_pending: Gauge,
    /// Per vault, per service: that pair's handles.
    services: RwLock<HashMap<String, HashMap<String, Arc<ServiceSeries>>>>,
    plugins: RwLock<HashMap<String, Arc<PluginSeries>>>,
    /// What is read at scrape time.
    watched: Arc<Watched>,
}

/// One (vault, service) pair's handles; each request counter is made on its first use.
#[derive(Debug)]
struct ServiceSeries {
    labels: ServiceLabels,
    requests: [[OnceLock<Counter>; STATUS_CLASSES.len()]; INGRESSES.len()],
    redactions: Counter,
}

#[derive(Debug)]
struct PluginSeries {
    calls: Counter,
    errors: Counter,
    timeouts: Counter,
    duration: Histogram,
}

/// How a plugin call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginOutcome {
    /// A decision (forward or deny).
    Decided,
    /// Stopped at its deadline.
    TimedOut,
    /// Any other failure: a trap, a limit, an invalid decision, no room.
    Failed,
}

/// An open tunnel of the transparent ingress, counted until dropped.
#[derive(Debug)]
pub struct OpenTunnel(Gauge);

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Which kind of tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    /// TLS terminated with a leaf from the local CA, each request inside served.
    Intercepted,
    /// Bytes copied to a host no service covers.
    Blind,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "agent_vault_proxy_requests",
            "Proxy requests answered, by vault, service (\"\" when no service covers the \
             host), ingress and status class; a refused token counts under vault=\"\"",
            requests.clone(),
        );
        let by_ingress = Family::<IngressLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(REQUEST_BUCKETS)
        });
        // A histogram's clones share its buckets: these handles are the family's entries.
        let request_duration =
            INGRESSES.map(|ingress| by_ingress.get_or_create(&IngressLabels { ingress }).clone());
        registry.register_with_unit(
            "agent_vault_proxy_request_duration",
            "Time from a proxy request's arrival to its response head, by ingress",
            Unit::Seconds,
            by_ingress,
        );
        let upstream_duration = Histogram::new(REQUEST_BUCKETS);
        registry.register_with_unit(
            "agent_vault_upstream_duration",
            "Time from sending a request upstream to its response head",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let plugin_calls = Family::<PluginLabels, Counter>::default();
        registry.register(
            "agent_vault_plugin_calls",
            "Plugin authorize calls, by plugin",
            plugin_calls.clone(),
        );
        let plugin_errors = Family::<PluginLabels, Counter>::default();
        registry.register(
            "agent_vault_plugin_errors",
            "Plugin authorize calls that failed (timeouts included), by plugin",
            plugin_errors.clone(),
        );
        let plugin_timeouts = Family::<PluginLabels, Counter>::default();
        registry.register(
            "agent_vault_plugin_timeouts",
            "Plugin authorize calls stopped at their deadline, by plugin",
            plugin_timeouts.clone(),
        );
        let plugin_duration = Family::<PluginLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(PLUGIN_BUCKETS)
        });
        registry.register_with_unit(
            "agent_vault_plugin_call_duration",
            "Duration of plugin authorize calls, by plugin",
            Unit::Seconds,
            plugin_duration.clone(),
        );
        let redactions = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "agent_vault_credential_echo_redactions",
            "Credential values found in upstream answers and redacted, by vault and service",
            redactions.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        for limit in ["rate_limit_scope", "concurrency_scope", "auth_failures"] {
            let _ = rate_limited.get_or_create(&LimitLabels { limit });
        }
        registry.register(
            "agent_vault_rate_limited_requests",
            "Proxy requests refused by a rate limit (429), by limit",
            rate_limited.clone(),
        );
        let tunnel_family = Family::<TunnelLabels, Gauge>::default();
        // One at a time: the family's read guard must be gone before it inserts again.
        let tunnels =
            TUNNEL_KINDS.map(|kind| tunnel_family.get_or_create(&TunnelLabels { kind }).clone());
        registry.register(
            "agent_vault_open_tunnels",
            "CONNECT tunnels of the transparent ingress open now, by kind",
            tunnel_family,
        );
        let proposals_pending = Gauge::default();
        registry.register(
            "agent_vault_proposals_pending",
            "Proposals of all vaults pending and unexpired, read at scrape time",
            proposals_pending.clone(),
        );
        let watched = Arc::new(Watched::default());
        registry.register_collector(Box::new(watched.clone()));
        Metrics {
            registry,
            requests,
            redactions,
            request_duration,
            upstream_duration,
            plugin_calls,
            plugin_errors,
            plugin_timeouts,
            plugin_duration,
            rate_limited,
            tunnels,
            proposals_pending,
            services: RwLock::default(),
            plugins: RwLock::default(),
            watched,
        }
    }

    /// A proxy request answered with `status` after `elapsed`: `vault` is `None` if its
    /// token was refused, `service` if no service covers its host. `ingress` is one of
    /// `proxy::Ingress::as_str`.
    pub fn request(
        &self,
        vault: Option<&str>,
        service: Option<&str>,
        ingress: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let ingress = INGRESSES
            .iter()
            .position(|name| *name == ingress)
            .unwrap_or(0);
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        let series = self.service(vault.unwrap_or(""), service.unwrap_or(""));
        series.requests[ingress][class]
            .get_or_init(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        vault: series.labels.vault.clone(),
                        service: series.labels.service.clone(),
                        ingress: INGRESSES[ingress],
                        status: STATUS_CLASSES[class],
                    })
                    .clone()
            })
            .inc();
        self.request_duration[ingress].observe(elapsed.as_secs_f64());
    }

    /// The upstream answered with a response head `elapsed` after the request was sent.
    pub fn upstream(&self, elapsed: Duration) {
        self.upstream_duration.observe(elapsed.as_secs_f64());
    }

    /// `plugin`'s authorize call ended with `outcome` after `elapsed`.
    pub fn plugin_call(&self, plugin: &str, outcome: PluginOutcome, elapsed: Duration) {
        let series = self.plugin(plugin);
        series.calls.inc();
        series.duration.observe(elapsed.as_secs_f64());
        match outcome {
            PluginOutcome::Decided => {}
            PluginOutcome::TimedOut => {
                series.errors.inc();
                series.timeouts.inc();
            }
            PluginOutcome::Failed => {
                series.errors.inc();
            }
        }
    }

    /// `matches` credential values redacted from an answer of `vault`'s `service`.
    pub fn redacted(&self, vault: &str, service: &str, matches: u64) {
        self.service(vault, service).redactions.inc_by(matches);
    }

    /// A proxy request refused by the limit named `code` (`ratelimit::Limited::code`, or
    /// `auth_failures` for a client whose tokens kept failing).
    pub fn rate_limited(&self, code: &'static str) {
        self.rate_limited
            .get_or_create(&LimitLabels { limit: code })
            .inc();
    }

    /// A tunnel opened; it counts as open until the returned guard is dropped.
    pub fn tunnel(&self, kind: TunnelKind) -> OpenTunnel {
        let gauge = self.tunnels[kind as usize].clone();
        gauge.inc();
        OpenTunnel(gauge)
    }

    /// Read `log`'s queue and counters at each scrape.
    pub fn watch_request_log(&self, log: RequestLog) {
        *lock(&self.watched.request_log) = Some(log);
    }

    /// Read the open connections of the listener `name` at each scrape.
    pub fn watch_listener(&self, name: &'static str, gate: Arc<Gate>) {
        let mut listeners = lock(&self.watched.listeners);
        listeners.retain(|(known, _)| *known != name);
        listeners.push((name, gate));
    }

    /// The text of a scrape, with `proposals_pending` as read from the store just before
    /// (`None`: it could not be, and the last count stands).
    pub fn encode(&self, proposals_pending: Option<u64>) -> String {
        if let Some(pending) = proposals_pending {
            self.proposals_pending
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }

    fn service(&self, vault: &str, service: &str) -> Arc<ServiceSeries> {
        let known = read(&self.services)
            .get(vault)
            .and_then(|services| services.get(service))
            .cloned();
        if let Some(series) = known {
            return series;
        }
        let mut services = write(&self.services);
        let by_service = services.entry(vault.to_owned()).or_default();
        by_service
            .entry(service.to_owned())
            .or_insert_with(|| {
                let labels = ServiceLabels {
                    vault: vault.into(),
                    service: service.into(),
                };
                Arc::new(ServiceSeries {
                    redactions: self.redactions.get_or_create(&labels).clone(),
                    labels,
                    requests: Default::default(),
                })
            })
            .clone()
    }

    fn plugin(&self, plugin: &str) -> Arc<PluginSeries> {
        if let Some(series) = read(&self.plugins).get(plugin) {
            return series.clone();
        }
        write(&self.plugins)
            .entry(plugin.to_owned())
            .or_insert_with(|| {
                let labels = PluginLabels {
                    plugin: plugin.into(),
                };
                Arc::new(PluginSeries {
                    calls: self.plugin_calls.get_or_create(&labels).clone(),
                    errors: self.plugin_errors.get_or_create(&labels).clone(),
                    timeouts: self.plugin_timeouts.get_or_create(&labels).clone(),
                    duration: self.plugin_duration.get_or_create(&labels).clone(),
                })
            })
            .clone()
    }
}

/// What is read from elsewhere at scrape time.
#[derive(Debug, Default)]
struct Watched {
    request_log: Mutex<Option<RequestLog>>,
    listeners: Mutex<Vec<(&'static str, Arc<Gate>)>>,
}

impl Collector for Watched {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let listeners = lock(&self.listeners);
            let mut family = encoder.encode_descriptor(
                "agent_vault_open_connections",
                "Connections open now, by listener",
                None,
                MetricType::Gauge,
            )?;
            for (listener, gate) in listeners.iter() {
                let open = i64::try_from(gate.open()).unwrap_or(i64::MAX);
                ConstGauge::new(open).encode(family.encode_family(&[("listener", *listener)])?)?;
            }
        }
        let Some(log) = lock(&self.request_log).clone() else {
            return Ok(());
        };
        let queued = i64::try_from(log.queued()).unwrap_or(i64::MAX);
        ConstGauge::new(queued).encode(encoder.encode_descriptor(
            "agent_vault_request_log_queue_depth",
            "Request-log entries queued for the store's writer now",
            None,
            MetricType::Gauge,
        )?)?;
        for (name, help, value) in [
            (
                "agent_vault_request_log_waits",
                "Requests that found the request log's queue full and waited for room",
                log.waited(),
            ),
            (
                "agent_vault_request_log_write_refusals",
                "Request-log batch writes the store refused (each retry counts)",
                log.write_refusals(),
            ),
            (
                "agent_vault_request_log_dropped",
                "Request-log entries not written to the store by the shutdown deadline \
                 (kept in the journal for the next start)",
                log.dropped(),
            ),
        ] {
            ConstCounter::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counters_are_labelled_by_name_and_class_only() {
        let metrics = Metrics::new();
        for status in [200, 204, 403, 502] {
            metrics.request(
                Some("team"),
                Some("stripe"),
                "explicit",
                status,
                Duration::ZERO,
            );
        }
        metrics.request(Some("team"), None, "transparent", 403, Duration::ZERO);
        let text = metrics.encode(None);
        for line in [
            r#"agent_vault_proxy_requests_total{vault="team",service="stripe",ingress="explicit",status="2xx"} 2"#,
            r#"agent_vault_proxy_requests_total{vault="team",service="stripe",ingress="explicit",status="4xx"} 1"#,
            r#"agent_vault_proxy_requests_total{vault="team",service="stripe",ingress="explicit",status="5xx"} 1"#,
            r#"agent_vault_proxy_requests_total{vault="team",service="",ingress="transparent",status="4xx"} 1"#,
            "agent_vault_proxy_request_duration_seconds_count{ingress=\"explicit\"} 4",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn plugin_timeouts_are_errors_too() {
        let metrics = Metrics::new();
        metrics.plugin_call("bearer", PluginOutcome::Decided, Duration::ZERO);
        metrics.plugin_call("bearer", PluginOutcome::TimedOut, Duration::ZERO);
        metrics.plugin_call("bearer", PluginOutcome::Failed, Duration::ZERO);
        let text = metrics.encode(Some(3));
        for line in [
            r#"agent_vault_plugin_calls_total{plugin="bearer"} 3"#,
            r#"agent_vault_plugin_errors_total{plugin="bearer"} 2"#,
            r#"agent_vault_plugin_timeouts_total{plugin="bearer"} 1"#,
            "agent_vault_proposals_pending 3",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn tunnels_count_while_open() {
        let metrics = Metrics::new();
        let tunnel = metrics.tunnel(TunnelKind::Blind);
        assert!(
            metrics
                .encode(None)
                .contains(r#"agent_vault_open_tunnels{kind="blind"} 1"#)
        );
        drop(tunnel);
        assert!(
            metrics
                .encode(None)
                .contains(r#"agent_vault_open_tunnels{kind="blind"} 0"#)
        );
    }
}
