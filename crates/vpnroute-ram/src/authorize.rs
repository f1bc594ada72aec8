//! Policy evaluation for a principal: default deny, explicit Deny wins, the root account is never
//! limited, an assumed role gets its policies ∩ the session policy; the deciding policy; the
//! `AccessDeniedDetail` of a denial; and a role's trust policy deciding who may assume it.
//!
//! Order (Alibaba "Policy evaluation process"): session policy, then identity policies (the
//! user's and its groups', or the role's). Any explicit Deny in either ⇒ ExplicitDeny; else both
//! must Allow (no session policy ⇒ only identity policies count); else ImplicitDeny. A request
//! naming several resources (AddUserToGroup, Attach*, CreateSslVpnClientCert) needs an Allow for
//! each; a Deny on any one denies.

use std::sync::Arc;

use base64::Engine;
use serde::Serialize;

use crate::context::RequestContext;
use crate::policy::{DocumentKind, PolicyDocument, PolicyError, Verdict, MAX_POLICY_CHARS};
use crate::principal::Principal;
use crate::wildcard::{self, Case};

/// The answer to "may this principal do this?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Allow,
    ImplicitDeny,
    ExplicitDeny,
}

impl Outcome {
    pub fn is_allowed(self) -> bool {
        self == Outcome::Allow
    }

    /// AccessDeniedDetail `NoPermissionType`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Allow => "Allow",
            Outcome::ImplicitDeny => "ImplicitDeny",
            Outcome::ExplicitDeny => "ExplicitDeny",
        }
    }
}

/// RAM's `PolicyType` of a stored policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum PolicyKind {
    System,
    Custom,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::System => "System",
            PolicyKind::Custom => "Custom",
        }
    }

    /// Parses RAM's `PolicyType` parameter (exact case, as the SDKs send it).
    pub fn from_name(name: &str) -> Option<PolicyKind> {
        match name {
            "System" => Some(PolicyKind::System),
            "Custom" => Some(PolicyKind::Custom),
            _ => None,
        }
    }
}

/// A policy in force for a principal (directly or through a group).
#[derive(Debug, Clone)]
pub struct AttachedPolicy {
    pub name: String,
    pub kind: PolicyKind,
    pub document: Arc<PolicyDocument>,
}

/// Which layer of policies decided a request: AccessDeniedDetail `PolicyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PolicyLayer {
    /// The principal's attached (system/custom) policies.
    AccountLevelIdentityBasedPolicy,
    /// The inline policy of an AssumeRole session.
    SessionPolicy,
    /// A role's trust policy (AssumeRole only).
    AssumeRolePolicy,
}

impl PolicyLayer {
    pub fn name(self) -> &'static str {
        match self {
            PolicyLayer::AccountLevelIdentityBasedPolicy => "AccountLevelIdentityBasedPolicy",
            PolicyLayer::SessionPolicy => "SessionPolicy",
            PolicyLayer::AssumeRolePolicy => "AssumeRolePolicy",
        }
    }
}

/// The policy whose statement decided (an allowing or an explicitly denying one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecidingPolicy {
    pub name: String,
    /// `None` for session and trust policies, which are not stored RAM policies.
    pub kind: Option<PolicyKind>,
}

/// An evaluation result with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub outcome: Outcome,
    /// `None` for root (no policy involved).
    pub layer: Option<PolicyLayer>,
    /// The policy that allowed or explicitly denied; `None` for an implicit deny or root.
    pub deciding: Option<DecidingPolicy>,
}

impl Decision {
    fn root() -> Self {
        Decision {
            outcome: Outcome::Allow,
            layer: None,
            deciding: None,
        }
    }
}

/// One authorization question: an action on one or more resources (all must be allowed).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `<service>:<Action>`, e.g. `vpc:CreateVpnRouteEntry`.
    pub action: &'a str,
    /// Resource ARNs, or `*` where Alibaba's table says "All Resources".
    pub resources: &'a [String],
    pub context: &'a RequestContext,
}

/// A set of documents evaluated as one layer; `names[i]` describes `documents[i]`.
struct Layer<'a> {
    documents: Vec<(&'a PolicyDocument, DecidingPolicy)>,
}

