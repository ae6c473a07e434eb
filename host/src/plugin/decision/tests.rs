//! Tests of the checks on a plugin's decision (decision.rs).

use super::*;
use crate::plugin::contract::{Atom, Edit, Encoding, Forward, NamedValue, Part};
use crate::vault::Secret;

fn credentials() -> Credentials {
    Credentials::new([("token".to_owned(), Secret::new("t"))])
}

fn header(name: &str, atoms: Vec<Atom>) -> Edit {
    Edit::SetHeader(NamedValue {
        name: name.to_owned(),
        value: vec![Part {
            atoms,
            encoding: Encoding::Raw,
        }],
    })
}

fn forward(edits: Vec<Edit>) -> Forward {
    Forward { edits, sign: None }
}

fn check(edits: Vec<Edit>) -> Result<(), InvalidDecision> {
    check_forward(forward(edits), &credentials()).map(|_| ())
}

#[test]
fn a_bearer_decision_is_valid() {
    let edit = header(
        "Authorization",
        vec![
            Atom::Text("Bearer ".into()),
            Atom::Credential("token".into()),
        ],
    );
    assert_eq!(check(vec![edit]), Ok(()));
}

#[test]
fn forbidden_headers_cannot_be_set_or_removed() {
    for name in [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "connection",
        "x-agent-vault-proxy-error",
        "X-Vault",
        "Expect",
        "Forwarded",
        "X-Forwarded-Host",
        "X-HTTP-Method-Override",
        "X-Original-URL",
    ] {
        let error = check(vec![header(name, vec![])]).unwrap_err();
        assert!(error.0.contains("may not edit"), "{name}: {error}");
        assert!(
            check(vec![Edit::RemoveHeader(name.into())]).is_err(),
            "{name}"
        );
    }
}

#[test]
fn line_breaks_in_literal_text_are_refused() {
    let error = check(vec![header(
        "x-a",
        vec![Atom::Text("a\r\nHost: evil".into())],
    )])
    .unwrap_err();
    assert_eq!(
        error.0,
        "the value of header \"x-a\" contains a line break or control character"
    );
}

#[test]
fn invalid_header_names_are_refused() {
    assert!(check(vec![header("bad name", vec![])]).is_err());
    assert!(check(vec![header("", vec![])]).is_err());
}

#[test]
fn slots_must_be_bound() {
    let error = check(vec![header("x-a", vec![Atom::Credential("other".into())])]).unwrap_err();
    assert_eq!(
        error.0,
        "header \"x-a\" refers to credential slot \"other\", which this service does not bind"
    );
}

fn text_header(name: &str, text: &str) -> Edit {
    header(name, vec![Atom::Text(text.into())])
}

#[test]
fn a_decision_is_bounded_in_atoms_and_bytes_in_all() {
    let atoms_per_edit = MAX_PARTS;
    let many_atoms: Vec<Edit> = (0..=MAX_DECISION_ATOMS / atoms_per_edit)
        .map(|n| {
            header(
                &format!("x-{n}"),
                vec![Atom::Text("a".into()); atoms_per_edit],
            )
        })
        .collect();
    assert_eq!(
        check(many_atoms).unwrap_err().0,
        format!("the decision has more than {MAX_DECISION_ATOMS} atoms")
    );
    let text = "t".repeat(MAX_VALUE_TEXT);
    let many_bytes: Vec<Edit> = (0..=MAX_DECISION_BYTES / MAX_VALUE_TEXT)
        .map(|n| text_header(&format!("x-{n}"), &text))
        .collect();
    assert_eq!(
        check(many_bytes).unwrap_err().0,
        format!("the decision has more than {MAX_DECISION_BYTES} bytes of text and names")
    );
}

#[test]
fn a_value_is_bounded_in_text_and_credential_references() {
    let long = text_header("x-a", &"t".repeat(MAX_VALUE_TEXT + 1));
    assert_eq!(
        check(vec![long]).unwrap_err().0,
        format!("the value of header \"x-a\" has more than {MAX_VALUE_TEXT} bytes of literal text")
    );
    let references = vec![Atom::Credential("token".into()); MAX_VALUE_CREDENTIALS + 1];
    assert_eq!(
        check(vec![header("x-a", references)]).unwrap_err().0,
        format!(
            "the value of header \"x-a\" refers to credentials more than {MAX_VALUE_CREDENTIALS} times"
        )
    );
}

#[test]
fn a_path_escape_must_be_whole_within_its_literal_text() {
    let path = |text: &str| {
        Edit::SetPath(vec![Part {
            atoms: vec![Atom::Text(text.into()), Atom::Credential("token".into())],
            encoding: Encoding::Raw,
        }])
    };
    assert_eq!(check(vec![path("/a%2Fb/")]), Ok(()));
    assert_eq!(
        check(vec![path("/a%2")]).unwrap_err().0,
        "a literal text of the path has a \"%\" not followed by two hex digits"
    );
}

#[test]
fn edits_are_capped() {
    let edits = (0..=MAX_EDITS)
        .map(|_| Edit::RemoveQuery("a".into()))
        .collect();
    assert!(check(edits).is_err());
}

#[test]
fn deny_statuses_are_4xx_but_not_401_or_407() {
    let deny = |status| {
        check_denial(&Denial {
            status,
            reason: "no".into(),
        })
    };
    assert_eq!(deny(403), Ok(()));
    assert_eq!(deny(429), Ok(()));
    for status in [200, 302, 401, 407, 500, 502] {
        assert!(deny(status).is_err(), "{status}");
    }
    assert!(
        check_denial(&Denial {
            status: 403,
            reason: "a\nb".into()
        })
        .is_err()
    );
}
