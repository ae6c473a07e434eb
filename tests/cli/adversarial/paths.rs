//! Adversarial cases 11-12: path scopes and methods.