impl Layer<'_> {
    /// Explicit deny on any resource beats everything; allow needs every resource allowed.
    fn evaluate(&self, request: &Request) -> (Outcome, Option<DecidingPolicy>) {
        let star = ["*".to_string()];
        let resources = if request.resources.is_empty() {
            &star[..]
        } else {
            request.resources
        };
        let mut first_allow: Option<&DecidingPolicy> = None;
        let mut all_allowed = true;
        for resource in resources {
            let mut allowed = false;
            for (doc, who) in &self.documents {
                match doc.verdict(request.action, resource, request.context) {
                    Verdict::Deny => return (Outcome::ExplicitDeny, Some(who.clone())),
                    Verdict::Allow => {
                        allowed = true;
                        first_allow.get_or_insert(who);
                    }
                    Verdict::NotApplicable => {}
                }
            }
            all_allowed &= allowed;
        }
        if all_allowed {
            (Outcome::Allow, first_allow.cloned())
        } else {
            (Outcome::ImplicitDeny, None)
        }
    }
}

/// Decides a request for a principal with the identity policies in force for it (user + groups,
/// or the role's) and, for a session, its inline policy. Cross-account ownership is not decided
/// here: the caller keeps other accounts' resources invisible whatever this says.
pub fn authorize(
    principal: &Principal,
    identity_policies: &[AttachedPolicy],
    session_policy: Option<&PolicyDocument>,
    request: &Request,
) -> Decision {
    if principal.is_root() {
        return Decision::root();
    }
    let identity = Layer {
        documents: identity_policies
            .iter()
            .map(|p| {
                (
                    &*p.document,
                    DecidingPolicy {
                        name: p.name.clone(),
                        kind: Some(p.kind),
                    },
                )
            })
            .collect(),
    };
    let session = session_policy.map(|doc| Layer {
        documents: vec![(
            doc,
            DecidingPolicy {
                name: "SessionPolicy".into(),
                kind: None,
            },
        )],
    });
    let session_result = session.as_ref().map(|s| s.evaluate(request));
    let identity_result = identity.evaluate(request);
    let denied = |layer, (outcome, deciding)| Decision {
        outcome,
        layer: Some(layer),
        deciding,
    };
    if let Some(r @ (Outcome::ExplicitDeny, _)) = session_result.clone() {
        return denied(PolicyLayer::SessionPolicy, r);
    }
    if identity_result.0 == Outcome::ExplicitDeny {
        return denied(PolicyLayer::AccountLevelIdentityBasedPolicy, identity_result);
    }
    if let Some(r @ (Outcome::ImplicitDeny, _)) = session_result {
        return denied(PolicyLayer::SessionPolicy, r);
    }
    denied(PolicyLayer::AccountLevelIdentityBasedPolicy, identity_result)
}

/// The `AccessDeniedDetail` member of a 403 body (PascalCase, as the Tea SDKs read it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessDeniedDetail {
    pub auth_action: String,
    pub auth_principal_type: String,
    pub auth_principal_owner_id: String,
    pub auth_principal_display_name: String,
    pub no_permission_type: String,
    pub policy_type: String,
    /// Base64 of a JSON note naming the deciding policy and its RAM type (our diagnostic).
    pub encoded_diagnostic_message: String,
}

impl AccessDeniedDetail {
    /// The detail for a denied decision (`None` when the decision allows).
    pub fn for_denial(principal: &Principal, action: &str, decision: &Decision) -> Option<Self> {
        if decision.outcome.is_allowed() {
            return None;
        }
        let layer = decision.layer.unwrap_or(PolicyLayer::AccountLevelIdentityBasedPolicy);
        let diagnostic = serde_json::json!({
            "AuthAction": action,
            "NoPermissionType": decision.outcome.name(),
            "PolicyType": layer.name(),
            "PolicyName": decision.deciding.as_ref().map(|d| d.name.clone()),
            "RamPolicyType": decision.deciding.as_ref().and_then(|d| d.kind).map(PolicyKind::name),
        });
        Some(AccessDeniedDetail {
            auth_action: action.to_string(),
            auth_principal_type: principal.auth_principal_type().unwrap_or("SubUser").to_string(),
            auth_principal_owner_id: principal.account_id().to_string(),
            auth_principal_display_name: principal.display_name(),
            no_permission_type: decision.outcome.name().to_string(),
            policy_type: layer.name().to_string(),
            encoded_diagnostic_message: base64::engine::general_purpose::STANDARD.encode(diagnostic.to_string()),
        })
    }
}

/// A role's `AssumeRolePolicyDocument`: who may assume the role.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustPolicy {
    document: PolicyDocument,
}

