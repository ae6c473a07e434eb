//! Adversarial cases 13-19: HTTP framing and headers.
