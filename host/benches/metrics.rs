//! Per-request cost of the metrics the proxy keeps (`host/src/metrics/`): what one request
//! adds on the explicit ingress (its counter and latency, the upstream's time, one plugin
//! call), on a warm series, with the two workers' contention left out; and a scrape of a
//! server with 200 services.
//!
//! Run: `cargo bench --bench metrics`.

use std::hint::black_box;
use std::time::Duration;

use agent_vault::metrics::{PluginOutcome, metrics};
use criterion::{Criterion, criterion_group, criterion_main};

fn per_request(c: &mut Criterion) {
    let metrics = metrics();
    let elapsed = Duration::from_micros(850);
    c.bench_function(
        "metrics/one request (count, latency, upstream, plugin)",
        |b| {
            b.iter(|| {
                metrics.plugin_call(black_box("bearer"), PluginOutcome::Decided, elapsed);
                metrics.upstream(elapsed);
                metrics.request(
                    Some(black_box("default")),
                    Some(black_box("stripe")),
                    "explicit",
                    black_box(200),
                    elapsed,
                );
            })
        },
    );
    c.bench_function("metrics/request counter alone", |b| {
        b.iter(|| {
            metrics.request(
                Some(black_box("default")),
                Some(black_box("stripe")),
                "explicit",
                black_box(200),
                elapsed,
            );
        })
    });
    for n in 0..200 {
        let service = format!("service-{n}");
        metrics.request(Some("default"), Some(&service), "explicit", 200, elapsed);
        metrics.request(Some("default"), Some(&service), "explicit", 403, elapsed);
    }
    c.bench_function("metrics/scrape of 200 services", |b| {
        b.iter(|| black_box(metrics.encode(Some(3))))
    });
}

criterion_group!(benches, per_request);
criterion_main!(benches);
