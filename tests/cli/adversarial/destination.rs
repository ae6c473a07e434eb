//! Adversarial cases 1-10: where a request may go (SSRF, self-connection, host and port confusion).
