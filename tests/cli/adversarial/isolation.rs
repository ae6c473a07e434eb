//! Adversarial cases 27-28: vault isolation and upstream TLS.
