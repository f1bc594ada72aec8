//! The system policies vpnroute ships (RAM `PolicyType` `System`), as documents.
//!
//! Alibaba's own documents list many more services; these keep the parts that name actions
//! vpnroute serves (`vpc:`, `ram:`, `sts:`). `AliyunVPCReadOnlyAccess` grants `vpc:Describe*`,
//! `vpc:List*`, `vpc:Get*` and `vpc:Check*` (ours; Alibaba's v9 lists individual actions).

use std::sync::{Arc, OnceLock};

use crate::authorize::{AttachedPolicy, PolicyKind};
use crate::policy::PolicyDocument;

/// One system policy.
#[derive(Debug)]
pub struct SystemPolicy {
    pub name: &'static str,
    pub description: &'static str,
    /// Alibaba's `DefaultVersion` (system policies have one version here).
    pub default_version: &'static str,
    pub document_text: &'static str,
}

pub const SYSTEM_POLICIES: &[SystemPolicy] = &[
    SystemPolicy {
        name: "AdministratorAccess",
        description: "Provides full access to Alibaba Cloud services and resources.",
        default_version: "v1",
        document_text: r#"{"Statement":[{"Action":"*","Effect":"Allow","Resource":"*"}],"Version":"1"}"#,
    },
    SystemPolicy {
        name: "AliyunVPCFullAccess",
        description: "Provides full access to Virtual Private Cloud (VPC) via Resource Access Management (RAM).",
        default_version: "v1",
        document_text: r#"{"Statement":[{"Action":"vpc:*","Effect":"Allow","Resource":"*"}],"Version":"1"}"#,
    },
    SystemPolicy {
        name: "AliyunVPCReadOnlyAccess",
        description: "Provides read-only access to Virtual Private Cloud (VPC) via Resource Access Management (RAM).",
        default_version: "v1",
        document_text: r#"{"Statement":[{"Action":["vpc:Describe*","vpc:List*","vpc:Get*","vpc:Check*"],"Effect":"Allow","Resource":"*"}],"Version":"1"}"#,
    },
    SystemPolicy {
        name: "AliyunSTSAssumeRoleAccess",
        description: "Provides access to assume RAM roles via Security Token Service (STS).",
        default_version: "v1",
        document_text: r#"{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Resource":"*"}],"Version":"1"}"#,
    },
    SystemPolicy {
        name: "AliyunRAMFullAccess",
        description: "Provides full access to Resource Access Management (RAM).",
        default_version: "v1",
        document_text: r#"{"Statement":[{"Action":"ram:*","Effect":"Allow","Resource":"*"}],"Version":"1"}"#,
    },
    SystemPolicy {
        name: "AliyunRAMReadOnlyAccess",
        description: "Provides read-only access to Resource Access Management (RAM).",
        default_version: "v1",
        document_text: r#"{"Statement":[{"Action":["ram:Get*","ram:List*"],"Effect":"Allow","Resource":"*"}],"Version":"1"}"#,
    },
];

/// The system policy of that name (exact case).
pub fn find(name: &str) -> Option<&'static SystemPolicy> {
    SYSTEM_POLICIES.iter().find(|p| p.name == name)
}

/// The parsed document of a system policy, parsed once per process.
pub fn document(name: &str) -> Option<Arc<PolicyDocument>> {
    static PARSED: OnceLock<Vec<Arc<PolicyDocument>>> = OnceLock::new();
    let parsed = PARSED.get_or_init(|| {
        SYSTEM_POLICIES
            .iter()
            .map(|p| Arc::new(PolicyDocument::parse(p.document_text).expect("system policies are valid")))
            .collect()
    });
    SYSTEM_POLICIES
        .iter()
        .position(|p| p.name == name)
        .map(|i| parsed[i].clone())
}

/// A system policy ready for evaluation.
pub fn attached(name: &str) -> Option<AttachedPolicy> {
    document(name).map(|document| AttachedPolicy {
        name: name.to_string(),
        kind: PolicyKind::System,
        document,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::{authorize, Outcome, Request};
    use crate::context::RequestContext;
    use crate::principal::Principal;
    use time::macros::datetime;

    fn outcome(policy: &str, action: &str) -> Outcome {
        let user = Principal::User {
            account_id: "1".into(),
            user_id: "2".into(),
            user_name: "u".into(),
        };
        let ctx = RequestContext::at(datetime!(2026-12-01 08:00:00 UTC));
        let resources = vec!["acs:vpc:cn-hangzhou:1:vpngateway/vpn-1".to_string()];
        authorize(
            &user,
            &[attached(policy).unwrap()],
            None,
            &Request {
                action,
                resources: &resources,
                context: &ctx,
            },
        )
        .outcome
    }

    #[test]
    fn every_system_policy_parses() {
        for p in SYSTEM_POLICIES {
            assert!(document(p.name).is_some(), "{}", p.name);
            assert_eq!(document(p.name).unwrap().text(), p.document_text);
        }
        assert!(find("AdministratorAccess").is_some());
        assert!(find("administratoraccess").is_none());
        assert!(attached("Nope").is_none());
    }

    #[test]
    fn what_each_grants() {
        assert_eq!(outcome("AdministratorAccess", "vpc:DeleteVpnGateway"), Outcome::Allow);
        assert_eq!(outcome("AdministratorAccess", "ram:CreateUser"), Outcome::Allow);
        assert_eq!(
            outcome("AliyunVPCFullAccess", "vpc:CreateVpnPbrRouteEntry"),
            Outcome::Allow
        );
        assert_eq!(outcome("AliyunVPCFullAccess", "ram:CreateUser"), Outcome::ImplicitDeny);
        assert_eq!(
            outcome("AliyunVPCReadOnlyAccess", "vpc:DescribeVpnRouteEntries"),
            Outcome::Allow
        );
        assert_eq!(
            outcome("AliyunVPCReadOnlyAccess", "vpc:describevpngateways"),
            Outcome::Allow
        );
        assert_eq!(
            outcome("AliyunVPCReadOnlyAccess", "vpc:CreateVpnRouteEntry"),
            Outcome::ImplicitDeny
        );
        assert_eq!(
            outcome("AliyunVPCReadOnlyAccess", "vpc:ModifyVpnRouteEntryWeight"),
            Outcome::ImplicitDeny
        );
        assert_eq!(outcome("AliyunSTSAssumeRoleAccess", "sts:AssumeRole"), Outcome::Allow);
        assert_eq!(
            outcome("AliyunSTSAssumeRoleAccess", "vpc:DescribeVpnGateway"),
            Outcome::ImplicitDeny
        );
        assert_eq!(outcome("AliyunRAMReadOnlyAccess", "ram:ListUsers"), Outcome::Allow);
        assert_eq!(
            outcome("AliyunRAMReadOnlyAccess", "ram:CreateUser"),
            Outcome::ImplicitDeny
        );
    }
}
