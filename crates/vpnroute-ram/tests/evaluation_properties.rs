//! Properties of policy evaluation over generated documents: explicit Deny wins, adding an
//! Allow never takes a right away, a session policy only narrows, canonical JSON round-trips.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};
use time::macros::datetime;
use vpnroute_ram::{
    authorize, AttachedPolicy, Outcome, PolicyDocument, PolicyKind, Principal, Request, RequestContext,
};

const ACTIONS: &[&str] = &[
    "vpc:CreateVpnRouteEntry",
    "vpc:DescribeVpnGateway",
    "vpc:DeleteVpnGateway",
    "ram:CreateUser",
];
const RESOURCES: &[&str] = &[
    "acs:vpc:cn-hangzhou:100:vpngateway/vpn-1",
    "acs:vpc:cn-hangzhou:100:vpngateway/vpn-2",
    "acs:vpc:cn-shanghai:100:vpnconnection/vco-1",
    "acs:ram:*:100:user/*",
];

fn action_pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        Just("vpc:*".to_string()),
        Just("vpc:Describe*".to_string()),
        Just("VPC:createvpnrouteentry".to_string()),
        Just("vpc:*Vpn?ateway".to_string()),
        Just("ram:*".to_string()),
    ]
}

fn resource_pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        Just("acs:vpc:*:100:vpngateway/*".to_string()),
        Just("acs:vpc:cn-hangzhou:100:vpngateway/vpn-1".to_string()),
        Just("acs:vpc:*:*:*".to_string()),
        Just("acs:ram:*:100:*".to_string()),
        Just("acs:vpc:cn-shanghai:*:vpnconnection/vco-?".to_string()),
    ]
}

fn statement() -> impl Strategy<Value = Value> {
    (
        prop::bool::ANY,
        prop::bool::ANY,
        prop::collection::vec(action_pattern(), 1..3),
        prop::bool::ANY,
        prop::collection::vec(resource_pattern(), 1..3),
        prop::bool::ANY,
    )
        .prop_map(|(allow, not_action, actions, not_resource, resources, ip_condition)| {
            let mut s = serde_json::Map::new();
            s.insert("Effect".into(), json!(if allow { "Allow" } else { "Deny" }));
            s.insert(if not_action { "NotAction" } else { "Action" }.into(), json!(actions));
            s.insert(
                if not_resource { "NotResource" } else { "Resource" }.into(),
                json!(resources),
            );
            if ip_condition {
                s.insert("Condition".into(), json!({"IpAddress": {"acs:SourceIp": "10.0.0.0/8"}}));
            }
            Value::Object(s)
        })
}

fn document() -> impl Strategy<Value = PolicyDocument> {
    prop::collection::vec(statement(), 1..4)
        .prop_map(|st| PolicyDocument::parse(&json!({"Version": "1", "Statement": st}).to_string()).unwrap())
}

fn attached(docs: &[PolicyDocument]) -> Vec<AttachedPolicy> {
    docs.iter()
        .enumerate()
        .map(|(i, d)| AttachedPolicy {
            name: format!("p{i}"),
            kind: PolicyKind::Custom,
            document: Arc::new(d.clone()),
        })
        .collect()
}

fn user() -> Principal {
    Principal::User {
        account_id: "100".into(),
        user_id: "2".into(),
        user_name: "u".into(),
    }
}

fn ctx(inside: bool) -> RequestContext {
    let ip = if inside { "10.1.1.1" } else { "192.0.2.1" };
    RequestContext::at(datetime!(2026-12-01 08:00:00 UTC)).with_source_ip(ip.parse().unwrap())
}

fn outcome(
    p: &Principal,
    docs: &[PolicyDocument],
    session: Option<&PolicyDocument>,
    action: &str,
    resource: &str,
    inside: bool,
) -> Outcome {
    let resources = vec![resource.to_string()];
    let c = ctx(inside);
    authorize(
        p,
        &attached(docs),
        session,
        &Request {
            action,
            resources: &resources,
            context: &c,
        },
    )
    .outcome
}

