//! The STS API (2015-04-01): GetCallerIdentity and AssumeRole, and turning a verified session
//! token back into a principal with its policies.
//!
//! AssumeRole checks, in order: the caller is not the root account; RoleArn, RoleSessionName
//! and Policy are well formed; the role exists (in the account the ARN names); DurationSeconds
//! fits the role; the caller's policies allow `sts:AssumeRole` on
//! `acs:ram:*:<acct>:role/<lower-cased role name>` (the ARN's spelling, ours); the role's
//! trust policy trusts the caller. Explicit or implicit denial in either ⇒ `NoPermission`.

use serde_json::{json, Value};
use time::OffsetDateTime;
use vpnroute_domain::ApiError;

use crate::authorize::{authorize, AttachedPolicy, Outcome, Request, TrustPolicy};
use crate::context::{keys, RequestContext};
use crate::directory::Directory;
use crate::errors;
use crate::policy::{DocumentKind, PolicyDocument, MAX_SESSION_POLICY_CHARS};
use crate::principal::{ram_resource_arn, role_arn, Principal, RamEntity};
use crate::ram_api::Params;
use crate::sts::{self, StsParamError};
use crate::token::{self, SessionClaims, SessionRequest, TokenError, TokenKey};

pub const ACTIONS: &[&str] = &["AssumeRole", "GetCallerIdentity"];

pub fn is_action(action: &str) -> bool {
    ACTIONS.contains(&action)
}

impl From<StsParamError> for ApiError {
    fn from(e: StsParamError) -> Self {
        ApiError::new(e.code(), e.to_string(), 400)
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::new(e.code(), e.to_string(), e.http_status())
    }
}

/// GetCallerIdentity's answer (no authorization needed).
pub fn get_caller_identity(caller: &Principal) -> Value {
    let mut v = json!({
        "AccountId": caller.account_id(),
        "Arn": caller.arn(),
        "IdentityType": caller.identity_type(),
        "PrincipalId": caller.principal_id(),
    });
    match caller {
        Principal::Root { account_id } => v["UserId"] = json!(account_id),
        Principal::User { user_id, .. } => v["UserId"] = json!(user_id),
        Principal::AssumedRole { role_id, .. } => v["RoleId"] = json!(role_id),
    }
    v
}

/// The account an AssumeRole call targets (the server loads that account's directory).
pub fn assume_role_account(params: &dyn Params) -> Result<String, ApiError> {
    Ok(sts::role_arn_param(params.get("RoleArn"))?.0)
}

/// The caller's standing for AssumeRole: its identity policies and session policy.
pub struct CallerPolicies<'a> {
    pub identity: &'a [AttachedPolicy],
    pub session: Option<&'a PolicyDocument>,
}

/// AssumeRole: checks and issues the session credentials.
pub fn assume_role(
    caller: &Principal,
    policies: CallerPolicies,
    role_directory: &Directory,
    params: &dyn Params,
    key: &TokenKey,
    ctx: &RequestContext,
    now: OffsetDateTime,
) -> Result<Value, ApiError> {
    if caller.is_root() {
        return Err(errors::root_cannot_assume());
    }
    let (account, role_name) = sts::role_arn_param(params.get("RoleArn"))?;
    let session_name = sts::session_name_param(params.get("RoleSessionName"))?;
    let session_policy = sts::session_policy_param(params.get("Policy"))?;
    let role = role_directory
        .role(&role_name)
        .map_err(|_| errors::sts_role_not_exist())?;
    let duration = sts::duration_param(params.get("DurationSeconds"), role.max_session_duration)?;
    let mut ctx = ctx.clone();
    if let Some(external_id) = params.get("ExternalId").filter(|v| !v.is_empty()) {
        ctx = ctx.with(keys::EXTERNAL_ID, external_id);
    }
    let resource = vec![ram_resource_arn(&account, RamEntity::Role, &role.name.to_lowercase())];
    let request = Request {
        action: "sts:AssumeRole",
        resources: &resource,
        context: &ctx,
    };
    let allowed = authorize(caller, policies.identity, policies.session, &request)
        .outcome
        .is_allowed();
    let trust = TrustPolicy::parse(&role.trust_policy)
        .map(|t| t.decide(caller, &ctx))
        .unwrap_or(Outcome::ImplicitDeny);
    if !allowed || !trust.is_allowed() {
        return Err(errors::sts_no_permission());
    }
    Ok(issue_session(
        key,
        SessionRequest {
            account_id: account,
            role_id: role.id.clone(),
            role_name: role.name.clone(),
            session_name,
            session_policy: session_policy.map(|p| p.text().to_string()),
            duration_seconds: duration,
        },
        now,
    ))
}

