//! Adversarial the ten fault-injection scenarios.