proptest! {
    #[test]
    fn explicit_deny_in_any_policy_wins(docs in prop::collection::vec(document(), 1..4), a in 0..ACTIONS.len(), r in 0..RESOURCES.len(), inside: bool) {
        let c = ctx(inside);
        let any_deny = docs.iter().any(|d| d.verdict(ACTIONS[a], RESOURCES[r], &c) == vpnroute_ram::policy::Verdict::Deny);
        let any_allow = docs.iter().any(|d| d.verdict(ACTIONS[a], RESOURCES[r], &c) == vpnroute_ram::policy::Verdict::Allow);
        let o = outcome(&user(), &docs, None, ACTIONS[a], RESOURCES[r], inside);
        let expected = if any_deny { Outcome::ExplicitDeny } else if any_allow { Outcome::Allow } else { Outcome::ImplicitDeny };
        prop_assert_eq!(o, expected);
    }

    #[test]
    fn root_is_always_allowed(docs in prop::collection::vec(document(), 0..3), a in 0..ACTIONS.len(), r in 0..RESOURCES.len()) {
        let root = Principal::Root { account_id: "100".into() };
        prop_assert_eq!(outcome(&root, &docs, None, ACTIONS[a], RESOURCES[r], false), Outcome::Allow);
    }

    #[test]
    fn adding_an_allow_never_removes_a_right(docs in prop::collection::vec(document(), 1..3), extra in document(), a in 0..ACTIONS.len(), r in 0..RESOURCES.len(), inside: bool) {
        let before = outcome(&user(), &docs, None, ACTIONS[a], RESOURCES[r], inside);
        let allow_only: Vec<Value> = extra.to_json()["Statement"].as_array().unwrap().iter()
            .map(|s| { let mut s = s.clone(); s["Effect"] = json!("Allow"); s }).collect();
        let extra = PolicyDocument::parse(&json!({"Version":"1","Statement":allow_only}).to_string()).unwrap();
        let mut more = docs.clone();
        more.push(extra);
        let after = outcome(&user(), &more, None, ACTIONS[a], RESOURCES[r], inside);
        if before == Outcome::Allow {
            prop_assert_eq!(after, Outcome::Allow);
        }
        prop_assert!(!(before != Outcome::ExplicitDeny && after == Outcome::ExplicitDeny));
    }

    #[test]
    fn session_policy_only_narrows(role in prop::collection::vec(document(), 1..3), session in document(), a in 0..ACTIONS.len(), r in 0..RESOURCES.len(), inside: bool) {
        let p = Principal::AssumedRole { account_id: "100".into(), role_id: "3".into(), role_name: "R".into(), session_name: "s".into() };
        let without = outcome(&p, &role, None, ACTIONS[a], RESOURCES[r], inside);
        let with = outcome(&p, &role, Some(&session), ACTIONS[a], RESOURCES[r], inside);
        let session_alone = outcome(&user(), std::slice::from_ref(&session), None, ACTIONS[a], RESOURCES[r], inside);
        prop_assert_eq!(with == Outcome::Allow, without == Outcome::Allow && session_alone == Outcome::Allow);
        if without == Outcome::ExplicitDeny || session_alone == Outcome::ExplicitDeny {
            prop_assert_eq!(with, Outcome::ExplicitDeny);
        }
    }

    #[test]
    fn canonical_json_round_trips(doc in document()) {
        let again = PolicyDocument::parse(&doc.to_json().to_string()).unwrap();
        prop_assert_eq!(again.statements(), doc.statements());
    }

    #[test]
    fn parser_never_panics(text in "\\PC{0,200}") {
        let _ = PolicyDocument::parse(&text);
        let _ = vpnroute_ram::TrustPolicy::parse(&text);
    }

    #[test]
    fn parser_never_panics_on_json_shapes(doc in json_value(3)) {
        let _ = PolicyDocument::parse(&json!({"Version":"1","Statement":[doc.clone()]}).to_string());
        let _ = PolicyDocument::parse(&doc.to_string());
    }
}

fn json_value(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("Allow"),
            Just("Deny"),
            Just("*"),
            Just("vpc:*"),
            Just("acs:vpc:*"),
            Just("x")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(depth, 24, 4, |inner| {
        let keys = prop_oneof![
            Just("Effect"),
            Just("Action"),
            Just("NotAction"),
            Just("Resource"),
            Just("NotResource"),
            Just("Condition"),
            Just("StringEquals"),
            Just("IpAddress"),
            Just("acs:SourceIp"),
            Just("Sid"),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys, inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}