impl TrustPolicy {
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        PolicyDocument::parse_as(text, DocumentKind::Trust, MAX_POLICY_CHARS).map(|document| TrustPolicy { document })
    }

    pub fn text(&self) -> &str {
        self.document.text()
    }

    /// Does the trust policy let `caller` assume the role? A `RAM` entry names
    /// `acs:ram::<acct>:root` (any RAM user or role session of that account), a bare account
    /// id (the same), or a user/role ARN (wildcards allowed, compared ignoring case (ours)).
    /// `Service` and `Federated` entries never match a RAM user or session. The root account
    /// itself never matches (it cannot assume roles).
    pub fn decide(&self, caller: &Principal, ctx: &RequestContext) -> Outcome {
        if caller.is_root() {
            return Outcome::ImplicitDeny;
        }
        let mut allowed = false;
        for s in self.document.statements() {
            let trusted = s
                .principal
                .as_ref()
                .is_some_and(|p| p.ram.iter().any(|entry| ram_entry_names(entry, caller)));
            if trusted && s.applies("sts:AssumeRole", "*", ctx) {
                match s.effect {
                    crate::policy::Effect::Deny => return Outcome::ExplicitDeny,
                    crate::policy::Effect::Allow => allowed = true,
                }
            }
        }
        if allowed {
            Outcome::Allow
        } else {
            Outcome::ImplicitDeny
        }
    }
}

