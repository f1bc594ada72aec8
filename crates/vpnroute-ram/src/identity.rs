//! An authenticated caller with the policies in force for it, and the checks the server makes
//! for a VPC, RAM or STS call: [`Identity::check`] answers `Ok` or the [`Denial`] to send
//! (Alibaba's 403 code and message, and the `AccessDeniedDetail`).

use serde_json::Value;
use vpnroute_domain::ApiError;

use crate::authorize::{authorize, AccessDeniedDetail, AttachedPolicy, Decision, Request};
use crate::context::RequestContext;
use crate::directory::Directory;
use crate::errors;
use crate::policy::PolicyDocument;
use crate::principal::Principal;
use crate::sts_api::Session;

/// A caller and what it may do.
#[derive(Debug, Clone)]
pub struct Identity {
    pub principal: Principal,
    pub identity_policies: Vec<AttachedPolicy>,
    pub session_policy: Option<PolicyDocument>,
}

/// Which API family a call belongs to: it decides the denial code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Vpc,
    Ram,
}

/// A refused call: the error and its `AccessDeniedDetail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub error: ApiError,
    pub detail: AccessDeniedDetail,
    pub decision: Decision,
}

impl Denial {
    /// The detail as the JSON object of the error body's `AccessDeniedDetail` member.
    pub fn detail_json(&self) -> Value {
        serde_json::to_value(&self.detail).expect("the detail serialises")
    }

    /// The 403 to answer: Alibaba's code and message with the `AccessDeniedDetail`.
    pub fn into_api_error(self) -> ApiError {
        let detail = self.detail_json();
        self.error.with_access_denied_detail(detail)
    }
}

impl Identity {
    /// The account itself.
    pub fn root(account_id: &str) -> Self {
        Identity {
            principal: Principal::Root {
                account_id: account_id.to_string(),
            },
            identity_policies: Vec::new(),
            session_policy: None,
        }
    }

    /// The RAM user a key belongs to. A key whose user is gone (never expected: DeleteUser
    /// needs the keys deleted first) is unknown: `InvalidAccessKeyId.NotFound`.
    pub fn user(account_id: &str, user_id: &str, directory: &Directory) -> Result<Self, ApiError> {
        let user = directory
            .user_by_id(user_id)
            .ok_or(ApiError::INVALID_ACCESS_KEY_NOT_FOUND)?;
        Ok(Identity {
            principal: Principal::User {
                account_id: account_id.to_string(),
                user_id: user.id.clone(),
                user_name: user.name.clone(),
            },
            identity_policies: directory.policies_for_user(&user.name),
            session_policy: None,
        })
    }

    /// A role session.
    pub fn session(session: Session) -> Self {
        Identity {
            principal: session.principal,
            identity_policies: session.identity_policies,
            session_policy: session.session_policy,
        }
    }

    /// May the caller do `action` on `resources`?
    pub fn decide(&self, action: &str, resources: &[String], ctx: &RequestContext) -> Decision {
        let request = Request {
            action,
            resources,
            context: ctx,
        };
        authorize(
            &self.principal,
            &self.identity_policies,
            self.session_policy.as_ref(),
            &request,
        )
    }

    /// `Ok` when allowed, else the denial for `service`.
    pub fn check(
        &self,
        service: Service,
        action: &str,
        resources: &[String],
        ctx: &RequestContext,
    ) -> Result<(), Box<Denial>> {
        let decision = self.decide(action, resources, ctx);
        let Some(detail) = AccessDeniedDetail::for_denial(&self.principal, action, &decision) else {
            return Ok(());
        };
        let error = match (service, &self.principal) {
            (Service::Ram, _) => errors::no_permission(),
            (Service::Vpc, Principal::AssumedRole { .. }) => errors::forbidden(),
            (Service::Vpc, _) => errors::forbidden_sub_user(),
        };
        Err(Box::new(Denial {
            error,
            detail,
            decision,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Limits, RoleFields, Target};
    use crate::sts_api::session;
    use crate::token::SessionClaims;
    use crate::PolicyKind;
    use time::macros::datetime;

    fn ctx() -> RequestContext {
        RequestContext::at(datetime!(2026-12-01 08:00:00 UTC))
    }

    const GW: &str = "acs:vpc:cn-hangzhou:100:vpngateway/vpn-1";

    #[test]
    fn users_sessions_and_root() {
        let mut d = Directory::default();
        let l = Limits::default();
        let id = crate::testkit::add_user(&mut d, "alice");
        let alice = Identity::user("100", &id, &d).unwrap();
        let res = vec![GW.to_string()];
        let denial = alice
            .check(Service::Vpc, "vpc:DescribeVpnGateway", &res, &ctx())
            .unwrap_err();
        assert_eq!(denial.error.code, "Forbbiden.SubUser");
        assert_eq!(denial.detail_json()["AuthPrincipalDisplayName"], id.as_str());
        let e = denial.into_api_error();
        assert_eq!(
            (e.status, e.access_denied_detail.unwrap()["AuthAction"].as_str()),
            (403, Some("vpc:DescribeVpnGateway"))
        );
        let denial = alice
            .check(Service::Ram, "ram:ListUsers", &["acs:ram:*:100:user/*".into()], &ctx())
            .unwrap_err();
        assert_eq!(denial.error.code, "NoPermission");
        d.attach(
            Target::User("alice"),
            PolicyKind::System,
            "AliyunVPCReadOnlyAccess",
            2,
            &l,
        )
        .unwrap();
        let alice = Identity::user("100", &id, &d).unwrap();
        assert!(alice
            .check(Service::Vpc, "vpc:DescribeVpnGateway", &res, &ctx())
            .is_ok());
        assert_eq!(
            Identity::user("100", "nope", &d).unwrap_err().code,
            "InvalidAccessKeyId.NotFound"
        );
        assert!(Identity::root("100")
            .check(Service::Vpc, "vpc:DeleteVpnGateway", &res, &ctx())
            .is_ok());

        let trust =
            r#"{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"RAM":"100"}}],"Version":"1"}"#;
        let role = d
            .create_role(
                "Ops".into(),
                RoleFields {
                    trust_policy: Some(trust.into()),
                    ..Default::default()
                },
                1,
                &l,
            )
            .unwrap()
            .id
            .clone();
        let claims = SessionClaims {
            access_key_id: "STS.x".into(),
            account_id: "100".into(),
            role_id: role,
            role_name: "Ops".into(),
            session_name: "ci".into(),
            issued_at: 0,
            expires_at: i64::MAX,
            session_policy: None,
        };
        let s = Identity::session(session(&claims, &d).unwrap());
        let denial = s
            .check(Service::Vpc, "vpc:DescribeVpnGateway", &res, &ctx())
            .unwrap_err();
        assert_eq!(denial.error.code, "Forbidden");
        assert_eq!(denial.detail.auth_principal_type, "AssumedRoleUser");
    }
}
