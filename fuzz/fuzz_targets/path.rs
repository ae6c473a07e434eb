//! Path canonicalisation and allow-rule matching (`proxy::route`).
//!
//! Input: a request path on the first line, then allow rules, one a line: methods and path
//! globs, each a comma-separated list, `-` for none (`GET,POST /v1/charges*,/v1/refunds`).
//! After a NUL, choices: how to spell the canonical path again, and the request's method.
//!
//! For any request path:
//! - an accepted path is canonical: it starts with `/`, has no `//` and no `.` or `..`
//!   segment, and is what the reference canonicaliser makes of the request path;
//! - it is a fixed point: canonicalised again it is itself (when it has no `%`), and any
//!   other spelling of it (bytes percent-encoded in either case, `/` written as `\`, `%2F`,
//!   `%5C` or `//`, `%` as `%25`) canonicalises to it or is refused, never to another path;
//! - a path that has a dot segment once decoded (`\` read as `/`), or a bad escape, is
//!   refused;
//! - `glob_matches` and `allowed` agree with a reference matcher, on the canonical path and
//!   on the raw one.
#![no_main]

use agent_vault::proxy::route::{allowed, canonical_path, glob_matches};
use agent_vault::services::AllowRule;
use agent_vault_fuzz::input::{self, Result, Unstructured};
use agent_vault_fuzz::reference::{self, CanonicalPath};

const METHODS: &[&str] = &["GET", "POST", "DELETE", "PUT"];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (text, mut choices) = input::text_and_choices(data);
    let text = input::utf8_prefix(text);
    let mut lines = text.split('\n');
    let raw = lines.next().unwrap_or_default();
    let rules: Vec<AllowRule> = lines.map(rule).collect();
    let _ = run(raw, &rules, &mut choices);
});

/// `METHODS PATHS`, each comma-separated, `-` for an empty list.
fn rule(line: &str) -> AllowRule {
    let mut fields = line.split(' ');
    let list = |field: Option<&str>| match field {
        None | Some("-") => Vec::new(),
        Some(list) => list.split(',').map(str::to_owned).collect(),
    };
    AllowRule {
        methods: list(fields.next()),
        paths: list(fields.next()),
    }
}

fn run(raw: &str, rules: &[AllowRule], u: &mut Unstructured) -> Result<()> {
    for glob in rules.iter().flat_map(|rule| &rule.paths) {
        assert_eq!(
            glob_matches(glob, raw),
            reference::glob_matches(glob, raw),
            "glob {glob:?} on {raw:?}"
        );
    }
    // Refusing more than the reference is allowed (a stricter route may refuse spellings the
    // reference reads as harmless); accepting what it refuses, or canonicalising otherwise,
    // is not.
    let Ok(path) = canonical_path(raw) else {
        return Ok(());
    };
    assert_eq!(
        reference::canonical_path(raw),
        CanonicalPath::Canonical(path.clone()),
        "accepted {raw:?} as {path:?}"
    );
    assert_canonical(&path);
    if !path.contains('%') {
        assert_eq!(canonical_path(&path).as_ref(), Ok(&path), "not idempotent");
    }
    check_rules(rules, &path, u)?;
    let respelled = respell(u, &path)?;
    if let Ok(again) = canonical_path(&respelled) {
        assert_eq!(again, path, "{respelled:?} is another spelling of {path:?}");
    }
    Ok(())
}

fn assert_canonical(path: &str) {
    assert!(path.starts_with('/'), "{path:?} does not start with /");
    assert!(!path.contains("//"), "{path:?} has //");
    assert!(!path.contains('\\'), "{path:?} has \\");
    for segment in path.split('/') {
        assert!(!matches!(segment, "." | ".."), "{path:?} has a dot segment");
    }
}

/// Another way to write the canonical `path` in a request: every `/` as `/`, `//`, `\`,
/// `%2F` or `%5C` (either case), `%` always as `%25`, any other byte as itself or escaped.
fn respell(u: &mut Unstructured, path: &str) -> Result<String> {
    let mut spelled = String::new();
    for character in path.chars() {
        match character {
            '/' => spelled.push_str(u.choose(&["/", "//", "\\", "%2F", "%2f", "%5C", "%5c"])?),
            '%' => spelled.push_str("%25"),
            other => {
                let mut utf8 = [0; 4];
                match u.int_in_range(0..=2)? {
                    0 => spelled.push(other),
                    escape => {
                        for byte in other.encode_utf8(&mut utf8).bytes() {
                            if escape == 1 {
                                spelled.push_str(&format!("%{byte:02X}"));
                            } else {
                                spelled.push_str(&format!("%{byte:02x}"));
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(spelled)
}

/// Allow rules over the canonical path, against the reference matcher.
fn check_rules(rules: &[AllowRule], path: &str, u: &mut Unstructured) -> Result<()> {
    for glob in rules.iter().flat_map(|rule| &rule.paths) {
        assert_eq!(
            glob_matches(glob, path),
            reference::glob_matches(glob, path),
            "glob {glob:?} on {path:?}"
        );
    }
    let method = *u.choose(METHODS)?;
    let expected = rules.is_empty()
        || rules.iter().any(|rule| {
            (rule.methods.is_empty() || rule.methods.iter().any(|m| m == "*" || m == method))
                && (rule.paths.is_empty()
                    || rule
                        .paths
                        .iter()
                        .any(|glob| reference::glob_matches(glob, path)))
        });
    assert_eq!(
        allowed(rules, method, path),
        expected,
        "{method} {path:?} under {rules:?}"
    );
    Ok(())
}
