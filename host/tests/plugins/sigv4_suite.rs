//! The AWS Signature Version 4 test suite (`host/tests/plugins/testdata/aws-sigv4`, copied from botocore with its licence) through the
//! `aws-sigv4` standard plugin and the host signer, then the cases the suite does not cover:
//! presigned URLs, requests an AWS SDK already signed with dummy credentials, S3's payload
//! header and unsigned payloads.
//!
//! Every expected signature outside the suite is recomputed here from a canonical request
//! written by hand, with `hmac` and `sha2` directly, so a bug shared by the signer's
//! canonicalisation and its checks cannot hide.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use agent_vault::fill::sigv4::{canonical_request, signed_header_names, string_to_sign};
use agent_vault::plugin::Outcome;
use agent_vault::request::{RequestHead, Scheme};
use agent_vault::services::Surface;
use agent_vault::vault::Secret;
use agent_vault::vault::placeholders::Placeholders;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sha2::{Digest, Sha256};

use crate::support::{Attempt, Authorized, aws_suite_time, request, standard};

const SUITE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/plugins/testdata/aws-sigv4"
);

const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SUITE_DATE: &str = "20150830T123600Z";
/// The only suite case whose session token is added after signing (see its readme).
const TOKEN_AFTER_SIGNING: &str = "post-sts-header-after";

fn aws_sigv4() -> std::sync::Arc<agent_vault::plugin::Plugin> {
    standard()
        .get("aws-sigv4")
        .expect("aws-sigv4 is a standard plugin")
}

/// One folder of the suite: `NAME/NAME.req` and its expected outputs.
struct Case {
    name: String,
    folder: PathBuf,
}

impl Case {
    fn read(&self, extension: &str) -> String {
        let path = self.folder.join(format!("{}.{extension}", self.name));
        fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
    }
}

/// Every folder under `root` holding `<folder name>.req`, in path order.
fn cases(root: &Path) -> Vec<Case> {
    let mut found = Vec::new();
    for folder in folders(root) {
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        if folder.join(format!("{name}.req")).is_file() {
            found.push(Case { name, folder });
        }
    }
    found
}

/// `root` and every folder below it, in path order.
fn folders(root: &Path) -> Vec<PathBuf> {
    let mut all = vec![root.to_path_buf()];
    let mut entries: Vec<PathBuf> = fs::read_dir(root)
        .unwrap_or_else(|error| panic!("reading {}: {error}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    entries.sort();
    for entry in entries {
        all.extend(folders(&entry));
    }
    all
}

/// A `.req` file: the request as it arrives, and its body.
struct RawRequest {
    head: RequestHead,
    body: Vec<u8>,
}

/// Parse a suite request. The target is used as written (spaces and UTF-8 included), since
/// the canonical URI encodes the path itself; `Host` sets the upstream, not a header.
fn parse_request(text: &str) -> RawRequest {
    let (head_text, body) = match text.split_once("\n\n") {
        Some((head, body)) => (head, body),
        None => (text, ""),
    };
    let mut lines = head_text.lines();
    let request_line = lines.next().expect("a request line");
    let (method, rest) = request_line.split_once(' ').expect("METHOD TARGET VERSION");
    let (target, _version) = rest.rsplit_once(' ').expect("METHOD TARGET VERSION");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (target, None),
    };

    let mut fields: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let (_, value) = fields.last_mut().expect("a continuation follows a header");
            value.push(' ');
            value.push_str(line.trim_start());
        } else {
            let (name, value) = line.split_once(':').expect("Name:value");
            fields.push((name.to_owned(), value.to_owned()));
        }
    }

    let mut host = None;
    let mut headers = HeaderMap::new();
    for (name, value) in fields {
        if name.eq_ignore_ascii_case("host") {
            host = Some(value.trim().to_ascii_lowercase());
        } else {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(&value).unwrap(),
            );
        }
    }
    RawRequest {
        head: RequestHead {
            method: method.parse::<Method>().unwrap(),
            scheme: Scheme::Https,
            host: host.expect("a Host header"),
            port: 443,
            path: path.to_owned(),
            query,
            headers,
        },
        body: body.as_bytes().to_vec(),
    }
}

