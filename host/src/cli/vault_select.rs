//! Which vault a command acts in: `--vault`, else `AGENT_VAULT_VAULT`, else the one
//! `vault use` wrote to `<data-dir>/context`, else `default` (in agent mode, with
//! `AGENT_VAULT_TOKEN` set, the context file is not read); and the `--ttl` durations the
//! commands that mint tokens take.

use std::path::Path;

use anyhow::Context as _;

use super::client;

/// The vault to act in, for agents and scripts.
pub const VAULT_ENV: &str = "AGENT_VAULT_VAULT";
pub(super) const CONTEXT_FILE: &str = "context";
const DEFAULT_VAULT: &str = crate::store::DEFAULT_VAULT;

/// `--vault`, accepted anywhere after the command that takes it.
#[derive(Debug, Clone, clap::Args)]
pub struct VaultSelect {
    /// The vault [default: $AGENT_VAULT_VAULT, else the one chosen with `vault use`, else
    /// default].
    #[arg(long, global = true, value_name = "NAME", help_heading = super::client::COMMON)]
    pub vault: Option<String>,
}

impl VaultSelect {
    /// `--vault`, else `AGENT_VAULT_VAULT`, else (not in agent mode) the context file, else
    /// `default`.
    pub fn resolve(&self, data_dir: &Path) -> anyhow::Result<String> {
        if let Some(vault) = self.vault.clone().or_else(|| client::env_value(VAULT_ENV)) {
            return Ok(vault);
        }
        if client::agent_mode() {
            return Ok(DEFAULT_VAULT.to_owned());
        }
        Ok(read_context(data_dir)?.unwrap_or_else(|| DEFAULT_VAULT.to_owned()))
    }
}

/// Make `name` the current vault of later commands.
pub(super) fn write_context(data_dir: &Path, name: &str) -> anyhow::Result<()> {
    client::write_private(data_dir, CONTEXT_FILE, format!("{name}\n").as_bytes())
}

/// The vault of `<data-dir>/context`, if one was chosen.
pub(super) fn read_context(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let path = data_dir.join(CONTEXT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|name| !name.is_empty())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Seconds from `3600`, `90s`, `30m`, `24h`, `7d` or a sum like `1h30m`.
pub(super) fn parse_duration(text: &str) -> anyhow::Result<i64> {
    let invalid = || {
        anyhow::anyhow!(
            "--ttl {text:?} is not a duration: use seconds or a number with s, m, h or d (e.g. 30m, 24h, 7d)"
        )
    };
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        let amount: i64 = digits.parse().map_err(|_| invalid())?;
        total = amount
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("3600").unwrap(), 3600);
        assert_eq!(parse_duration("24h").unwrap(), 86_400);
        assert_eq!(parse_duration("1h30m").unwrap(), 5400);
        assert_eq!(parse_duration("7d").unwrap(), 604_800);
        assert_eq!(parse_duration("90s").unwrap(), 90);
        for bad in ["", "h", "1.5h", "10w", "5m3", "-5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
