//! Plugin runtime tests through the library API: standard plugins shaping real requests,
//! misbehaving fixtures failing closed, the registry's reload and cache, and the AWS SigV4
//! test suite. One binary so that the tests share one build and one engine.

mod support;

mod registry;
mod runtime;
mod sigv4_suite;
mod standard;
