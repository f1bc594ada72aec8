//! Who makes a request (the root account, a RAM user, a session of an assumed role) and the
//! ARNs that name principals, RAM entities and VPC resources.
//!
//! ARN forms: principals `acs:ram::<acct>:root`, `acs:ram::<acct>:user/<name>`,
//! `acs:ram::<acct>:role/<role>` (a session: `…:role/<role>/<session>`); RAM resources
//! `acs:ram:*:<acct>:{user,group,role,policy}/<name>` (system policies under account `system`);
//! VPC resources `acs:vpc:<region>:<acct>:<type>/<id>`. Role names in ARNs are lower-cased, as in
//! every Alibaba example (`role/adminrole` for `AdminRole`) (ours).

use serde::{Deserialize, Serialize};

/// The identity a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Principal {
    /// The account itself (its own AccessKey): never limited by policies.
    Root { account_id: String },
    /// A RAM user of the account.
    User {
        account_id: String,
        user_id: String,
        user_name: String,
    },
    /// A session obtained through STS AssumeRole.
    AssumedRole {
        account_id: String,
        role_id: String,
        role_name: String,
        session_name: String,
    },
}

impl Principal {
    pub fn account_id(&self) -> &str {
        match self {
            Principal::Root { account_id }
            | Principal::User { account_id, .. }
            | Principal::AssumedRole { account_id, .. } => account_id,
        }
    }

    pub fn is_root(&self) -> bool {
        matches!(self, Principal::Root { .. })
    }

    /// The principal's ARN (GetCallerIdentity `Arn`; for a session also AssumedRoleUser.Arn).
    pub fn arn(&self) -> String {
        match self {
            Principal::Root { account_id } => format!("acs:ram::{account_id}:root"),
            Principal::User {
                account_id, user_name, ..
            } => format!("acs:ram::{account_id}:user/{user_name}"),
            Principal::AssumedRole {
                account_id,
                role_name,
                session_name,
                ..
            } => {
                format!("{}/{session_name}", role_arn(account_id, role_name))
            }
        }
    }

    /// The ARN a trust policy names this caller by: a user's ARN, or a session's role ARN.
    pub fn trust_arn(&self) -> String {
        match self {
            Principal::AssumedRole {
                account_id, role_name, ..
            } => role_arn(account_id, role_name),
            other => other.arn(),
        }
    }

    /// GetCallerIdentity `IdentityType`.
    pub fn identity_type(&self) -> &'static str {
        match self {
            Principal::Root { .. } => "Account",
            Principal::User { .. } => "RAMUser",
            Principal::AssumedRole { .. } => "AssumedRoleUser",
        }
    }

    /// GetCallerIdentity `PrincipalId`: the account or user id, or `<RoleId>:<RoleSessionName>`.
    pub fn principal_id(&self) -> String {
        match self {
            Principal::Root { account_id } => account_id.clone(),
            Principal::User { user_id, .. } => user_id.clone(),
            Principal::AssumedRole {
                role_id, session_name, ..
            } => format!("{role_id}:{session_name}"),
        }
    }

    /// AccessDeniedDetail `AuthPrincipalType` (`None` for root, which is never denied).
    pub fn auth_principal_type(&self) -> Option<&'static str> {
        match self {
            Principal::Root { .. } => None,
            Principal::User { .. } => Some("SubUser"),
            Principal::AssumedRole { .. } => Some("AssumedRoleUser"),
        }
    }

    /// AccessDeniedDetail `AuthPrincipalDisplayName`: the user's UID, or `RoleName:RoleSessionName`.
    pub fn display_name(&self) -> String {
        match self {
            Principal::Root { account_id } => account_id.clone(),
            Principal::User { user_id, .. } => user_id.clone(),
            Principal::AssumedRole {
                role_name,
                session_name,
                ..
            } => format!("{role_name}:{session_name}"),
        }
    }
}

/// `acs:ram::<acct>:role/<lower-cased name>`.
pub fn role_arn(account_id: &str, role_name: &str) -> String {
    format!("acs:ram::{account_id}:role/{}", role_name.to_lowercase())
}

