//! The control plane driven through the CLI (being written).
