//! Adversarial cases 1-10: where a request may go. The agent holds a valid session and
//! tries to make the proxy connect somewhere it must not (loopback, internal ranges, cloud
//! metadata, the proxy itself) or to attach a credential for one host to a request for
//! another (case, trailing dots, look-alike names, a conflicting `Host`, another port).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::{Canary, Witness, connect, transparent_address};
use crate::proxy::{Proxy, send_raw};

/// A server with the transparent proxy on, started with `args` and `env` (no allowlist
/// unless `env` sets one).
fn transparent_server(args: &[&str], env: &[(&str, &str)]) -> Proxy {
    let mut all = vec!["--mitm-port", "auto"];
    all.extend_from_slice(args);
    Proxy::start_with(&all, env)
}

fn assert_blocked(answer: &str, target: &str) {
    assert!(
        answer.starts_with("HTTP/1.1 403") && answer.contains("\"upstream_blocked\""),
        "CONNECT {target}: {answer}"
    );
}

#[test]
fn case_01_loopback_spellings_are_refused_before_any_connection() {
    let witness = Witness::on("127.0.0.1", 0);
    let proxy = transparent_server(&[], &[]);
    let address = transparent_address(&proxy);
    let port = witness.port;
    for host in [
        "127.0.0.1",
        "localhost",
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
    ] {
        let target = format!("{host}:{port}");
        assert_blocked(&connect(&address, &proxy.token, &target), &target);
    }
    assert_eq!(witness.connections(), 0, "a loopback spelling was dialled");
}

#[test]
fn case_02_a_name_with_one_internal_answer_is_refused_whole() {
    // 127.0.0.2 stands in for a public address (it is allowlisted); 127.0.0.1 is internal.
    let public = Witness::on("127.0.0.2", 0);
    let internal = Witness::on("127.0.0.1", public.port);
    let pin_public = format!("mixed.test.example:{}:127.0.0.2", public.port);
    let pin_internal = format!("mixed.test.example:{}:127.0.0.1", public.port);
    let proxy = transparent_server(
        &["--resolve", &pin_public, "--resolve", &pin_internal],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.2/32")],
    );
    let target = format!("mixed.test.example:{}", public.port);
    let answer = connect(&transparent_address(&proxy), &proxy.token, &target);
    assert_blocked(&answer, &target);
    assert!(
        answer.contains("127.0.0.1"),
        "the refusal names the address: {answer}"
    );
    assert_eq!(public.connections() + internal.connections(), 0);
}

#[test]
fn case_03_dns_rebinding_dials_the_address_that_was_checked() {
    // The system resolver cannot be made to rebind from outside the process, so this case
    // drives the proxy's upstream client (the library) with a resolver that answers an
    // allowed address first and a loopback one on every later query.
    let allowed = Witness::on("127.0.0.2", 0);
    let internal = Witness::on("127.0.0.1", allowed.port);
    let queries = Arc::new(AtomicUsize::new(0));
    let counter = queries.clone();
    let settings = agent_vault::upstream::UpstreamSettings {
        allowlist: vec!["127.0.0.2/32".parse().unwrap()],
        resolver: Some(agent_vault::upstream::Resolver(Arc::new(move |_, _| {
            let answer = if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                [127, 0, 0, 2]
            } else {
                [127, 0, 0, 1]
            };
            Ok(vec![std::net::IpAddr::from(answer)])
        }))),
        ..Default::default()
    };
    let upstream = agent_vault::upstream::Upstream::new(settings).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let first = upstream
            .connect_tcp("rebind.test.example", allowed.port)
            .await;
        assert!(first.is_ok(), "{first:?}");
        assert_eq!(
            queries.load(Ordering::SeqCst),
            1,
            "one query per connection"
        );
        let second = upstream
            .connect_tcp("rebind.test.example", allowed.port)
            .await;
        let error = second.expect_err("the rebound answer is refused");
        assert_eq!(error.code(), "upstream_blocked", "{error}");
    });
    assert_eq!(allowed.connections(), 1);
    assert_eq!(internal.connections(), 0, "the rebound address was dialled");
}

