//! Each standard plugin, on the exact request it sends.

use agent_vault::plugin::Outcome;

use crate::support::{Attempt, request, standard};

fn plugin(name: &str) -> std::sync::Arc<agent_vault::plugin::Plugin> {
    standard().get(name).unwrap_or_else(|| panic!("standard plugin {name} is loaded"))
}

#[test]
fn bearer_sets_the_authorization_header() {
    let bearer = plugin("bearer");
    let sent = Attempt::new(&bearer, request("GET", "https://api.example.com/v1/charges", &[("authorization", "Bearer agent-token")]))
        .credentials(&[("token", "sk_test_123")])
        .run();
    sent.forwarded();
    assert_eq!(sent.header("authorization"), ["Bearer sk_test_123"]);
}

#[test]
fn basic_with_u_and_p_is_dtpw() {
    let basic = plugin("basic");
    let sent = Attempt::new(&basic, request("GET", "https://api.example.com/", &[]))
        .credentials(&[("username", "u"), ("password", "p")])
        .run();
    sent.forwarded();
    assert_eq!(sent.header("authorization"), ["Basic dTpw"]);
    assert_eq!(sent.outcome, Ok(Outcome::Forward));
}
