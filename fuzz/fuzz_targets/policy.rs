//! The RAM policy language (`vpnroute_ram::policy`): any text, as an identity policy, a trust
//! policy and a session policy — never a panic, only a `MalformedPolicyDocument` error; a
//! document that parses round-trips through its canonical JSON (`to_json`) to the same
//! statements, and both give the same verdict on the same requests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use vpnroute_ram::policy::{DocumentKind, Patterns, PolicyDocument, MAX_POLICY_CHARS, MAX_SESSION_POLICY_CHARS};
use vpnroute_ram::RequestContext;

/// Requests every parsed document is asked about, and the patterns of its first statement
/// (as an action and as a resource: hostile text reaches the matchers both ways).
const REQUESTS: &[(&str, &str)] = &[
    ("vpc:DescribeVpnGateway", "acs:vpc:cn-hangzhou:1234567890123456:vpngateway/vpn-1"),
    ("vpc:CreateVpnRouteEntry", "acs:vpc:*:*:vpngateway/*"),
    ("ram:CreateUser", "acs:ram::1234567890123456:user/alice"),
    ("sts:AssumeRole", "acs:ram::1234567890123456:role/r"),
    ("", ""),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = RequestContext::at(OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("a valid time"))
        .with_source_ip("10.1.2.3".parse().expect("an address"))
        .with_secure_transport(true)
        .with("acs:UserAgent", "fuzz/1.0");
    for (kind, limit) in [
        (DocumentKind::Identity, MAX_POLICY_CHARS),
        (DocumentKind::Identity, MAX_SESSION_POLICY_CHARS),
        (DocumentKind::Trust, MAX_POLICY_CHARS),
    ] {
        let doc = match PolicyDocument::parse_as(text, kind, limit) {
            Ok(doc) => doc,
            Err(e) => {
                assert_eq!(vpnroute_ram::PolicyError::CODE, "MalformedPolicyDocument");
                assert!(!e.message.is_empty());
                continue;
            }
        };
        assert_eq!(doc.text(), text);
        let canonical = doc.to_json().to_string();
        let again = PolicyDocument::parse_as(&canonical, kind, usize::MAX)
            .unwrap_or_else(|e| panic!("canonical form refused: {e}: {canonical}"));
        assert_eq!(again.statements(), doc.statements(), "{canonical}");
        let own: Vec<String> = match &doc.statements()[0].actions {
            Patterns::Only(list) | Patterns::AllBut(list) => list.iter().take(4).cloned().collect(),
        };
        let requests = REQUESTS
            .iter()
            .map(|(a, r)| (a.to_string(), r.to_string()))
            .chain(own.iter().map(|p| (p.clone(), p.clone())));
        for (action, resource) in requests {
            assert_eq!(
                doc.verdict(&action, &resource, &ctx),
                again.verdict(&action, &resource, &ctx),
                "{action} {resource}: {canonical}"
            );
        }
    }
});
