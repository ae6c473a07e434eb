//! Adversarial cases 23-26: credential leakage.