#[test]
fn case_04_ipv6_forms_that_carry_an_internal_ipv4_are_refused() {
    // A zone id (`fe80::1%eth0`) cannot be written in a pin or a CONNECT authority; the
    // link-local address itself is checked.
    let forms = [
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("64:ff9b::a9fe:a9fe", "NAT64 address for 169.254.169.254"),
        ("2002:a9fe:a9fe::1", "6to4 address for 169.254.169.254"),
        (
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "Teredo address for 192.0.2.45",
        ),
        ("::127.0.0.1", "IPv4-compatible"),
        ("::", "the unspecified address"),
        ("fe80::1", "a link-local address"),
    ];
    let pins: Vec<String> = forms
        .iter()
        .enumerate()
        .map(|(index, (addr, _))| format!("v6-{index}.test.example:443:[{addr}]"))
        .collect();
    let mut args = Vec::new();
    for pin in &pins {
        args.extend(["--resolve", pin.as_str()]);
    }
    let proxy = transparent_server(&args, &[]);
    let address = transparent_address(&proxy);
    for (index, (addr, reason)) in forms.iter().enumerate() {
        let target = format!("v6-{index}.test.example:443");
        let answer = connect(&address, &proxy.token, &target);
        assert_blocked(&answer, &format!("{target} ({addr})"));
        assert!(answer.contains(reason), "{addr}: {answer}");
    }
}

#[test]
fn case_05_cloud_metadata_is_refused_even_when_private_ranges_are_allowed() {
    let proxy = transparent_server(
        &[
            "--allow-private-ranges",
            "--resolve",
            "metadata.google.internal:80:169.254.169.254",
        ],
        &[(
            "AGENT_VAULT_NETWORK_ALLOWLIST",
            "169.254.0.0/16,100.64.0.0/10,fd00::/8",
        )],
    );
    let address = transparent_address(&proxy);
    for target in [
        "169.254.169.254:80",
        "[fd00:ec2::254]:80",
        "metadata.google.internal:80",
        "100.100.100.200:80",
        "169.254.170.2:80",
        "[::ffff:169.254.169.254]:80",
    ] {
        let answer = connect(&address, &proxy.token, target);
        assert_blocked(&answer, target);
        assert!(answer.contains("cloud metadata"), "{target}: {answer}");
    }
}

#[test]
fn case_06_the_proxy_never_connects_to_its_own_listeners() {
    let proxy = transparent_server(
        &["--allow-private-ranges", "--dev-mode"],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.0/8")],
    );
    let transparent = transparent_address(&proxy);
    let control_port = proxy.server.address.rsplit(':').next().unwrap().to_owned();
    let transparent_port = transparent.rsplit(':').next().unwrap().to_owned();
    for port in [&control_port, &transparent_port] {
        for host in [
            "127.0.0.1",
            "localhost",
            "0.0.0.0",
            "127.0.0.2",
            "[::ffff:127.0.0.1]",
        ] {
            let target = format!("{host}:{port}");
            let answer = connect(&transparent, &proxy.token, &target);
            assert_blocked(&answer, &target);
            // 0.0.0.0 is refused as the unspecified address before it gets that far.
            if host != "0.0.0.0" {
                assert!(answer.contains("own listeners"), "{target}: {answer}");
            }
        }
    }
    // The explicit ingress, through a service for the proxy's own address.
    proxy.credentials(json!({ "SELF_KEY": "sk_self_0001" }));
    proxy.services(json!([
        { "name": "self", "host": format!("127.0.0.1:{control_port}"), "auth": { "type": "bearer", "token": "SELF_KEY" } },
    ]));
    let answer = proxy.send(
        "GET",
        &format!("/proxy/127.0.0.1:{control_port}/v1/vaults"),
        &[("authorization", &format!("Bearer {}", proxy.token))],
        b"",
    );
    assert_eq!(answer.proxy_error(), (403, "upstream_blocked".into()));
}

