//! Black-box tests of the `agent-vault` binary live in `cli/`; this crate has no code.