/// Issues a session and answers as AssumeRole does (`Credentials`, `AssumedRoleUser`); also
/// what `vpnroute admin sts assume` prints.
pub fn issue_session(key: &TokenKey, request: SessionRequest, now: OffsetDateTime) -> Value {
    let (creds, claims) = token::issue(key, request, now);
    json!({
        "Credentials": {
            "AccessKeyId": creds.access_key_id,
            "AccessKeySecret": creds.access_key_secret,
            "SecurityToken": creds.security_token,
            "Expiration": creds.expiration,
        },
        "AssumedRoleUser": {
            "Arn": format!("{}/{}", role_arn(&claims.account_id, &claims.role_name), claims.session_name),
            "AssumedRoleId": format!("{}:{}", claims.role_id, claims.session_name),
        },
    })
}

/// A verified session as the authorizer needs it.
pub struct Session {
    pub principal: Principal,
    pub identity_policies: Vec<AttachedPolicy>,
    pub session_policy: Option<PolicyDocument>,
}

/// The principal and policies of a verified token. The role must still exist with the id
/// the token names: a deleted (or deleted and re-created) role voids its sessions, answered
/// as an expired token (ours).
pub fn session(claims: &SessionClaims, role_directory: &Directory) -> Result<Session, ApiError> {
    let role = role_directory
        .role(&claims.role_name)
        .ok()
        .filter(|r| r.id == claims.role_id)
        .ok_or(TokenError::Expired)?;
    let session_policy = claims
        .session_policy
        .as_deref()
        .map(|text| PolicyDocument::parse_as(text, DocumentKind::Identity, MAX_SESSION_POLICY_CHARS))
        .transpose()
        .map_err(|_| TokenError::Malformed)?;
    Ok(Session {
        principal: Principal::AssumedRole {
            account_id: claims.account_id.clone(),
            role_id: role.id.clone(),
            role_name: role.name.clone(),
            session_name: claims.session_name.clone(),
        },
        identity_policies: role_directory.policies_for_role(&role.name),
        session_policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Limits, RoleFields, Target};
    use crate::PolicyKind;
    use std::collections::BTreeMap;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 08:00:00 UTC);
    const TRUST: &str = r#"{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"RAM":["acs:ram::100:root"]}}],"Version":"1"}"#;

    fn setup() -> (Directory, Principal) {
        let mut d = Directory::default();
        let l = Limits::default();
        let u = crate::testkit::add_user(&mut d, "alice");
        d.create_role(
            "Ops".into(),
            RoleFields {
                trust_policy: Some(TRUST.into()),
                max_session_duration: Some(7200),
                ..Default::default()
            },
            1,
            &l,
        )
        .unwrap();
        d.attach(Target::Role("Ops"), PolicyKind::System, "AliyunVPCFullAccess", 1, &l)
            .unwrap();
        d.attach(
            Target::User("alice"),
            PolicyKind::System,
            "AliyunSTSAssumeRoleAccess",
            1,
            &l,
        )
        .unwrap();
        (
            d,
            Principal::User {
                account_id: "100".into(),
                user_id: u,
                user_name: "alice".into(),
            },
        )
    }

    fn params(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn assume(d: &Directory, caller: &Principal, p: &[(&str, &str)]) -> Result<Value, ApiError> {
        let policies = d.policies_for_user("alice");
        let key = TokenKey::from_hex(&"11".repeat(32)).unwrap();
        let ctx = RequestContext::at(NOW);
        assume_role(
            caller,
            CallerPolicies {
                identity: &policies,
                session: None,
            },
            d,
            &params(p),
            &key,
            &ctx,
            NOW,
        )
    }

    #[test]
    fn assume_and_use_a_role() {
        let (d, alice) = setup();
        let policy = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"vpc:Describe*","Resource":"*"}]}"#;
        let v = assume(
            &d,
            &alice,
            &[
                ("RoleArn", "acs:ram::100:role/ops"),
                ("RoleSessionName", "ci"),
                ("DurationSeconds", "7200"),
                ("Policy", policy),
            ],
        )
        .unwrap();
        assert_eq!(v["Credentials"]["Expiration"], "2026-12-01T10:00:00Z");
        assert_eq!(v["AssumedRoleUser"]["Arn"], "acs:ram::100:role/ops/ci");
        let ak = v["Credentials"]["AccessKeyId"].as_str().unwrap();
        let token = v["Credentials"]["SecurityToken"].as_str().unwrap();
        let key = TokenKey::from_hex(&"11".repeat(32)).unwrap();
        let verified = token::verify(&key, ak, Some(token), NOW).unwrap();
        assert_eq!(verified.access_key_secret, v["Credentials"]["AccessKeySecret"]);
        let s = session(&verified.claims, &d).unwrap();
        assert_eq!(s.principal.arn(), "acs:ram::100:role/ops/ci");
        assert_eq!(s.identity_policies.len(), 1);
        assert_eq!(s.session_policy.unwrap().text(), policy);
        assert_eq!(get_caller_identity(&s.principal)["IdentityType"], "AssumedRoleUser");
        // A deleted role voids the session.
        let mut gone = d.clone();
        gone.detach(Target::Role("Ops"), PolicyKind::System, "AliyunVPCFullAccess")
            .unwrap();
        gone.delete_role("Ops").unwrap();
        assert_eq!(
            session(&verified.claims, &gone).err().unwrap().code,
            "InvalidSecurityToken.Expired"
        );
    }

    #[test]
    fn refusals() {
        let (d, alice) = setup();
        let ok = [("RoleArn", "acs:ram::100:role/Ops"), ("RoleSessionName", "ci")];
        assert!(assume(&d, &alice, &ok).is_ok());
        let root = Principal::Root {
            account_id: "100".into(),
        };
        assert_eq!(
            assume(&d, &root, &ok).unwrap_err().message,
            "Roles may not be assumed by root accounts."
        );
        let code = |p: &[(&str, &str)]| assume(&d, &alice, p).unwrap_err().code.into_owned();
        assert_eq!(code(&[("RoleSessionName", "ci")]), "MissingParameter.RoleArn");
        assert_eq!(
            code(&[("RoleArn", "nope"), ("RoleSessionName", "ci")]),
            "InvalidParameter.RoleArn"
        );
        assert_eq!(
            code(&[("RoleArn", "acs:ram::100:role/Ops")]),
            "MissingParameter.RoleSessionName"
        );
        assert_eq!(
            code(&[("RoleArn", "acs:ram::100:role/Ops"), ("RoleSessionName", "c")]),
            "InvalidParameter.RoleSessionName"
        );
        assert_eq!(
            code(&[("RoleArn", "acs:ram::100:role/Nope"), ("RoleSessionName", "ci")]),
            "EntityNotExist.Role"
        );
        assert_eq!(
            code(&[ok[0], ok[1], ("DurationSeconds", "7201")]),
            "InvalidParameter.DurationSeconds"
        );
        assert_eq!(
            code(&[ok[0], ok[1], ("Policy", "{}")]),
            "InvalidParameter.PolicyGrammar"
        );
        // Without sts:AssumeRole permission.
        let mut d2 = d.clone();
        d2.detach(Target::User("alice"), PolicyKind::System, "AliyunSTSAssumeRoleAccess")
            .unwrap();
        assert_eq!(assume(&d2, &alice, &ok).unwrap_err().code, "NoPermission");
        // Not trusted.
        let mut d3 = d.clone();
        let untrusting = r#"{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"RAM":["acs:ram::100:user/bob"]}}],"Version":"1"}"#;
        d3.update_role(
            "Ops",
            RoleFields {
                trust_policy: Some(untrusting.into()),
                ..Default::default()
            },
            2,
        )
        .unwrap();
        assert_eq!(assume(&d3, &alice, &ok).unwrap_err().status, 403);
    }

    #[test]
    fn caller_identity_shapes() {
        let root = get_caller_identity(&Principal::Root {
            account_id: "100".into(),
        });
        assert_eq!(
            (
                root["Arn"].as_str(),
                root["IdentityType"].as_str(),
                root["UserId"].as_str()
            ),
            (Some("acs:ram::100:root"), Some("Account"), Some("100"))
        );
        let user = get_caller_identity(&Principal::User {
            account_id: "100".into(),
            user_id: "7".into(),
            user_name: "a".into(),
        });
        assert_eq!(
            (user["Arn"].as_str(), user["PrincipalId"].as_str()),
            (Some("acs:ram::100:user/a"), Some("7"))
        );
        assert_eq!(
            assume_role_account(&params(&[("RoleArn", "acs:ram::555:role/x")])).unwrap(),
            "555"
        );
    }
}