#[test]
fn case_07_host_spellings_reach_only_the_service_host() {
    let canary = Canary::new("hosts");
    let proxy = Proxy::start();
    proxy.credentials(json!({ "API_TOKEN": canary.value }));
    proxy.services(json!([
        { "name": "api", "host": "api.test.example", "auth": { "type": "bearer", "token": "API_TOKEN" } },
    ]));
    let port = proxy.upstream.port;
    let auth = format!("Bearer {}", proxy.token);
    let agent = [("authorization", auth.as_str())];
    // The canonical name, however written, is the service's host.
    for host in ["API.Test.Example", "api.test.example."] {
        let answer = proxy.send("GET", &format!("/proxy/{host}:{port}/x"), &agent, b"");
        assert_eq!(answer.status, 200, "{host}: {answer:?}");
        let received = proxy.upstream.last();
        assert_eq!(
            received.header("authorization"),
            [format!("Bearer {}", canary.value)]
        );
    }
    let delivered = proxy.upstream.received().len();
    // Anything else is refused or matches no service.
    for (host, expected) in [
        ("api.test.example.evil.test", (403, "forbidden")),
        ("api.test.example@evil.test", (400, "bad_request")),
        ("evil.test%23api.test.example", (400, "bad_request")),
        ("api.t%D0%B5st.example", (400, "bad_request")),
        ("api.test.example..", (400, "bad_request")),
    ] {
        let answer = proxy.send("GET", &format!("/proxy/{host}:{port}/x"), &agent, b"");
        assert_eq!(
            answer.proxy_error(),
            (expected.0, expected.1.into()),
            "{host}"
        );
        canary.assert_absent(&answer.body, &format!("the agent ({host})"));
    }
    assert_eq!(
        proxy.upstream.received().len(),
        delivered,
        "a look-alike reached the upstream"
    );
}

#[test]
fn case_08_sni_inner_host_and_authority_must_be_the_connect_host() {
    let canary = Canary::new("sni");
    let t = crate::transparent::Transparent::start();
    t.proxy.credentials(json!({ "ITEMS_KEY": canary.value }));
    let before = t.proxy.upstream.received().len();
    // TLS naming another host: no handshake, so no certificate for it is ever minted.
    let refused =
        crate::transparent::tunnel(&t, &t.proxy.token, "api.test.example", "evil.test.example")
            .and_then(|mut tls| crate::transparent::get(&mut tls, "evil.test.example", "/x"));
    assert!(
        refused.is_err(),
        "the handshake for another name went through"
    );
    // The right SNI, another Host (HTTP/1.1), then an absolute-form target naming another host.
    let mut tls =
        crate::transparent::tunnel(&t, &t.proxy.token, "api.test.example", "api.test.example")
            .unwrap();
    assert_eq!(
        crate::transparent::get(&mut tls, "evil.test.example", "/x").unwrap(),
        421
    );
    let mut tls =
        crate::transparent::tunnel(&t, &t.proxy.token, "api.test.example", "api.test.example")
            .unwrap();
    let port = t.proxy.upstream.port;
    assert_eq!(
        crate::transparent::get(
            &mut tls,
            &format!("api.test.example:{port}"),
            "https://evil.test.example/x"
        )
        .unwrap(),
        421
    );
    // HTTP/2: an :authority naming another host.
    let request = http::Request::get(format!("https://evil.test.example:{port}/x"))
        .body(Default::default())
        .unwrap();
    let (status, _) = super::h2_in_tunnel(&t, request);
    assert_eq!(status, 421);
    assert_eq!(
        t.proxy.upstream.received().len(),
        before,
        "a misdirected request went out"
    );
}