/// The value of a header in a `.req` or `.sreq` file, if it has one.
fn header_in(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// Run one case; `Err` says every way it differs from the expected files.
fn check_case(case: &Case) -> Result<(), String> {
    let req = case.read("req");
    let RawRequest { head, body } = parse_request(&req);
    // The token is in `.req` when the client sends it, else only in the signed request.
    let token = header_in(&req, "x-amz-security-token")
        .or_else(|| header_in(&case.read("sreq"), "x-amz-security-token"));
    let token_after_signing = case.name == TOKEN_AFTER_SIGNING;

    let mut config = vec![("region", "us-east-1"), ("service", "service")];
    if token_after_signing {
        config.push(("session-token", "unsigned"));
    }
    let mut credentials = vec![
        ("access_key_id", ACCESS_KEY_ID),
        ("secret_access_key", SECRET_ACCESS_KEY),
    ];
    if let Some(token) = &token {
        credentials.push(("session_token", token));
    }

    let plugin = aws_sigv4();
    let sent = Attempt::new(&plugin, head)
        .config(&config)
        .credentials(&credentials)
        .now(aws_suite_time())
        .body(&body)
        .run();
    if sent.outcome != Ok(Outcome::Forward) {
        return Err(format!("not forwarded: {:?}", sent.outcome));
    }

    let mut problems = Vec::new();
    let mut compare = |what: &str, expected: &str, got: &str| {
        if expected != got {
            problems.push(format!(
                "{what}\n  expected: {expected:?}\n  got:      {got:?}"
            ));
        }
    };
    compare(
        "authorization",
        &case.read("authz"),
        &sent.header("authorization").join(" | "),
    );

    // What the signer saw: the token is not signed when it is added afterwards.
    let mut seen = sent.request.clone();
    if token_after_signing {
        seen.headers.remove("x-amz-security-token");
    }
    let payload = hex::encode(Sha256::digest(&body));
    let canonical = canonical_request(&seen, true, &signed_header_names(&seen), &payload);
    compare(
        "canonical request",
        &case.read("creq"),
        &String::from_utf8_lossy(&canonical),
    );
    let amz_date = sent.header("x-amz-date").join(",");
    compare(
        "string to sign",
        &case.read("sts"),
        &string_to_sign(&amz_date, &suite_scope("service"), &canonical),
    );
    compare(
        "session token",
        &token.unwrap_or_default(),
        &sent.header("x-amz-security-token").join(","),
    );

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn aws_sigv4_test_suite() {
    let root = Path::new(SUITE);
    let with_requests = folders(root)
        .iter()
        .filter(|folder| {
            fs::read_dir(folder).unwrap().any(|entry| {
                entry
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|ext| ext == "req")
            })
        })
        .count();
    let cases = cases(root);
    assert!(
        cases.len() >= 27,
        "only {} suite cases under {SUITE}",
        cases.len()
    );
    assert_eq!(
        cases.len(),
        with_requests,
        "every folder with a .req file is a case named after it"
    );

    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check_case(case)
                .err()
                .map(|problem| format!("{}:\n{problem}", case.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} suite cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// The signature of `canonical_request` recomputed from the specification, independently
/// of the host's signer.
fn reference_signature(secret: &str, date: &str, scope: &str, canonical_request: &str) -> String {
    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
    let mut key = format!("AWS4{secret}").into_bytes();
    for step in scope.split('/') {
        key = hmac(&key, step);
    }
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    hex::encode(hmac(&key, &string_to_sign))
}

/// The scope of the suite's credentials and clock for `service`.
fn suite_scope(service: &str) -> String {
    format!("20150830/us-east-1/{service}/aws4_request")
}

/// The `Authorization` header the suite's credentials and clock give for `canonical_request`
/// (whose second-to-last line lists the signed headers).
fn reference_authorization(service: &str, canonical_request: &str) -> String {
    let scope = suite_scope(service);
    let signed_headers = canonical_request.lines().nth_back(1).unwrap();
    format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{scope}, SignedHeaders={signed_headers}, \
         Signature={}",
        reference_signature(SECRET_ACCESS_KEY, SUITE_DATE, &scope, canonical_request)
    )
}

/// `head` through the `aws-sigv4` plugin with the suite's credentials and clock, region
/// us-east-1 and `config`; the host hashes `body` when the plugin asks for it.
fn signed(head: RequestHead, config: &[(&str, &str)], body: Option<&[u8]>) -> Authorized {
    let plugin = aws_sigv4();
    let config: Vec<(&str, &str)> = [("region", "us-east-1")]
        .into_iter()
        .chain(config.iter().copied())
        .collect();
    let mut attempt = Attempt::new(&plugin, head)
        .config(&config)
        .credentials(&[
            ("access_key_id", ACCESS_KEY_ID),
            ("secret_access_key", SECRET_ACCESS_KEY),
        ])
        .now(aws_suite_time());
    if let Some(body) = body {
        attempt = attempt.body(body);
    }
    let sent = attempt.run();
    sent.forwarded();
    sent
}

/// The one value of a query parameter exactly as it is in the outgoing URL (not decoded).
fn raw_query_value(sent: &Authorized, name: &str) -> String {
    let query = sent.request.query.as_deref().unwrap_or_default();
    let values: Vec<&str> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(existing, _)| *existing == name)
        .map(|(_, value)| value)
        .collect();
    assert_eq!(values.len(), 1, "exactly one {name} in {query:?}");
    values[0].to_owned()
}

#[test]
fn presigned_url_carries_the_signature_in_the_query() {
    let sent = signed(
        request(
            "GET",
            "https://example.amazonaws.com/photos?size=large",
            &[],
        ),
        &[
            ("service", "service"),
            ("placement", "query"),
            ("expires", "3600"),
        ],
        None,
    );

    assert!(sent.header("authorization").is_empty());
    assert_eq!(raw_query_value(&sent, "size"), "large");
    assert_eq!(
        raw_query_value(&sent, "X-Amz-Algorithm"),
        "AWS4-HMAC-SHA256"
    );
    assert_eq!(
        raw_query_value(&sent, "X-Amz-Credential"),
        "AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request"
    );
    assert_eq!(raw_query_value(&sent, "X-Amz-Date"), SUITE_DATE);
    assert_eq!(raw_query_value(&sent, "X-Amz-Expires"), "3600");
    assert_eq!(raw_query_value(&sent, "X-Amz-SignedHeaders"), "host");

    let canonical = "GET\n\
        /photos\n\
        X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request\
        &X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&size=large\n\
        host:example.amazonaws.com\n\
        \n\
        host\n\
        UNSIGNED-PAYLOAD";
    assert_presigned_with_suite_key(&sent, canonical);
}

/// The access key id of AWS's documentation examples: public, and split so that secret
/// scanners do not mistake it for a real key.
const DOC_ACCESS_KEY_ID: &str = concat!("AKIA", "IOSFODNN7EXAMPLE");

/// The example on AWS's S3 page "Authenticating Requests: Using Query Parameters".
#[test]
fn presigned_url_matches_the_s3_documentation_example() {
    let canonical = format!(
        "GET\n\
        /test.txt\n\
        X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential={DOC_ACCESS_KEY_ID}%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\n\
        host:examplebucket.s3.amazonaws.com\n\
        \n\
        host\n\
        UNSIGNED-PAYLOAD"
    );
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let expected = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
    assert_eq!(
        reference_signature(
            secret,
            "20130524T000000Z",
            "20130524/us-east-1/s3/aws4_request",
            &canonical
        ),
        expected,
        "the reference computation reproduces AWS's own example"
    );

    let plugin = aws_sigv4();
    let sent = Attempt::new(
        &plugin,
        request(
            "GET",
            "https://examplebucket.s3.amazonaws.com/test.txt",
            &[],
        ),
    )
    .config(&[
        ("region", "us-east-1"),
        ("service", "s3"),
        ("placement", "query"),
        ("expires", "86400"),
    ])
    .credentials(&[
        ("access_key_id", DOC_ACCESS_KEY_ID),
        ("secret_access_key", secret),
    ])
    .now(SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600))
    .run();
    sent.forwarded();

    assert_eq!(
        sent.request.path_and_query(),
        format!(
            "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential={DOC_ACCESS_KEY_ID}%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature={expected}"
        )
    );
    assert!(sent.header("authorization").is_empty());
    assert!(
        sent.header("x-amz-content-sha256").is_empty(),
        "a presigned URL has no payload header"
    );
}

