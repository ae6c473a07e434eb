//! Tests of rendering a plugin's value into the bytes of the request (render.rs).

use super::*;
use crate::vault::Secret;

fn credentials() -> Credentials {
    Credentials::new([
        ("user".to_owned(), Secret::new("u")),
        ("pass".to_owned(), Secret::new("p")),
        ("multiline".to_owned(), Secret::new("a\r\nInjected: yes")),
    ])
}

fn text(text: &str) -> Atom {
    Atom::Text(text.to_owned())
}

fn slot(slot: &str) -> Atom {
    Atom::Credential(slot.to_owned())
}

fn part(encoding: Encoding, atoms: Vec<Atom>) -> Part {
    Part { atoms, encoding }
}

#[test]
fn basic_auth_is_base64_of_the_joined_atoms() {
    let value = vec![
        part(Encoding::Raw, vec![text("Basic ")]),
        part(
            Encoding::Base64,
            vec![slot("user"), text(":"), slot("pass")],
        ),
    ];
    let header = header_value(&value, &credentials()).unwrap();
    assert_eq!(header, "Basic dTpw");
    assert!(header.is_sensitive());
    assert_eq!(masked(&value), "Basic ****");
}

#[test]
fn every_encoding() {
    let creds = credentials();
    let render_one = |encoding| {
        let value = vec![part(encoding, vec![text("a b/~?"), slot("user")])];
        String::from_utf8(render(&value, &creds).unwrap().to_vec()).unwrap()
    };
    assert_eq!(render_one(Encoding::Raw), "a b/~?u");
    assert_eq!(render_one(Encoding::Base64), "YSBiL34/dQ==");
    assert_eq!(render_one(Encoding::Base64url), "YSBiL34_dQ");
    assert_eq!(render_one(Encoding::Hex), "6120622f7e3f75");
    assert_eq!(render_one(Encoding::Percent), "a%20b%2F~%3Fu");
}

#[test]
fn a_credential_with_a_line_break_never_reaches_a_header() {
    let value = vec![part(Encoding::Raw, vec![slot("multiline")])];
    let error = header_value(&value, &credentials()).unwrap_err();
    assert_eq!(error, RenderError::Credential);
    assert!(!error.to_string().contains("Injected"));
    let encoded = vec![part(Encoding::Base64, vec![slot("multiline")])];
    assert!(header_value(&encoded, &credentials()).is_ok());
}

#[test]
fn an_unbound_slot_is_an_error() {
    let value = vec![part(Encoding::Raw, vec![slot("other")])];
    assert_eq!(
        header_value(&value, &credentials()).unwrap_err(),
        RenderError::Unbound(UnboundSlot("other".into()))
    );
}

#[test]
fn values_are_capped() {
    let value = vec![part(
        Encoding::Raw,
        vec![text(&"x".repeat(MAX_RENDERED_LEN + 1))],
    )];
    assert_eq!(
        render(&value, &credentials()).unwrap_err(),
        RenderError::TooLong
    );
}

#[test]
fn every_failure_of_a_value_with_a_credential_is_the_same_error() {
    let long = "k".repeat(MAX_RENDERED_LEN + 1);
    let creds = Credentials::new([
        ("multiline".to_owned(), Secret::new("a\r\nb")),
        ("long".to_owned(), Secret::new(long.as_str())),
        ("escape".to_owned(), Secret::new("%2e%2e")),
        ("dots".to_owned(), Secret::new("..")),
        ("query".to_owned(), Secret::new("a?b")),
    ]);
    let raw = |atoms| vec![part(Encoding::Raw, atoms)];
    let failures = [
        header_value(&raw(vec![slot("multiline")]), &creds),
        header_value(&raw(vec![text("x"), slot("long")]), &creds),
        query_value(&raw(vec![slot("long")]), &creds).map(|_| HeaderValue::from_static("")),
        path(&raw(vec![text("/"), slot("escape")]), &creds).map(|_| HeaderValue::from_static("")),
        path(&raw(vec![text("/a/"), slot("dots")]), &creds).map(|_| HeaderValue::from_static("")),
        path(&raw(vec![text("/"), slot("query")]), &creds).map(|_| HeaderValue::from_static("")),
    ];
    for failure in failures {
        assert_eq!(failure.unwrap_err(), RenderError::Credential);
    }
    // Literal text gets the precise error: there is no secret in it to protect.
    assert_eq!(
        path(&raw(vec![text("/a/../b")]), &creds).unwrap_err(),
        RenderError::InvalidPath("must not have \".\" or \"..\" segments")
    );
}

