//! What a request path means. Paths are judged in a canonical form — percent-decoded once,
//! `\` read as `/`, runs of `/` collapsed — and a path whose meaning depends on who decodes
//! it is refused outright: `.` or `..` segments in any encoding (`..;x` included, which Java
//! servers read as `..`), an escape of an escape (`%252e`, which a server that decodes twice
//! reads as `.`), bytes that are not UTF-8 once decoded (overlong forms such as `%c0%ae`), and
//! control characters (`%00`).
//!
//! One rule for every path the proxy forwards: the agent's (`proxy::route`), and the ones a
//! plugin or a placeholder makes (`vault::render::check_path`), so that neither can make a
//! path the route would have refused.

/// Why a request path cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must not contain \".\" or \"..\" segments (in any encoding)")]
    DotSegment,
    #[error("the path has a \"%\" that is not followed by two hex digits")]
    BadEncoding,
    #[error(
        "the path has an escaped escape (\"%25\" followed by two hex digits), which servers \
         that decode twice read differently; send the character once-encoded"
    )]
    DoubleEncoding,
    #[error("the path is not UTF-8 once percent-decoded (overlong or invalid byte sequences)")]
    NotUtf8,
    #[error("the path must not contain control characters (such as %00)")]
    ControlCharacter,
    #[error("the path must start with \"/\"")]
    NotAbsolute,
    #[error(
        "a method or URL override header (X-HTTP-Method-Override, X-Original-URL, ...) is not a method or a path"
    )]
    BadOverride,
}

/// The form of a request path that services and allow rules are matched against.
pub fn canonical_path(raw: &str) -> Result<String, PathError> {
    if !(raw.is_empty() || raw.starts_with('/')) {
        return Err(PathError::NotAbsolute);
    }
    let decoded =
        String::from_utf8(percent_decode(raw.as_bytes())?).map_err(|_| PathError::NotUtf8)?;
    if decoded.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    let decoded = decoded.replace('\\', "/");
    let mut canonical = String::with_capacity(decoded.len() + 1);
    for segment in decoded.split('/') {
        // `..;jsessionid=x` is `..` to servlet containers: judge a segment without its
        // parameters.
        let bare = segment.split(';').next().unwrap_or_default();
        match segment {
            "" => {}
            _ if bare == "." || bare == ".." => return Err(PathError::DotSegment),
            segment => {
                canonical.push('/');
                canonical.push_str(segment);
            }
        }
    }
    if canonical.is_empty() || (decoded.ends_with('/') && !canonical.ends_with('/')) {
        canonical.push('/');
    }
    Ok(canonical)
}

/// `raw` with every `%XX` decoded, once; an escaped escape (`%25XX`) is refused.
fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        if raw[index] != b'%' {
            decoded.push(raw[index]);
            index += 1;
            continue;
        }
        let value = hex_byte(raw.get(index + 1..index + 3)).ok_or(PathError::BadEncoding)?;
        if value == b'%' && hex_byte(raw.get(index + 3..index + 5)).is_some() {
            return Err(PathError::DoubleEncoding);
        }
        decoded.push(value);
        index += 3;
    }
    Ok(decoded)
}

fn hex_byte(pair: Option<&[u8]>) -> Option<u8> {
    let text = std::str::from_utf8(pair?).ok()?;
    if text.len() != 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(text, 16).ok()
}

/// Whether every `%` in `bytes` is followed by two hex digits within `bytes`.
pub fn escapes_complete(bytes: &[u8]) -> bool {
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let digits = bytes.get(index + 1..index + 3);
            if !digits.is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            index += 3;
        } else {
            index += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_collapse_slashes_decode_once_and_refuse_dot_segments() {
        assert_eq!(canonical_path("/a//b///c/").unwrap(), "/a/b/c/");
        assert_eq!(canonical_path("").unwrap(), "/");
        assert_eq!(canonical_path("/repos%2Fx").unwrap(), "/repos/x");
        assert_eq!(canonical_path("/a%5Cb").unwrap(), "/a/b");
        assert_eq!(canonical_path("/a%20b/%7Euser").unwrap(), "/a b/~user");
        for traversal in [
            "/a/../admin",
            "/a/./b",
            "/a/%2e%2e/admin",
            "/a/%2E%2e/admin",
            "/a/.%2E/b",
            "/a%2f..%2fadmin",
            "/a\\..\\admin",
            "/..",
        ] {
            assert_eq!(
                canonical_path(traversal),
                Err(PathError::DotSegment),
                "{traversal}"
            );
        }
        assert_eq!(canonical_path("/a%zz"), Err(PathError::BadEncoding));
        assert_eq!(canonical_path("/a%2"), Err(PathError::BadEncoding));
    }

    #[test]
    fn paths_that_servers_read_differently_are_refused() {
        for (path, error) in [
            ("/repos/org/x/..;/admin", PathError::DotSegment),
            ("/a/..;jsessionid=1/b", PathError::DotSegment),
            ("/a/.;/b", PathError::DotSegment),
            ("/repos/org/%252e%252e/admin", PathError::DoubleEncoding),
            ("/a/%252F", PathError::DoubleEncoding),
            ("/a/%c0%ae%c0%ae/admin", PathError::NotUtf8),
            ("/a/%ff", PathError::NotUtf8),
            ("/repos/org/%00/x", PathError::ControlCharacter),
            ("/a%0d%0aX-Injected:%201", PathError::ControlCharacter),
            ("/a%7f", PathError::ControlCharacter),
            ("*", PathError::NotAbsolute),
            ("admin", PathError::NotAbsolute),
        ] {
            assert_eq!(canonical_path(path), Err(error), "{path}");
        }
        // A literal percent sign, and parameters that are not dot segments, stay usable.
        assert_eq!(canonical_path("/100%25/x").unwrap(), "/100%/x");
        assert_eq!(canonical_path("/a;v=1/b").unwrap(), "/a;v=1/b");
        assert_eq!(canonical_path("/caf%C3%A9").unwrap(), "/café");
    }

    #[test]
    fn an_escape_is_two_hex_digits_never_a_signed_number() {
        for bad in ["/a%+c", "/a%+0/b", "/%+f", "/a%-1", "/a% 1"] {
            assert_eq!(canonical_path(bad), Err(PathError::BadEncoding), "{bad}");
        }
        assert_eq!(canonical_path("/a%2bc").unwrap(), "/a+c");
    }
}