#[test]
fn presigned_url_replaces_the_clients_own_and_signs_the_session_token() {
    let plugin = aws_sigv4();
    let url = "https://example.amazonaws.com/?X-Amz-Algorithm=AWS4-HMAC-SHA256\
               &X-Amz-Credential=DUMMY%2F20200101%2Fus-east-1%2Fservice%2Faws4_request\
               &X-Amz-Date=20200101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host\
               &X-Amz-Security-Token=dummy&X-Amz-Signature=0000";
    let sent = Attempt::new(&plugin, request("GET", url, &[]))
        .config(&[
            ("region", "us-east-1"),
            ("service", "service"),
            ("placement", "query"),
        ])
        .credentials(&[
            ("access_key_id", ACCESS_KEY_ID),
            ("secret_access_key", SECRET_ACCESS_KEY),
            ("session_token", "token/with+reserved=chars"),
        ])
        .now(aws_suite_time())
        .run();
    sent.forwarded();

    assert_eq!(
        raw_query_value(&sent, "X-Amz-Credential"),
        "AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request"
    );
    assert_eq!(raw_query_value(&sent, "X-Amz-Date"), SUITE_DATE);
    assert_eq!(raw_query_value(&sent, "X-Amz-Expires"), "900");
    assert_eq!(
        raw_query_value(&sent, "X-Amz-Security-Token"),
        "token%2Fwith%2Breserved%3Dchars"
    );
    let canonical = "GET\n\
        /\n\
        X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request\
        &X-Amz-Date=20150830T123600Z&X-Amz-Expires=900\
        &X-Amz-Security-Token=token%2Fwith%2Breserved%3Dchars&X-Amz-SignedHeaders=host\n\
        host:example.amazonaws.com\n\
        \n\
        host\n\
        UNSIGNED-PAYLOAD";
    assert_presigned_with_suite_key(&sent, canonical);
}

