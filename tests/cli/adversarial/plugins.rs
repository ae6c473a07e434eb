//! Adversarial cases 29-30: misbehaving and exfiltrating plugins.