/// The parts of a role ARN: `(account_id, role_name)`, the name as written in the ARN.
pub fn parse_role_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("acs:ram::")?;
    let (account, relative) = rest.split_once(':')?;
    let name = relative.strip_prefix("role/")?;
    let valid_account = !account.is_empty() && account.chars().all(|c| c.is_ascii_digit());
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    (valid_account && valid_name).then_some((account, name))
}

/// The kinds of RAM entity a RAM action is authorized on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RamEntity {
    User,
    Group,
    Role,
    Policy,
}

impl RamEntity {
    fn segment(self) -> &'static str {
        match self {
            RamEntity::User => "user",
            RamEntity::Group => "group",
            RamEntity::Role => "role",
            RamEntity::Policy => "policy",
        }
    }
}

/// `acs:ram:*:<acct>:<kind>/<name>` (`name` = `*` for Create/List calls).
pub fn ram_resource_arn(account_id: &str, entity: RamEntity, name: &str) -> String {
    format!("acs:ram:*:{account_id}:{}/{name}", entity.segment())
}

/// A system policy's resource ARN: `acs:ram:*:system:policy/<name>`.
pub fn system_policy_arn(name: &str) -> String {
    ram_resource_arn("system", RamEntity::Policy, name)
}

/// `acs:vpc:<region>:<acct>:<type>/<id>` (`id` = `*` for "all resources of the type").
pub fn vpc_resource_arn(region: &str, account_id: &str, resource_type: &str, id: &str) -> String {
    format!("acs:vpc:{region}:{account_id}:{resource_type}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Principal {
        crate::testkit::alice()
    }

    fn session() -> Principal {
        crate::testkit::session_of("AdminRole")
    }

    #[test]
    fn arns_and_identity_fields() {
        let root = Principal::Root {
            account_id: "100".into(),
        };
        assert_eq!(root.arn(), "acs:ram::100:root");
        assert_eq!(root.identity_type(), "Account");
        assert_eq!(root.auth_principal_type(), None);
        assert_eq!(user().arn(), "acs:ram::100:user/alice");
        assert_eq!(user().principal_id(), "2001");
        assert_eq!(user().display_name(), "2001");
        assert_eq!(user().auth_principal_type(), Some("SubUser"));
        assert_eq!(session().arn(), "acs:ram::100:role/adminrole/ci");
        assert_eq!(session().trust_arn(), "acs:ram::100:role/adminrole");
        assert_eq!(session().principal_id(), "3001:ci");
        assert_eq!(session().display_name(), "AdminRole:ci");
        assert_eq!(session().identity_type(), "AssumedRoleUser");
        assert_eq!(session().account_id(), "100");
    }

    #[test]
    fn role_arn_parsing() {
        assert_eq!(
            parse_role_arn("acs:ram::100:role/AdminRole"),
            Some(("100", "AdminRole"))
        );
        assert_eq!(
            parse_role_arn(&role_arn("100", "AdminRole")),
            Some(("100", "adminrole"))
        );
        for bad in [
            "",
            "acs:ram::100:user/x",
            "acs:ram::abc:role/x",
            "acs:ram:::role/x",
            "acs:ram::100:role/",
            "acs:ram::100:role/a/b",
            "acs:sts::100:role/x",
            "acs:ram::100:role/has space",
        ] {
            assert_eq!(parse_role_arn(bad), None, "{bad}");
        }
    }

    #[test]
    fn resource_arns() {
        assert_eq!(ram_resource_arn("100", RamEntity::User, "*"), "acs:ram:*:100:user/*");
        assert_eq!(
            system_policy_arn("AdministratorAccess"),
            "acs:ram:*:system:policy/AdministratorAccess"
        );
        assert_eq!(
            vpc_resource_arn("cn-hangzhou", "100", "vpngateway", "vpn-1"),
            "acs:vpc:cn-hangzhou:100:vpngateway/vpn-1"
        );
    }
}