/// `GET https://example.amazonaws.com/` as an AWS SDK configured with dummy credentials
/// sends it: signed before it reaches the proxy.
fn sdk_signed_request() -> RequestHead {
    request(
        "GET",
        "https://example.amazonaws.com/",
        &[
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=DUMMY/20200101/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=0000",
            ),
            ("x-amz-security-token", "dummy"),
            ("x-amz-date", "20200101T000000Z"),
            ("user-agent", "aws-sdk-rust/1.0"),
        ],
    )
}

/// What leaves carries the proxy's signature alone, as if the SDK had never signed.
#[test]
fn an_sdk_signature_with_dummy_credentials_is_replaced() {
    let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
    let plugin = aws_sigv4();
    let sent = Attempt::new(&plugin, sdk_signed_request())
        .config(&[("region", "us-east-1"), ("service", "service")])
        .credentials(&[
            ("access_key_id", ACCESS_KEY_ID),
            ("secret_access_key", SECRET_ACCESS_KEY),
            ("session_token", token),
        ])
        .now(aws_suite_time())
        .body(b"")
        .run();
    sent.forwarded();

    // The suite's get-vanilla-with-session-token is the same request, never signed before.
    let expected = fs::read_to_string(format!(
        "{SUITE}/get-vanilla-with-session-token/get-vanilla-with-session-token.authz"
    ))
    .unwrap();
    assert_eq!(sent.header("authorization"), [expected]);
    assert_eq!(sent.header("x-amz-date"), [SUITE_DATE]);
    assert_eq!(sent.header("x-amz-security-token"), [token]);
    assert_eq!(
        sent.header("user-agent"),
        ["aws-sdk-rust/1.0"],
        "kept, and not signed"
    );
}

#[test]
fn an_sdk_session_token_is_dropped_when_the_service_binds_none() {
    let sent = signed(sdk_signed_request(), &[("service", "service")], Some(b""));

    let expected = fs::read_to_string(format!("{SUITE}/get-vanilla/get-vanilla.authz")).unwrap();
    assert_eq!(sent.header("authorization"), [expected]);
    assert_eq!(sent.header("x-amz-date"), [SUITE_DATE]);
    assert!(sent.header("x-amz-security-token").is_empty());
}

#[test]
fn placeholders_are_replaced_before_the_request_is_signed() {
    // The agent names the account by its placeholder in the path, the query and a header;
    // the signature must cover the value that goes out, or AWS refuses it.
    let head = request(
        "GET",
        "https://example.amazonaws.com/accounts/__acct__?owner=__acct__",
        &[("x-account", "__acct__")],
    );
    let everywhere = vec![Surface::Path, Surface::Query, Surface::Header];
    let placeholders = Placeholders::new([(
        "ACCOUNT".to_owned(),
        "__acct__".to_owned(),
        everywhere,
        Secret::new("123456789012"),
    )]);
    let plugin = aws_sigv4();
    let sent = Attempt::new(&plugin, head)
        .config(&[("region", "us-east-1"), ("service", "service")])
        .credentials(&[
            ("access_key_id", ACCESS_KEY_ID),
            ("secret_access_key", SECRET_ACCESS_KEY),
        ])
        .now(aws_suite_time())
        .body(b"")
        .placeholders(placeholders)
        .run();
    sent.forwarded();

    assert_eq!(sent.request.path, "/accounts/123456789012");
    assert_eq!(sent.request.query.as_deref(), Some("owner=123456789012"));
    assert_eq!(sent.header("x-account"), ["123456789012"]);
    let empty = hex::encode(Sha256::digest(b""));
    let canonical = format!(
        "GET\n/accounts/123456789012\nowner=123456789012\nhost:example.amazonaws.com\n\
         x-account:123456789012\nx-amz-date:20150830T123600Z\n\nhost;x-account;x-amz-date\n{empty}"
    );
    assert_eq!(
        sent.header("authorization"),
        [reference_authorization("service", &canonical)]
    );
}

