//! Adversarial cases 20-22: resource abuse.