fn ram_entry_names(entry: &str, caller: &Principal) -> bool {
    let account = caller.account_id();
    if entry == account || entry.eq_ignore_ascii_case(&format!("acs:ram::{account}:root")) {
        return true;
    }
    wildcard::matches(entry, &caller.trust_arn(), Case::Insensitive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const GW1: &str = "acs:vpc:cn-hangzhou:100:vpngateway/vpn-1";
    const GW2: &str = "acs:vpc:cn-hangzhou:100:vpngateway/vpn-2";

    fn ctx() -> RequestContext {
        RequestContext::at(datetime!(2026-12-01 08:00:00 UTC))
    }

    fn user() -> Principal {
        crate::testkit::alice()
    }

    fn session() -> Principal {
        crate::testkit::session_of("Ops")
    }

    fn policy(name: &str, kind: PolicyKind, doc: serde_json::Value) -> AttachedPolicy {
        AttachedPolicy {
            name: name.into(),
            kind,
            document: Arc::new(PolicyDocument::parse(&doc.to_string()).unwrap()),
        }
    }

    fn allow(action: &str, resource: &str) -> serde_json::Value {
        json!({"Version":"1","Statement":[{"Effect":"Allow","Action":action,"Resource":resource}]})
    }

    fn deny(action: &str, resource: &str) -> serde_json::Value {
        json!({"Version":"1","Statement":[{"Effect":"Deny","Action":action,"Resource":resource}]})
    }

    fn decide(
        p: &Principal,
        policies: &[AttachedPolicy],
        session: Option<&PolicyDocument>,
        action: &str,
        resources: &[&str],
    ) -> Decision {
        let resources: Vec<String> = resources.iter().map(|s| s.to_string()).collect();
        let c = ctx();
        authorize(
            p,
            policies,
            session,
            &Request {
                action,
                resources: &resources,
                context: &c,
            },
        )
    }

    #[test]
    fn default_deny() {
        let d = decide(&user(), &[], None, "vpc:DescribeVpnGateway", &[GW1]);
        assert_eq!(d.outcome, Outcome::ImplicitDeny);
        assert_eq!(d.layer, Some(PolicyLayer::AccountLevelIdentityBasedPolicy));
        assert_eq!(d.deciding, None);
    }

    #[test]
    fn root_is_never_limited() {
        let root = Principal::Root {
            account_id: "100".into(),
        };
        let p = [policy("NoVpc", PolicyKind::Custom, deny("*", "*"))];
        assert_eq!(
            decide(&root, &p, None, "vpc:DeleteVpnGateway", &[GW1]).outcome,
            Outcome::Allow
        );
    }

    #[test]
    fn explicit_deny_wins_and_is_reported() {
        let p = [
            policy("AdministratorAccess", PolicyKind::System, allow("*", "*")),
            policy("NoDelete", PolicyKind::Custom, deny("vpc:Delete*", GW1)),
        ];
        let d = decide(&user(), &p, None, "vpc:DeleteVpnGateway", &[GW1]);
        assert_eq!(d.outcome, Outcome::ExplicitDeny);
        assert_eq!(
            d.deciding,
            Some(DecidingPolicy {
                name: "NoDelete".into(),
                kind: Some(PolicyKind::Custom)
            })
        );
        let d = decide(&user(), &p, None, "vpc:DeleteVpnGateway", &[GW2]);
        assert_eq!(d.outcome, Outcome::Allow);
        assert_eq!(
            d.deciding,
            Some(DecidingPolicy {
                name: "AdministratorAccess".into(),
                kind: Some(PolicyKind::System)
            })
        );
    }

    #[test]
    fn every_resource_must_be_allowed() {
        let p = [policy("One", PolicyKind::Custom, allow("vpc:*", GW1))];
        assert_eq!(decide(&user(), &p, None, "vpc:X", &[GW1]).outcome, Outcome::Allow);
        assert_eq!(
            decide(&user(), &p, None, "vpc:X", &[GW1, GW2]).outcome,
            Outcome::ImplicitDeny
        );
        // "All resources" is the literal `*`, granted only by a `*` (or `*`-matching) pattern.
        assert_eq!(
            decide(&user(), &p, None, "vpc:X", &["*"]).outcome,
            Outcome::ImplicitDeny
        );
        assert_eq!(decide(&user(), &p, None, "vpc:X", &[]).outcome, Outcome::ImplicitDeny);
        let any = [policy("Any", PolicyKind::Custom, allow("vpc:*", "*"))];
        assert_eq!(decide(&user(), &any, None, "vpc:X", &[]).outcome, Outcome::Allow);
    }

    #[test]
    fn session_policy_narrows_the_role() {
        let role = [policy("AliyunVPCFullAccess", PolicyKind::System, allow("vpc:*", "*"))];
        let read_only = PolicyDocument::parse(&allow("vpc:Describe*", "*").to_string()).unwrap();
        let everything = PolicyDocument::parse(&allow("*", "*").to_string()).unwrap();
        let s = session();
        assert_eq!(
            decide(&s, &role, None, "vpc:DeleteVpnGateway", &[GW1]).outcome,
            Outcome::Allow
        );
        let d = decide(&s, &role, Some(&read_only), "vpc:DeleteVpnGateway", &[GW1]);
        assert_eq!(
            (d.outcome, d.layer),
            (Outcome::ImplicitDeny, Some(PolicyLayer::SessionPolicy))
        );
        assert_eq!(
            decide(&s, &role, Some(&read_only), "vpc:DescribeVpnGateway", &[GW1]).outcome,
            Outcome::Allow
        );
        // A broad session policy does not add rights the role lacks.
        let d = decide(
            &s,
            &role,
            Some(&everything),
            "ram:CreateUser",
            &["acs:ram:*:100:user/*"],
        );
        assert_eq!(
            (d.outcome, d.layer),
            (
                Outcome::ImplicitDeny,
                Some(PolicyLayer::AccountLevelIdentityBasedPolicy)
            )
        );
        let no_delete = PolicyDocument::parse(&deny("vpc:Delete*", "*").to_string()).unwrap();
        let d = decide(&s, &role, Some(&no_delete), "vpc:DeleteVpnGateway", &[GW1]);
        assert_eq!(
            (d.outcome, d.layer),
            (Outcome::ExplicitDeny, Some(PolicyLayer::SessionPolicy))
        );
    }

    #[test]
    fn access_denied_detail() {
        let d = decide(&session(), &[], None, "vpc:CreateVpnRouteEntry", &[GW1]);
        let detail = AccessDeniedDetail::for_denial(&session(), "vpc:CreateVpnRouteEntry", &d).unwrap();
        let v = serde_json::to_value(&detail).unwrap();
        assert_eq!(v["AuthAction"], "vpc:CreateVpnRouteEntry");
        assert_eq!(v["AuthPrincipalType"], "AssumedRoleUser");
        assert_eq!(v["AuthPrincipalOwnerId"], "100");
        assert_eq!(v["AuthPrincipalDisplayName"], "Ops:ci");
        assert_eq!(v["NoPermissionType"], "ImplicitDeny");
        assert_eq!(v["PolicyType"], "AccountLevelIdentityBasedPolicy");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(detail.encoded_diagnostic_message)
            .unwrap();
        let note: serde_json::Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(note["AuthAction"], "vpc:CreateVpnRouteEntry");
        let p = [policy("NoWrites", PolicyKind::Custom, deny("vpc:Create*", "*"))];
        let d = decide(&user(), &p, None, "vpc:CreateVpnRouteEntry", &[GW1]);
        let detail = AccessDeniedDetail::for_denial(&user(), "vpc:CreateVpnRouteEntry", &d).unwrap();
        assert_eq!(detail.no_permission_type, "ExplicitDeny");
        assert_eq!(detail.auth_principal_display_name, "2001");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(detail.encoded_diagnostic_message)
            .unwrap();
        let note: serde_json::Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(note["PolicyName"], "NoWrites");
        assert_eq!(note["RamPolicyType"], "Custom");
        let ok = decide(
            &Principal::Root {
                account_id: "100".into(),
            },
            &[],
            None,
            "vpc:X",
            &[GW1],
        );
        assert!(AccessDeniedDetail::for_denial(&user(), "vpc:X", &ok).is_none());
    }

    fn trust(principal: serde_json::Value) -> TrustPolicy {
        TrustPolicy::parse(
            &json!({"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":principal}],"Version":"1"})
                .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn trust_policy_principals() {
        let c = ctx();
        let other_user = Principal::User {
            account_id: "999".into(),
            user_id: "9".into(),
            user_name: "mallory".into(),
        };
        let account = trust(json!({"RAM":["acs:ram::100:root"]}));
        assert_eq!(account.decide(&user(), &c), Outcome::Allow);
        assert_eq!(account.decide(&session(), &c), Outcome::Allow);
        assert_eq!(account.decide(&other_user, &c), Outcome::ImplicitDeny);
        assert_eq!(
            account.decide(
                &Principal::Root {
                    account_id: "100".into()
                },
                &c
            ),
            Outcome::ImplicitDeny
        );
        assert_eq!(trust(json!({"RAM":"100"})).decide(&user(), &c), Outcome::Allow);
        let alice_only = trust(json!({"RAM":"acs:ram::100:user/alice"}));
        assert_eq!(alice_only.decide(&user(), &c), Outcome::Allow);
        assert_eq!(alice_only.decide(&session(), &c), Outcome::ImplicitDeny);
        let role = trust(json!({"RAM":["acs:ram::100:role/OPS"]}));
        assert_eq!(role.decide(&session(), &c), Outcome::Allow);
        assert_eq!(role.decide(&user(), &c), Outcome::ImplicitDeny);
        let cross = trust(json!({"RAM":["acs:ram::999:root"]}));
        assert_eq!(cross.decide(&other_user, &c), Outcome::Allow);
        let service = trust(json!({"Service":["ecs.aliyuncs.com"]}));
        assert_eq!(service.decide(&user(), &c), Outcome::ImplicitDeny);
    }

    #[test]
    fn trust_policy_deny_and_conditions() {
        let c = ctx();
        let doc = json!({"Version":"1","Statement":[
            {"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"RAM":"acs:ram::100:root"},
             "Condition":{"StringEquals":{"sts:ExternalId":"abc"}}},
            {"Action":"sts:AssumeRole","Effect":"Deny","Principal":{"RAM":"acs:ram::100:user/bob"}}
        ]});
        let t = TrustPolicy::parse(&doc.to_string()).unwrap();
        assert_eq!(t.decide(&user(), &c), Outcome::ImplicitDeny);
        assert_eq!(
            t.decide(&user(), &c.clone().with("sts:ExternalId", "abc")),
            Outcome::Allow
        );
        let bob = Principal::User {
            account_id: "100".into(),
            user_id: "2".into(),
            user_name: "bob".into(),
        };
        assert_eq!(
            t.decide(&bob, &c.clone().with("sts:ExternalId", "abc")),
            Outcome::ExplicitDeny
        );
        let wrong_action = TrustPolicy::parse(
            &json!({"Version":"1","Statement":[{"Action":"sts:GetCallerIdentity","Effect":"Allow","Principal":{"RAM":"100"}}]}).to_string(),
        )
        .unwrap();
        assert_eq!(wrong_action.decide(&user(), &c), Outcome::ImplicitDeny);
        assert!(TrustPolicy::parse(&allow("*", "*").to_string()).is_err());
    }

    #[test]
    fn policy_kind_names() {
        assert_eq!(PolicyKind::from_name("System"), Some(PolicyKind::System));
        assert_eq!(PolicyKind::from_name("Custom"), Some(PolicyKind::Custom));
        assert_eq!(PolicyKind::from_name("custom"), None);
    }
}
