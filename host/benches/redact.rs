//! Per-request cost of looking for echoed credentials in a response: build the search for
//! one bearer token in all its forms, search a typical response's headers, and search a
//! small JSON body, with and without an echo in it; and all of it for one response, as the
//! proxy does it (the per-pattern finders are built inside that one).
//!
//! Run: `cargo bench --bench redact`.

use std::hint::black_box;

use agent_vault::vault::{Secret, redactor};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};

const TOKEN: &str = "sk-test-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";

fn response_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/json"),
        ("date", "Thu, 26 Nov 2026 23:15:38 GMT"),
        ("content-length", "412"),
        ("x-request-id", "req_5f2b7c1e9a0d4a418d0e3f1c2b4a6e77"),
        ("openai-processing-ms", "532"),
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains; preload",
        ),
        ("cf-ray", "8f1c2b4a6e77d0e3-FRA"),
    ] {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

fn redaction(c: &mut Criterion) {
    let secret = Secret::new(TOKEN);
    let values = [(&secret, "[REDACTED:API_TOKEN]")];
    c.bench_function("build the search for one token", |b| {
        b.iter(|| black_box(redactor(values.iter().map(|(s, l)| (*s, *l)))))
    });
    let headers = response_headers();
    let clean_body = br#"{"id":"chatcmpl-123","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#;
    c.bench_function(
        "one response: build, search headers and a 250-byte body",
        |b| {
            b.iter_batched_ref(
                || headers.clone(),
                |headers| {
                    let search = redactor(values.iter().map(|(s, l)| (*s, *l))).unwrap();
                    black_box(search.headers(headers));
                    black_box(search.body(black_box(clean_body)))
                },
                criterion::BatchSize::SmallInput,
            )
        },
    );
    let search = redactor(values.iter().map(|(s, l)| (*s, *l))).unwrap();
    c.bench_function("search 7 response headers", |b| {
        b.iter_batched_ref(
            || headers.clone(),
            |headers| black_box(search.headers(headers)),
            criterion::BatchSize::SmallInput,
        )
    });
    let clean = br#"{"id":"chatcmpl-123","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#;
    c.bench_function("search a 250-byte body without an echo", |b| {
        b.iter(|| black_box(search.body(black_box(clean))))
    });
    let echoed = format!(r#"{{"headers":{{"authorization":"Bearer {TOKEN}"}},"url":"/v1/x"}}"#);
    c.bench_function("redact a body with an echo", |b| {
        b.iter(|| black_box(search.body(black_box(echoed.as_bytes()))))
    });
}

criterion_group!(benches, redaction);
criterion_main!(benches);