#[test]
fn a_credential_cannot_complete_an_escape_begun_in_the_path_text() {
    // `%2` in the text and a credential starting with `e` would decode to a dot; the text
    // is refused by the decision's check, and a credential's own escapes must be whole.
    let creds = Credentials::new([("tail".to_owned(), Secret::new("ab%"))]);
    let value = vec![part(
        Encoding::Raw,
        vec![text("/x"), slot("tail"), text("41")],
    )];
    assert_eq!(path(&value, &creds).unwrap_err(), RenderError::Credential);
    assert!(!escapes_complete(b"/%2"));
    assert!(escapes_complete(b"/%2e/a"));
}

#[test]
fn paths_must_stay_paths() {
    let creds = credentials();
    let render_path = |raw: &str| path(&[part(Encoding::Raw, vec![text(raw)])], &creds);
    assert_eq!(
        render_path("/bot123/send%20it").unwrap(),
        "/bot123/send%20it"
    );
    for bad in [
        "relative",
        "//evil.example/x",
        "/a/../b",
        "/a/%2e%2E/b",
        "/a b",
        "/a?b",
        "/a%3fb",
        "/a%zz",
        "/a\r\n",
    ] {
        assert!(render_path(bad).is_err(), "{bad}");
    }
}

/// Found by the `decision` fuzz target: a plugin's path could climb with `..%5C`, which
/// the route itself refuses as a dot segment.
#[test]
fn a_backslash_separates_dot_segments_in_a_path() {
    let creds = credentials();
    let render_path = |raw: &str| path(&[part(Encoding::Raw, vec![text(raw)])], &creds);
    for bad in [
        "/a/..%5Cadmin",
        "/a%5C..%5Cb",
        "/a/.%5c",
        "/%5C..",
        "/a/%2e%2e%5cb",
    ] {
        assert_eq!(
            render_path(bad),
            Err(RenderError::InvalidPath(
                "must not have \".\" or \"..\" segments"
            )),
            "{bad}"
        );
    }
    assert_eq!(render_path("/a/..b%5Cc").unwrap(), "/a/..b%5Cc");
}

/// Found by the `decision` fuzz target: a plugin could make a path the route refuses
/// (`%8C` is not UTF-8 once decoded); the request was then refused only as it left.
#[test]
fn a_plugin_path_follows_the_rule_of_an_agent_path() {
    let creds = credentials();
    let render_path = |raw: &str| path(&[part(Encoding::Raw, vec![text(raw)])], &creds);
    for (bad, reason) in [
        ("/bot1/a%8C..%5Cadmin", "must be UTF-8 once percent-decoded"),
        ("/a/%c0%ae", "must be UTF-8 once percent-decoded"),
        (
            "/a%0D%0AX-Evil:%201",
            "must not have control characters once percent-decoded",
        ),
        (
            "/a/%00",
            "must not have control characters once percent-decoded",
        ),
        (
            "/a/%252e%252e/admin",
            "must not encode a \"%\" before two hex digits (double encoding)",
        ),
        ("/a/..;x/admin", "must not have \".\" or \"..\" segments"),
    ] {
        assert_eq!(
            render_path(bad),
            Err(RenderError::InvalidPath(reason)),
            "{bad}"
        );
        assert!(crate::path::canonical_path(bad).is_err(), "{bad}");
    }
    assert_eq!(
        render_path("/caf%C3%A9/100%25").unwrap(),
        "/caf%C3%A9/100%25"
    );
}