#[test]
fn case_09_an_absolute_form_target_wins_over_a_conflicting_host_header() {
    let a = Canary::new("host_a");
    let b = Canary::new("host_b");
    let upstream = super::PlainUpstream::start();
    let pins = [
        format!("a.test.example:{}:127.0.0.1", upstream.port),
        format!("b.test.example:{}:127.0.0.1", upstream.port),
    ];
    let proxy = transparent_server(
        &["--resolve", &pins[0], "--resolve", &pins[1]],
        &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
    );
    proxy.credentials(json!({ "A_KEY": a.value, "B_KEY": b.value }));
    proxy.services(json!([
        { "name": "site-a", "host": "a.test.example", "allow_plaintext": true, "auth": { "type": "bearer", "token": "A_KEY" } },
        { "name": "site-b", "host": "b.test.example", "allow_plaintext": true, "auth": { "type": "bearer", "token": "B_KEY" } },
    ]));
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{}:default", proxy.token))
    };
    let answer = send_raw(
        &transparent_address(&proxy),
        "GET",
        &format!("http://a.test.example:{}/p", upstream.port),
        &[
            ("proxy-authorization", &format!("Basic {basic}")),
            ("host", &format!("b.test.example:{}", upstream.port)),
        ],
        b"",
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let head = upstream.next_head();
    assert!(head.contains(&format!("Bearer {}", a.value)), "{head}");
    b.assert_absent(head.as_bytes(), "the upstream of a.test.example");
    assert!(
        head.to_ascii_lowercase().contains("host: a.test.example"),
        "{head}"
    );
}

#[test]
fn case_10_a_service_pinned_to_a_port_covers_no_other_port() {
    // The checklist asks that a service without a port allow only 443. Agent Vault matches a
    // port-less service on every port, and configurations must move over unchanged, so that
    // rule is kept and made visible instead (`any_port` below); `host:443` pins a service.
    let canary = Canary::new("ports");
    let t = crate::transparent::Transparent::start();
    t.proxy.credentials(json!({ "PINNED_KEY": canary.value }));
    t.proxy.services(json!([
        { "name": "pinned", "host": "api.test.example:443", "auth": { "type": "bearer", "token": "PINNED_KEY" } },
    ]));
    let port = t.proxy.upstream.port;
    let before = t.proxy.upstream.received().len();
    // The explicit ingress: no service for another port.
    let auth = format!("Bearer {}", t.proxy.token);
    for other in [22, 6379, port] {
        let target = format!("/proxy/api.test.example:{other}/x");
        let answer = t
            .proxy
            .send("GET", &target, &[("authorization", &auth)], b"");
        assert_eq!(
            answer.proxy_error(),
            (403, "forbidden".into()),
            "port {other}"
        );
    }
    // The transparent ingress: another port is not intercepted, so a request through the
    // tunnel carries no credential (here the blind tunnel reaches the upstream untouched).
    let (code, body, stderr) = t.curl(
        &["--insecure", "-H", "authorization: Bearer agent-own"],
        &t.url("api.test.example", "/blind"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(body.contains("ok"), "{body}");
    let received = t.proxy.upstream.last();
    assert_eq!(received.header("authorization"), ["Bearer agent-own"]);
    assert!(t.proxy.upstream.received().len() > before);
    for received in t.proxy.upstream.received() {
        canary.assert_absent(format!("{received:?}").as_bytes(), "the upstream");
    }
    // Under the deny policy an uncovered port is refused outright.
    t.proxy.api(
        "PATCH",
        "/v1/vaults/default/settings",
        json!({ "unmatched_host_policy": "deny" }),
    );
    let answer = connect(
        &t.address,
        &t.proxy.token,
        &format!("api.test.example:{port}"),
    );
    assert!(
        answer.starts_with("HTTP/1.1 403") && answer.contains("proposal_hint"),
        "{answer}"
    );
    // A port-less service says that it covers every port.
    t.proxy.services(json!([
        { "name": "anyport", "host": "api.test.example", "auth": { "type": "bearer", "token": "PINNED_KEY" } },
    ]));
    let discovered = send_raw(
        &t.proxy.server.address,
        "GET",
        "/discover",
        &[("authorization", &format!("Bearer {}", t.proxy.token))],
        b"",
    );
    assert_eq!(
        discovered.json()["services"][0],
        json!({ "name": "anyport", "host": "api.test.example", "any_port": true })
    );
}