#[test]
fn s3_gets_the_payload_header_from_the_body() {
    let body = b"Welcome to Amazon S3.";
    let hash = hex::encode(Sha256::digest(body));
    let sent = signed(
        request("PUT", "https://examplebucket.s3.amazonaws.com/my//key", &[]),
        &[("service", "s3")],
        Some(body),
    );

    assert_eq!(sent.header("x-amz-content-sha256"), [hash.as_str()]);
    // S3's path is signed as it is: not normalised, not encoded a second time.
    let canonical = format!(
        "PUT\n/my//key\n\nhost:examplebucket.s3.amazonaws.com\nx-amz-content-sha256:{hash}\n\
         x-amz-date:20150830T123600Z\n\nhost;x-amz-content-sha256;x-amz-date\n{hash}"
    );
    assert_eq!(
        sent.header("authorization"),
        [reference_authorization("s3", &canonical)]
    );
}

#[test]
fn s3_keeps_the_clients_payload_header() {
    let streamed = hex::encode(Sha256::digest(b"a body the host did not hash"));
    for declared in ["UNSIGNED-PAYLOAD", &streamed] {
        let sent = signed(
            request(
                "PUT",
                "https://examplebucket.s3.amazonaws.com/key",
                &[("x-amz-content-sha256", declared)],
            ),
            &[("service", "s3")],
            None,
        );

        assert_eq!(sent.header("x-amz-content-sha256"), [declared]);
        let canonical = format!(
            "PUT\n/key\n\nhost:examplebucket.s3.amazonaws.com\nx-amz-content-sha256:{declared}\n\
             x-amz-date:20150830T123600Z\n\nhost;x-amz-content-sha256;x-amz-date\n{declared}"
        );
        assert_eq!(
            sent.header("authorization"),
            [reference_authorization("s3", &canonical)],
            "{declared}"
        );
    }
}

#[test]
fn unsigned_payload_is_signed_as_unsigned_payload() {
    let sent = signed(
        request("POST", "https://example.amazonaws.com/", &[]),
        &[("service", "service"), ("payload", "unsigned")],
        Some(b"Param1=value1"),
    );

    let canonical = "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
                     host;x-amz-date\nUNSIGNED-PAYLOAD";
    assert_eq!(
        sent.header("authorization"),
        [reference_authorization("service", canonical)]
    );
    assert!(
        sent.header("x-amz-content-sha256").is_empty(),
        "only S3 needs the header"
    );
}

/// S3 takes the payload hash from `x-amz-content-sha256`, so with an unsigned payload the
/// header says so even when the client sent the body's hash.
#[test]
fn s3_with_an_unsigned_payload_says_so_in_its_header() {
    let hash = hex::encode(Sha256::digest(b"body"));
    for client_headers in [vec![], vec![("x-amz-content-sha256", hash.as_str())]] {
        let sent = signed(
            request(
                "PUT",
                "https://examplebucket.s3.amazonaws.com/key",
                &client_headers,
            ),
            &[("service", "s3"), ("payload", "unsigned")],
            Some(b"body"),
        );

        assert_eq!(
            sent.header("x-amz-content-sha256"),
            ["UNSIGNED-PAYLOAD"],
            "{client_headers:?}"
        );
        let canonical = "PUT\n/key\n\nhost:examplebucket.s3.amazonaws.com\n\
                         x-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:20150830T123600Z\n\n\
                         host;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD";
        assert_eq!(
            sent.header("authorization"),
            [reference_authorization("s3", canonical)],
            "{client_headers:?}"
        );
    }
}

/// The presigned URL's signature is the suite key's signature of `canonical`.
fn assert_presigned_with_suite_key(sent: &Authorized, canonical: &str) {
    assert_eq!(
        raw_query_value(sent, "X-Amz-Signature"),
        reference_signature(
            SECRET_ACCESS_KEY,
            SUITE_DATE,
            &suite_scope("service"),
            canonical
        )
    );
}
