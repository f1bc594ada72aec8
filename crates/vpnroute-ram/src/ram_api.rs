//! The RAM API (2015-05-01): each action's parameters (validated, with RAM's error codes), the
//! RAM permission it needs (`ram:<Action>` on `acs:ram:*:<acct>:<kind>/<name>`), and its
//! answer (PascalCase JSON in the shapes of the RAM SDK models, without `RequestId`).
//!
//! The server supplies the parameters, the caller, the account's [`Directory`] and its RAM
//! users' access keys ([`UserKeys`]); it stores the directory back when [`mutates`] says so.

use serde_json::{json, Map, Value};
use vpnroute_domain::ApiError;

use crate::authorize::PolicyKind;
use crate::directory::{
    Directory, Group, Limits, Page, PolicyVersion, PolicyView, Role, RoleFields, RotateStrategy, Target, User,
    UserFields,
};
use crate::errors;
use crate::principal::{ram_resource_arn, role_arn, system_policy_arn, Principal, RamEntity};
use crate::sts::MAX_SESSION_DURATION_RANGE;
use crate::token::format_iso8601;

/// Request parameters by name.
pub trait Params {
    fn get(&self, name: &str) -> Option<&str>;
}

impl<S: std::hash::BuildHasher> Params for std::collections::HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::HashMap::get(self, name).map(String::as_str)
    }
}

/// Alibaba parameters in wire order; the first non-empty occurrence wins (as for VPC calls).
#[derive(Debug, Clone, Copy)]
pub struct WireParams<'a>(pub &'a [(String, String)]);

impl Params for WireParams<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

impl Params for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::BTreeMap::get(self, name).map(String::as_str)
    }
}

/// One access key of a RAM user, as the key store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: String,
    /// Only when just created.
    pub secret: Option<String>,
    /// `Active` or `Inactive`.
    pub status: String,
    /// Unix seconds.
    pub created: i64,
}

/// The RAM users' access keys (kept by the server with every other key).
pub trait UserKeys {
    fn list(&mut self, user_id: &str) -> Result<Vec<KeyInfo>, ApiError>;
    fn create(&mut self, user_id: &str, now: i64) -> Result<KeyInfo, ApiError>;
    /// `Ok(false)` when the user has no such key.
    fn set_status(&mut self, user_id: &str, key_id: &str, status: &str) -> Result<bool, ApiError>;
    /// `Ok(false)` when the user has no such key.
    fn delete(&mut self, user_id: &str, key_id: &str) -> Result<bool, ApiError>;
}

/// Every RAM action served.
pub const ACTIONS: &[&str] = &[
    "CreateUser",
    "GetUser",
    "UpdateUser",
    "DeleteUser",
    "ListUsers",
    "CreateAccessKey",
    "ListAccessKeys",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "CreateGroup",
    "GetGroup",
    "UpdateGroup",
    "DeleteGroup",
    "ListGroups",
    "AddUserToGroup",
    "RemoveUserFromGroup",
    "ListGroupsForUser",
    "ListUsersForGroup",
    "CreatePolicy",
    "GetPolicy",
    "ListPolicies",
    "UpdatePolicyDescription",
    "DeletePolicy",
    "CreatePolicyVersion",
    "GetPolicyVersion",
    "ListPolicyVersions",
    "SetDefaultPolicyVersion",
    "DeletePolicyVersion",
    "CreateRole",
    "GetRole",
    "UpdateRole",
    "DeleteRole",
    "ListRoles",
    "AttachPolicyToUser",
    "DetachPolicyFromUser",
    "ListPoliciesForUser",
    "AttachPolicyToGroup",
    "DetachPolicyFromGroup",
    "ListPoliciesForGroup",
    "AttachPolicyToRole",
    "DetachPolicyFromRole",
    "ListPoliciesForRole",
    "ListEntitiesForPolicy",
];

pub fn is_action(action: &str) -> bool {
    ACTIONS.contains(&action)
}

/// Does the action change the directory or keys (so it runs in a write transaction)?
pub fn mutates(action: &str) -> bool {
    !(action.starts_with("Get") || action.starts_with("List"))
}

/// One RAM call.
pub struct Call<'a> {
    pub action: &'a str,
    pub params: &'a dyn Params,
    pub caller: &'a Principal,
    /// Unix seconds.
    pub now: i64,
    pub limits: &'a Limits,
}

impl Call<'_> {
    fn opt(&self, name: &str) -> Option<&str> {
        self.params.get(name).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.opt(name).ok_or_else(|| errors::missing(name))
    }

    fn account(&self) -> &str {
        self.caller.account_id()
    }

    /// UserName, or for a RAM user calling about its own keys, its own name.
    fn key_owner(&self) -> Result<String, ApiError> {
        match (self.opt("UserName"), self.caller) {
            (Some(n), _) => name_param("UserName", n, 64, is_user_char).map(str::to_string),
            (None, Principal::User { user_name, .. }) => Ok(user_name.clone()),
            (None, _) => Err(errors::missing("UserName")),
        }
    }

    fn user_name(&self) -> Result<&str, ApiError> {
        name_param("UserName", self.required("UserName")?, 64, is_user_char)
    }

    fn group_name(&self) -> Result<&str, ApiError> {
        name_param("GroupName", self.required("GroupName")?, 64, is_user_char)
    }

    fn role_name(&self) -> Result<&str, ApiError> {
        name_param("RoleName", self.required("RoleName")?, 64, is_role_char)
    }

    fn policy_name(&self) -> Result<&str, ApiError> {
        name_param("PolicyName", self.required("PolicyName")?, 128, is_policy_char)
    }

    fn policy_type(&self) -> Result<PolicyKind, ApiError> {
        PolicyKind::from_name(self.required("PolicyType")?).ok_or_else(errors::invalid_policy_type)
    }

    fn policy_type_opt(&self) -> Result<Option<PolicyKind>, ApiError> {
        self.opt("PolicyType")
            .map(|t| PolicyKind::from_name(t).ok_or_else(errors::invalid_policy_type))
            .transpose()
    }

    fn text(&self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.params.get(name) {
            None => Ok(None),
            Some(v) if v.chars().count() > max => Err(errors::invalid_length(name)),
            Some(v) => Ok(Some(v.to_string())),
        }
    }

    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.opt(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(errors::invalid_format(name)),
        }
    }

    fn paging(&self, max_allowed: usize) -> Result<(Option<&str>, usize), ApiError> {
        let max = match self.opt("MaxItems") {
            None => 100.min(max_allowed),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max_allowed).contains(n))
                .ok_or_else(|| errors::invalid_format("MaxItems"))?,
        };
        Ok((self.opt("Marker"), max))
    }

    fn user_fields(&self, prefix: &str) -> Result<UserFields, ApiError> {
        let p = |n: &str| format!("{prefix}{n}");
        let name = match self.opt(&p("UserName")) {
            Some(n) => Some(name_param(&p("UserName"), n, 64, is_user_char)?.to_string()),
            None => None,
        };
        let display_name = self.text(&p("DisplayName"), 128)?;
        let mobile_phone = self.text(&p("MobilePhone"), 32)?;
        if let Some(m) = mobile_phone.as_deref().filter(|m| !m.is_empty()) {
            if !valid_phone(m) {
                return Err(errors::invalid_format(&p("MobilePhone")));
            }
        }
        let email = self.text(&p("Email"), 128)?;
        if let Some(e) = email.as_deref().filter(|e| !e.is_empty()) {
            if !valid_email(e) {
                return Err(errors::invalid_format(&p("Email")));
            }
        }
        let comments = self.text(&p("Comments"), 128)?;
        Ok(UserFields {
            name,
            display_name,
            mobile_phone,
            email,
            comments,
        })
    }

    fn role_fields(&self, prefix: &str) -> Result<RoleFields, ApiError> {
        let p = |n: &str| format!("{prefix}{n}");
        let max_session_duration = match self.opt(&p("MaxSessionDuration")) {
            None => None,
            Some(v) => Some(
                v.parse::<u32>()
                    .ok()
                    .filter(|d| MAX_SESSION_DURATION_RANGE.contains(d))
                    .ok_or_else(|| errors::invalid_format(&p("MaxSessionDuration")))?,
            ),
        };
        Ok(RoleFields {
            trust_policy: self.opt(&p("AssumeRolePolicyDocument")).map(str::to_string),
            description: self.text(&p("Description"), 1024)?,
            max_session_duration,
        })
    }
}

fn is_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')
}

fn is_role_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-')
}

fn is_policy_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

fn name_param<'v>(param: &str, value: &'v str, max: usize, allowed: fn(char) -> bool) -> Result<&'v str, ApiError> {
    if value.is_empty() || value.chars().count() > max {
        return Err(errors::invalid_length(param));
    }
    if !value.chars().all(allowed) {
        return Err(errors::invalid_chars(param));
    }
    Ok(value)
}

/// `<country code>-<number>`, e.g. `86-18688888888`.
fn valid_phone(m: &str) -> bool {
    m.split_once('-').is_some_and(|(cc, n)| {
        (1..=4).contains(&cc.len())
            && (4..=20).contains(&n.len())
            && cc.bytes().chain(n.bytes()).all(|b| b.is_ascii_digit())
    })
}

fn valid_email(e: &str) -> bool {
    e.split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.contains('@'))
}

/// The RAM permission a call needs: `(ram:<Action>, resource ARNs)`. Validates the names it
/// reads, so a malformed call fails with its parameter error before authorization.
pub fn permission(call: &Call) -> Result<(String, Vec<String>), ApiError> {
    let acct = call.account();
    let arn = |kind, name: &str| ram_resource_arn(acct, kind, name);
    let policy_arn = |kind: PolicyKind, name: &str| match kind {
        PolicyKind::System => system_policy_arn(name),
        PolicyKind::Custom => ram_resource_arn(acct, RamEntity::Policy, name),
    };
    let resources = match call.action {
        "CreateUser" | "ListUsers" => vec![arn(RamEntity::User, "*")],
        "GetUser" | "UpdateUser" | "DeleteUser" | "ListGroupsForUser" | "ListPoliciesForUser" => {
            vec![arn(RamEntity::User, call.user_name()?)]
        }
        "CreateAccessKey" | "ListAccessKeys" | "UpdateAccessKey" | "DeleteAccessKey" => {
            vec![arn(RamEntity::User, &call.key_owner()?)]
        }
        "CreateGroup" | "ListGroups" => vec![arn(RamEntity::Group, "*")],
        "GetGroup" | "UpdateGroup" | "DeleteGroup" | "ListUsersForGroup" | "ListPoliciesForGroup" => {
            vec![arn(RamEntity::Group, call.group_name()?)]
        }
        "AddUserToGroup" | "RemoveUserFromGroup" => {
            vec![
                arn(RamEntity::User, call.user_name()?),
                arn(RamEntity::Group, call.group_name()?),
            ]
        }
        "CreatePolicy" | "ListPolicies" => vec![arn(RamEntity::Policy, "*")],
        "GetPolicy" | "GetPolicyVersion" | "ListPolicyVersions" | "ListEntitiesForPolicy" => {
            vec![policy_arn(call.policy_type()?, call.policy_name()?)]
        }
        "UpdatePolicyDescription"
        | "DeletePolicy"
        | "CreatePolicyVersion"
        | "SetDefaultPolicyVersion"
        | "DeletePolicyVersion" => vec![policy_arn(PolicyKind::Custom, call.policy_name()?)],
        "CreateRole" | "ListRoles" => vec![arn(RamEntity::Role, "*")],
        "GetRole" | "UpdateRole" | "DeleteRole" | "ListPoliciesForRole" => {
            vec![arn(RamEntity::Role, call.role_name()?)]
        }
        "AttachPolicyToUser" | "DetachPolicyFromUser" => vec![
            policy_arn(call.policy_type()?, call.policy_name()?),
            arn(RamEntity::User, call.user_name()?),
        ],
        "AttachPolicyToGroup" | "DetachPolicyFromGroup" => vec![
            policy_arn(call.policy_type()?, call.policy_name()?),
            arn(RamEntity::Group, call.group_name()?),
        ],
        "AttachPolicyToRole" | "DetachPolicyFromRole" => vec![
            policy_arn(call.policy_type()?, call.policy_name()?),
            arn(RamEntity::Role, call.role_name()?),
        ],
        other => {
            return Err(ApiError::new(
                "InvalidAction.NotFound",
                format!("Specified api {other} is not found."),
                404,
            ))
        }
    };
    Ok((format!("ram:{}", call.action), resources))
}

fn unknown_action(action: &str) -> ApiError {
    ApiError::new(
        "InvalidAction.NotFound",
        format!("Specified api {action} is not found."),
        404,
    )
}

fn date(t: i64) -> Value {
    let t = time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Value::String(format_iso8601(t))
}

fn user_json(u: &User) -> Value {
    json!({
        "UserId": u.id, "UserName": u.name, "DisplayName": u.display_name, "MobilePhone": u.mobile_phone,
        "Email": u.email, "Comments": u.comments, "CreateDate": date(u.created), "UpdateDate": date(u.updated),
    })
}

fn group_json(g: &Group) -> Value {
    json!({"GroupId": g.id, "GroupName": g.name, "Comments": g.comments, "CreateDate": date(g.created), "UpdateDate": date(g.updated)})
}

fn policy_json(p: &PolicyView) -> Value {
    json!({
        "PolicyName": p.name, "PolicyType": p.kind.name(), "Description": p.description,
        "DefaultVersion": p.default_version, "CreateDate": date(p.created), "UpdateDate": date(p.updated),
        "AttachmentCount": p.attachment_count,
    })
}

fn version_json(v: &PolicyVersion, is_default: bool) -> Value {
    json!({"VersionId": v.id, "IsDefaultVersion": is_default, "PolicyDocument": v.document, "CreateDate": date(v.created)})
}

fn role_json(r: &Role, account: &str) -> Value {
    json!({
        "RoleId": r.id, "RoleName": r.name, "Arn": role_arn(account, &r.name), "Description": r.description,
        "AssumeRolePolicyDocument": r.trust_policy, "MaxSessionDuration": r.max_session_duration,
        "CreateDate": date(r.created), "UpdateDate": date(r.updated),
    })
}

fn key_json(k: &KeyInfo) -> Value {
    let mut m = Map::new();
    m.insert("AccessKeyId".into(), json!(k.id));
    if let Some(s) = &k.secret {
        m.insert("AccessKeySecret".into(), json!(s));
    }
    m.insert("Status".into(), json!(k.status));
    m.insert("CreateDate".into(), date(k.created));
    Value::Object(m)
}

/// `{IsTruncated, Marker?, <outer>: {<inner>: [...]}}`.
fn paged<T>(outer: &str, inner: &str, page: Page<T>, render: impl Fn(T) -> Value) -> Value {
    let mut m = Map::new();
    m.insert("IsTruncated".into(), json!(page.next_marker.is_some()));
    if let Some(marker) = page.next_marker {
        m.insert("Marker".into(), json!(marker));
    }
    let items: Vec<Value> = page.items.into_iter().map(render).collect();
    m.insert(outer.into(), json!({ inner: items }));
    Value::Object(m)
}

fn wrapped(outer: &str, inner: &str, items: Vec<Value>) -> Value {
    json!({ outer: { inner: items } })
}

fn empty() -> Value {
    Value::Object(Map::new())
}

fn attachments_json(dir: &Directory, target: Target) -> Result<Value, ApiError> {
    let items = dir
        .attachments(target)?
        .iter()
        .filter_map(|a| {
            let p = dir.policy(a.kind, &a.name).ok()?;
            Some(json!({
                "PolicyName": p.name, "PolicyType": p.kind.name(), "Description": p.description,
                "DefaultVersion": p.default_version, "AttachDate": date(a.attached),
            }))
        })
        .collect();
    Ok(wrapped("Policies", "Policy", items))
}

/// Runs a RAM call against the account's directory and its users' keys.
pub fn handle(call: &Call, dir: &mut Directory, keys: &mut dyn UserKeys) -> Result<Value, ApiError> {
    let now = call.now;
    let limits = call.limits;
    let account = call.account().to_string();
    Ok(match call.action {
        "CreateUser" => {
            call.user_name()?;
            let fields = call.user_fields("")?;
            json!({"User": user_json(dir.create_user(fields, now, limits)?)})
        }
        "GetUser" => json!({"User": user_json(dir.user(call.user_name()?)?)}),
        "UpdateUser" => {
            let name = call.user_name()?;
            let fields = call.user_fields("New")?;
            json!({"User": user_json(dir.update_user(name, fields, now)?)})
        }
        "DeleteUser" => {
            let id = dir.user(call.user_name()?)?.id.clone();
            let has_keys = !keys.list(&id)?.is_empty();
            dir.delete_user(call.user_name()?, has_keys)?;
            empty()
        }
        "ListUsers" => {
            let (marker, max) = call.paging(1000)?;
            paged("Users", "User", dir.list_users(marker, max), user_json)
        }
        "CreateAccessKey" => {
            let id = dir.user(&call.key_owner()?)?.id.clone();
            if keys.list(&id)?.len() >= limits.access_keys_per_user {
                return Err(errors::limit_exceeded("User.AccessKey"));
            }
            json!({"AccessKey": key_json(&keys.create(&id, now)?)})
        }
        "ListAccessKeys" => {
            let id = dir.user(&call.key_owner()?)?.id.clone();
            let items = keys
                .list(&id)?
                .iter()
                .map(|k| {
                    key_json(&KeyInfo {
                        secret: None,
                        ..k.clone()
                    })
                })
                .collect();
            wrapped("AccessKeys", "AccessKey", items)
        }
        "UpdateAccessKey" => {
            let id = dir.user(&call.key_owner()?)?.id.clone();
            let key_id = call.required("UserAccessKeyId")?;
            let status = call.required("Status")?;
            if status != "Active" && status != "Inactive" {
                return Err(errors::invalid_format("Status"));
            }
            if !keys.set_status(&id, key_id, status)? {
                return Err(errors::access_key_not_exist());
            }
            empty()
        }
        "DeleteAccessKey" => {
            let id = dir.user(&call.key_owner()?)?.id.clone();
            if !keys.delete(&id, call.required("UserAccessKeyId")?)? {
                return Err(errors::access_key_not_exist());
            }
            empty()
        }
        "CreateGroup" => {
            let name = call.group_name()?.to_string();
            let comments = call.text("Comments", 128)?;
            json!({"Group": group_json(dir.create_group(name, comments, now, limits)?)})
        }
        "GetGroup" => json!({"Group": group_json(dir.group(call.group_name()?)?)}),
        "UpdateGroup" => {
            let name = call.group_name()?;
            let new_name = match call.opt("NewGroupName") {
                Some(n) => Some(name_param("NewGroupName", n, 64, is_user_char)?.to_string()),
                None => None,
            };
            let comments = call.text("NewComments", 128)?;
            json!({"Group": group_json(dir.update_group(name, new_name, comments, now)?)})
        }
        "DeleteGroup" => {
            dir.delete_group(call.group_name()?)?;
            empty()
        }
        "ListGroups" => {
            let (marker, max) = call.paging(1000)?;
            paged("Groups", "Group", dir.list_groups(marker, max), group_json)
        }
        "AddUserToGroup" => {
            dir.add_user_to_group(call.user_name()?, call.group_name()?, now, limits)?;
            empty()
        }
        "RemoveUserFromGroup" => {
            dir.remove_user_from_group(call.user_name()?, call.group_name()?)?;
            empty()
        }
        "ListGroupsForUser" => {
            let items = dir
                .groups_for_user(call.user_name()?)?
                .into_iter()
                .map(|(g, joined)| json!({"GroupId": g.id, "GroupName": g.name, "Comments": g.comments, "JoinDate": date(joined)}))
                .collect();
            wrapped("Groups", "Group", items)
        }
        "ListUsersForGroup" => {
            let group = call.group_name()?;
            let (marker, max) = call.paging(1000)?;
            let page = dir.users_for_group(group, marker, max)?;
            paged(
                "Users",
                "User",
                page,
                |(u, joined)| json!({"UserId": u.id, "UserName": u.name, "DisplayName": u.display_name, "JoinDate": date(joined)}),
            )
        }
        "CreatePolicy" => {
            let name = call.policy_name()?.to_string();
            let document = call.required("PolicyDocument")?;
            let description = call.text("Description", 1024)?;
            let p = dir
                .create_policy(name, document, description, now, limits)?
                .name
                .clone();
            json!({"Policy": policy_json(&dir.policy(PolicyKind::Custom, &p)?)})
        }
        "GetPolicy" => {
            let p = dir.policy(call.policy_type()?, call.policy_name()?)?;
            let default = PolicyVersion {
                id: p.default_version.clone(),
                document: p.default_document.clone(),
                created: p.default_version_created,
            };
            json!({"Policy": policy_json(&p), "DefaultPolicyVersion": version_json(&default, true)})
        }
        "ListPolicies" => {
            let kind = call.policy_type_opt()?;
            let (marker, max) = call.paging(1000)?;
            paged("Policies", "Policy", dir.list_policies(kind, marker, max), |p| {
                policy_json(&p)
            })
        }
        "UpdatePolicyDescription" => {
            let name = call.policy_name()?;
            let description = call.text("NewDescription", 1024)?.unwrap_or_default();
            json!({"Policy": policy_json(&dir.update_policy_description(name, description, now)?)})
        }
        "DeletePolicy" => {
            let cascading = call.flag("CascadingDelete")?;
            dir.delete_policy(call.policy_name()?, cascading)?;
            empty()
        }
        "CreatePolicyVersion" => {
            let name = call.policy_name()?;
            let document = call.required("PolicyDocument")?;
            let set_default = call.flag("SetAsDefault")?;
            let rotate = match call.opt("RotateStrategy") {
                None | Some("None") => RotateStrategy::None,
                Some("DeleteOldestNonDefaultVersionWhenLimitExceeded") => {
                    RotateStrategy::DeleteOldestNonDefaultVersionWhenLimitExceeded
                }
                Some(_) => return Err(errors::invalid_format("RotateStrategy")),
            };
            let v = dir.create_policy_version(name, document, set_default, rotate, now, limits)?;
            json!({"PolicyVersion": version_json(&v, set_default)})
        }
        "GetPolicyVersion" => {
            let kind = call.policy_type()?;
            let (v, is_default) = dir.policy_version(kind, call.policy_name()?, call.required("VersionId")?)?;
            json!({"PolicyVersion": version_json(&v, is_default)})
        }
        "ListPolicyVersions" => {
            let versions = dir.policy_versions(call.policy_type()?, call.policy_name()?)?;
            wrapped(
                "PolicyVersions",
                "PolicyVersion",
                versions.iter().map(|(v, d)| version_json(v, *d)).collect(),
            )
        }
        "SetDefaultPolicyVersion" => {
            dir.set_default_policy_version(call.policy_name()?, call.required("VersionId")?, now)?;
            empty()
        }
        "DeletePolicyVersion" => {
            dir.delete_policy_version(call.policy_name()?, call.required("VersionId")?)?;
            empty()
        }
        "CreateRole" => {
            let name = call.role_name()?.to_string();
            let fields = call.role_fields("")?;
            if fields.trust_policy.is_none() {
                return Err(errors::missing("AssumeRolePolicyDocument"));
            }
            json!({"Role": role_json(dir.create_role(name, fields, now, limits)?, &account)})
        }
        "GetRole" => {
            let r = dir.role(call.role_name()?)?;
            let mut v = role_json(r, &account);
            v["RolePrincipalName"] = json!(format!("{}@role.{account}.onaliyunservice.com", r.name));
            json!({"Role": v})
        }
        "UpdateRole" => {
            let name = call.role_name()?;
            let fields = call.role_fields("New")?;
            json!({"Role": role_json(dir.update_role(name, fields, now)?, &account)})
        }
        "DeleteRole" => {
            dir.delete_role(call.role_name()?)?;
            empty()
        }
        "ListRoles" => {
            let (marker, max) = call.paging(1000)?;
            paged("Roles", "Role", dir.list_roles(marker, max), |r| {
                let mut v = role_json(r, &account);
                if let Value::Object(m) = &mut v {
                    m.remove("AssumeRolePolicyDocument");
                }
                v
            })
        }
        "AttachPolicyToUser" | "AttachPolicyToGroup" | "AttachPolicyToRole" => {
            let (kind, policy) = (call.policy_type()?, call.policy_name()?);
            dir.attach(target(call)?, kind, policy, now, limits)?;
            empty()
        }
        "DetachPolicyFromUser" | "DetachPolicyFromGroup" | "DetachPolicyFromRole" => {
            let (kind, policy) = (call.policy_type()?, call.policy_name()?);
            dir.detach(target(call)?, kind, policy)?;
            empty()
        }
        "ListPoliciesForUser" | "ListPoliciesForGroup" | "ListPoliciesForRole" => attachments_json(dir, target(call)?)?,
        "ListEntitiesForPolicy" => {
            let (users, groups, roles) = dir.entities_for_policy(call.policy_type()?, call.policy_name()?)?;
            json!({
                "Users": {"User": users.iter().map(|(u, t)| json!({"UserId": u.id, "UserName": u.name, "DisplayName": u.display_name, "AttachDate": date(*t)})).collect::<Vec<_>>()},
                "Groups": {"Group": groups.iter().map(|(g, t)| json!({"GroupName": g.name, "Comments": g.comments, "AttachDate": date(*t)})).collect::<Vec<_>>()},
                "Roles": {"Role": roles.iter().map(|(r, t)| json!({"RoleId": r.id, "RoleName": r.name, "Arn": role_arn(&account, &r.name), "Description": r.description, "AttachDate": date(*t)})).collect::<Vec<_>>()},
            })
        }
        other => return Err(unknown_action(other)),
    })
}

/// The user, group or role an Attach/Detach/ListPoliciesFor call names.
fn target<'c>(call: &'c Call) -> Result<Target<'c>, ApiError> {
    let a = call.action;
    if a.ends_with("User") {
        Ok(Target::User(call.user_name()?))
    } else if a.ends_with("Group") {
        Ok(Target::Group(call.group_name()?))
    } else {
        Ok(Target::Role(call.role_name()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Keys(Vec<(String, KeyInfo)>);

    impl UserKeys for Keys {
        fn list(&mut self, user_id: &str) -> Result<Vec<KeyInfo>, ApiError> {
            Ok(self
                .0
                .iter()
                .filter(|(u, _)| u == user_id)
                .map(|(_, k)| k.clone())
                .collect())
        }
        fn create(&mut self, user_id: &str, now: i64) -> Result<KeyInfo, ApiError> {
            let k = KeyInfo {
                id: format!("LTAI{}", self.0.len()),
                secret: Some("s".into()),
                status: "Active".into(),
                created: now,
            };
            self.0.push((
                user_id.into(),
                KeyInfo {
                    secret: None,
                    ..k.clone()
                },
            ));
            Ok(k)
        }
        fn set_status(&mut self, user_id: &str, key_id: &str, status: &str) -> Result<bool, ApiError> {
            let hit = self.0.iter_mut().find(|(u, k)| u == user_id && k.id == key_id);
            Ok(hit.map(|(_, k)| k.status = status.into()).is_some())
        }
        fn delete(&mut self, user_id: &str, key_id: &str) -> Result<bool, ApiError> {
            let before = self.0.len();
            self.0.retain(|(u, k)| !(u == user_id && k.id == key_id));
            Ok(self.0.len() < before)
        }
    }

    struct World {
        dir: Directory,
        keys: Keys,
        caller: Principal,
        limits: Limits,
    }

    impl World {
        fn new() -> Self {
            World {
                dir: Directory::default(),
                keys: Keys::default(),
                caller: Principal::Root {
                    account_id: "100".into(),
                },
                limits: Limits::default(),
            }
        }

        fn call(&mut self, action: &str, params: &[(&str, &str)]) -> Result<Value, ApiError> {
            let params: BTreeMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let call = Call {
                action,
                params: &params,
                caller: &self.caller,
                now: 1_764_576_000,
                limits: &self.limits,
            };
            permission(&call)?;
            handle(&call, &mut self.dir, &mut self.keys)
        }

        fn code(&mut self, action: &str, params: &[(&str, &str)]) -> String {
            self.call(action, params).unwrap_err().code.into_owned()
        }
    }

    const DOC: &str = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"vpc:Describe*","Resource":"*"}]}"#;
    const TRUST: &str = r#"{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"RAM":["acs:ram::100:root"]}}],"Version":"1"}"#;

    #[test]
    fn users_and_keys() {
        let mut w = World::new();
        let u = w
            .call(
                "CreateUser",
                &[
                    ("UserName", "alice"),
                    ("DisplayName", "Alice"),
                    ("MobilePhone", "86-18688888888"),
                    ("Email", "a@example.com"),
                ],
            )
            .unwrap();
        assert_eq!(u["User"]["UserName"], "alice");
        assert_eq!(u["User"]["CreateDate"], "2025-12-01T08:00:00Z");
        assert_eq!(
            w.code("CreateUser", &[("UserName", "alice")]),
            "EntityAlreadyExists.User"
        );
        assert_eq!(w.code("CreateUser", &[]), "MissingParameter.UserName");
        assert_eq!(
            w.code("CreateUser", &[("UserName", "a b")]),
            "InvalidParameter.UserName.InvalidChars"
        );
        assert_eq!(
            w.code("CreateUser", &[("UserName", &"a".repeat(65))]),
            "InvalidParameter.UserName.Length"
        );
        assert_eq!(
            w.code("CreateUser", &[("UserName", "b"), ("Email", "nope")]),
            "InvalidParameter.Email.Format"
        );
        assert_eq!(
            w.code("CreateUser", &[("UserName", "b"), ("MobilePhone", "123")]),
            "InvalidParameter.MobilePhone.Format"
        );
        assert_eq!(
            w.call("GetUser", &[("UserName", "ALICE")]).unwrap()["User"]["DisplayName"],
            "Alice"
        );
        let k = w.call("CreateAccessKey", &[("UserName", "alice")]).unwrap();
        assert_eq!(k["AccessKey"]["Status"], "Active");
        assert!(k["AccessKey"]["AccessKeySecret"].is_string());
        w.call("CreateAccessKey", &[("UserName", "alice")]).unwrap();
        assert_eq!(
            w.code("CreateAccessKey", &[("UserName", "alice")]),
            "LimitExceeded.User.AccessKey"
        );
        let list = w.call("ListAccessKeys", &[("UserName", "alice")]).unwrap();
        assert_eq!(list["AccessKeys"]["AccessKey"].as_array().unwrap().len(), 2);
        assert!(list["AccessKeys"]["AccessKey"][0].get("AccessKeySecret").is_none());
        assert_eq!(
            w.code(
                "UpdateAccessKey",
                &[("UserName", "alice"), ("UserAccessKeyId", "LTAI0"), ("Status", "Off")]
            ),
            "InvalidParameter.Status.Format"
        );
        w.call(
            "UpdateAccessKey",
            &[
                ("UserName", "alice"),
                ("UserAccessKeyId", "LTAI0"),
                ("Status", "Inactive"),
            ],
        )
        .unwrap();
        assert_eq!(w.keys.0[0].1.status, "Inactive");
        assert_eq!(
            w.code(
                "UpdateAccessKey",
                &[("UserName", "alice"), ("UserAccessKeyId", "nope"), ("Status", "Active")]
            ),
            "EntityNotExist.User.AccessKey"
        );
        assert_eq!(
            w.code("DeleteUser", &[("UserName", "alice")]),
            "DeleteConflict.User.AccessKey"
        );
        w.call(
            "DeleteAccessKey",
            &[("UserName", "alice"), ("UserAccessKeyId", "LTAI0")],
        )
        .unwrap();
        w.call(
            "DeleteAccessKey",
            &[("UserName", "alice"), ("UserAccessKeyId", "LTAI1")],
        )
        .unwrap();
        assert_eq!(
            w.code(
                "DeleteAccessKey",
                &[("UserName", "alice"), ("UserAccessKeyId", "LTAI1")]
            ),
            "EntityNotExist.User.AccessKey"
        );
        // Root must name the user; a RAM user may mean itself.
        assert_eq!(w.code("ListAccessKeys", &[]), "MissingParameter.UserName");
        let id = w.dir.user("alice").unwrap().id.clone();
        w.caller = Principal::User {
            account_id: "100".into(),
            user_id: id,
            user_name: "alice".into(),
        };
        assert_eq!(
            w.call("ListAccessKeys", &[]).unwrap()["AccessKeys"]["AccessKey"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
        w.caller = Principal::Root {
            account_id: "100".into(),
        };
        let u = w
            .call(
                "UpdateUser",
                &[("UserName", "alice"), ("NewUserName", "alice2"), ("NewComments", "c")],
            )
            .unwrap();
        assert_eq!(
            (u["User"]["UserName"].as_str(), u["User"]["Comments"].as_str()),
            (Some("alice2"), Some("c"))
        );
        w.call("DeleteUser", &[("UserName", "alice2")]).unwrap();
        assert_eq!(w.code("GetUser", &[("UserName", "alice2")]), "EntityNotExist.User");
    }

    #[test]
    fn list_users_paging_wire_shape() {
        let mut w = World::new();
        for n in ["a", "b", "c"] {
            w.call("CreateUser", &[("UserName", n)]).unwrap();
        }
        let p = w.call("ListUsers", &[("MaxItems", "2")]).unwrap();
        assert_eq!(p["IsTruncated"], true);
        assert_eq!(p["Users"]["User"].as_array().unwrap().len(), 2);
        let marker = p["Marker"].as_str().unwrap().to_string();
        let p = w.call("ListUsers", &[("MaxItems", "2"), ("Marker", &marker)]).unwrap();
        assert_eq!(p["IsTruncated"], false);
        assert!(p.get("Marker").is_none());
        assert_eq!(p["Users"]["User"][0]["UserName"], "c");
        assert_eq!(
            w.code("ListUsers", &[("MaxItems", "0")]),
            "InvalidParameter.MaxItems.Format"
        );
        assert_eq!(
            w.code("ListUsers", &[("MaxItems", "1001")]),
            "InvalidParameter.MaxItems.Format"
        );
    }

    #[test]
    fn groups_policies_roles() {
        let mut w = World::new();
        w.call("CreateUser", &[("UserName", "alice")]).unwrap();
        assert_eq!(
            w.call("CreateGroup", &[("GroupName", "ops")]).unwrap()["Group"]["GroupName"],
            "ops"
        );
        w.call("AddUserToGroup", &[("UserName", "alice"), ("GroupName", "ops")])
            .unwrap();
        assert_eq!(
            w.call("ListGroupsForUser", &[("UserName", "alice")]).unwrap()["Groups"]["Group"][0]["GroupName"],
            "ops"
        );
        assert_eq!(
            w.call("ListUsersForGroup", &[("GroupName", "ops")]).unwrap()["Users"]["User"][0]["UserName"],
            "alice"
        );
        let p = w
            .call(
                "CreatePolicy",
                &[("PolicyName", "ReadVpc"), ("PolicyDocument", DOC), ("Description", "d")],
            )
            .unwrap();
        assert_eq!(
            (
                p["Policy"]["PolicyType"].as_str(),
                p["Policy"]["DefaultVersion"].as_str()
            ),
            (Some("Custom"), Some("v1"))
        );
        assert_eq!(
            w.code("CreatePolicy", &[("PolicyName", "Bad"), ("PolicyDocument", "{")]),
            "MalformedPolicyDocument"
        );
        assert_eq!(
            w.code("CreatePolicy", &[("PolicyName", "Bad_"), ("PolicyDocument", DOC)]),
            "InvalidParameter.PolicyName.InvalidChars"
        );
        assert_eq!(
            w.code("CreatePolicy", &[("PolicyName", "Bad")]),
            "MissingParameter.PolicyDocument"
        );
        w.call(
            "AttachPolicyToGroup",
            &[
                ("PolicyType", "Custom"),
                ("PolicyName", "ReadVpc"),
                ("GroupName", "ops"),
            ],
        )
        .unwrap();
        assert_eq!(
            w.code(
                "AttachPolicyToGroup",
                &[
                    ("PolicyType", "custom"),
                    ("PolicyName", "ReadVpc"),
                    ("GroupName", "ops")
                ]
            ),
            "InvalidParameter.PolicyType"
        );
        w.call(
            "AttachPolicyToUser",
            &[
                ("PolicyType", "System"),
                ("PolicyName", "AliyunVPCReadOnlyAccess"),
                ("UserName", "alice"),
            ],
        )
        .unwrap();
        let listed = w.call("ListPoliciesForUser", &[("UserName", "alice")]).unwrap();
        assert_eq!(listed["Policies"]["Policy"][0]["PolicyName"], "AliyunVPCReadOnlyAccess");
        assert!(listed["Policies"]["Policy"][0]["AttachDate"].is_string());
        let got = w
            .call("GetPolicy", &[("PolicyType", "Custom"), ("PolicyName", "ReadVpc")])
            .unwrap();
        assert_eq!(got["Policy"]["AttachmentCount"], 1);
        assert_eq!(got["DefaultPolicyVersion"]["PolicyDocument"], DOC);
        assert_eq!(got["DefaultPolicyVersion"]["IsDefaultVersion"], true);
        let v = w
            .call(
                "CreatePolicyVersion",
                &[
                    ("PolicyName", "ReadVpc"),
                    ("PolicyDocument", DOC),
                    ("SetAsDefault", "true"),
                ],
            )
            .unwrap();
        assert_eq!(
            (
                v["PolicyVersion"]["VersionId"].as_str(),
                v["PolicyVersion"]["IsDefaultVersion"].as_bool()
            ),
            (Some("v2"), Some(true))
        );
        assert_eq!(
            w.call(
                "ListPolicyVersions",
                &[("PolicyType", "Custom"), ("PolicyName", "ReadVpc")]
            )
            .unwrap()["PolicyVersions"]["PolicyVersion"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            w.code("DeletePolicy", &[("PolicyName", "ReadVpc")]),
            "DeleteConflict.Policy.Group"
        );
        let ents = w
            .call(
                "ListEntitiesForPolicy",
                &[("PolicyType", "Custom"), ("PolicyName", "ReadVpc")],
            )
            .unwrap();
        assert_eq!(ents["Groups"]["Group"][0]["GroupName"], "ops");
        w.call(
            "DetachPolicyFromGroup",
            &[
                ("PolicyType", "Custom"),
                ("PolicyName", "ReadVpc"),
                ("GroupName", "ops"),
            ],
        )
        .unwrap();
        assert_eq!(
            w.code(
                "DetachPolicyFromGroup",
                &[
                    ("PolicyType", "Custom"),
                    ("PolicyName", "ReadVpc"),
                    ("GroupName", "ops")
                ]
            ),
            "EntityNotExist.Group.Policy"
        );
        assert_eq!(
            w.code("DeletePolicy", &[("PolicyName", "ReadVpc")]),
            "DeleteConflict.Policy.Version"
        );
        w.call(
            "DeletePolicy",
            &[("PolicyName", "ReadVpc"), ("CascadingDelete", "true")],
        )
        .unwrap();
        let listed = w.call("ListPolicies", &[("PolicyType", "System")]).unwrap();
        assert!(listed["Policies"]["Policy"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["PolicyName"] == "AdministratorAccess"));
        let r = w
            .call(
                "CreateRole",
                &[
                    ("RoleName", "Ops"),
                    ("AssumeRolePolicyDocument", TRUST),
                    ("MaxSessionDuration", "7200"),
                ],
            )
            .unwrap();
        assert_eq!(r["Role"]["Arn"], "acs:ram::100:role/ops");
        assert_eq!(r["Role"]["MaxSessionDuration"], 7200);
        assert_eq!(
            w.code(
                "CreateRole",
                &[
                    ("RoleName", "X"),
                    ("AssumeRolePolicyDocument", TRUST),
                    ("MaxSessionDuration", "100")
                ]
            ),
            "InvalidParameter.MaxSessionDuration.Format"
        );
        assert_eq!(
            w.code("CreateRole", &[("RoleName", "X")]),
            "MissingParameter.AssumeRolePolicyDocument"
        );
        assert_eq!(
            w.code("CreateRole", &[("RoleName", "X_"), ("AssumeRolePolicyDocument", TRUST)]),
            "InvalidParameter.RoleName.InvalidChars"
        );
        assert!(w.call("GetRole", &[("RoleName", "ops")]).unwrap()["Role"]["RolePrincipalName"].is_string());
        assert!(w.call("ListRoles", &[]).unwrap()["Roles"]["Role"][0]
            .get("AssumeRolePolicyDocument")
            .is_none());
        w.call(
            "AttachPolicyToRole",
            &[
                ("PolicyType", "System"),
                ("PolicyName", "AliyunVPCFullAccess"),
                ("RoleName", "Ops"),
            ],
        )
        .unwrap();
        assert_eq!(
            w.code("DeleteRole", &[("RoleName", "Ops")]),
            "DeleteConflict.Role.Policy"
        );
        w.call(
            "DetachPolicyFromRole",
            &[
                ("PolicyType", "System"),
                ("PolicyName", "AliyunVPCFullAccess"),
                ("RoleName", "Ops"),
            ],
        )
        .unwrap();
        w.call("DeleteRole", &[("RoleName", "Ops")]).unwrap();
        assert_eq!(w.code("GetRole", &[("RoleName", "Ops")]), "EntityNotExist.Role");
    }

    #[test]
    fn permissions_name_the_resources() {
        let root = Principal::Root {
            account_id: "100".into(),
        };
        let limits = Limits::default();
        let perm = |action: &str, params: &[(&str, &str)]| {
            let params: BTreeMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            permission(&Call {
                action,
                params: &params,
                caller: &root,
                now: 0,
                limits: &limits,
            })
        };
        assert_eq!(
            perm("CreateUser", &[]).unwrap(),
            ("ram:CreateUser".into(), vec!["acs:ram:*:100:user/*".into()])
        );
        assert_eq!(
            perm("GetUser", &[("UserName", "a")]).unwrap().1,
            ["acs:ram:*:100:user/a"]
        );
        assert_eq!(
            perm("AddUserToGroup", &[("UserName", "a"), ("GroupName", "g")])
                .unwrap()
                .1,
            ["acs:ram:*:100:user/a", "acs:ram:*:100:group/g"]
        );
        assert_eq!(
            perm(
                "AttachPolicyToRole",
                &[
                    ("PolicyType", "System"),
                    ("PolicyName", "AdministratorAccess"),
                    ("RoleName", "r")
                ]
            )
            .unwrap()
            .1,
            ["acs:ram:*:system:policy/AdministratorAccess", "acs:ram:*:100:role/r"]
        );
        assert_eq!(perm("GetUser", &[]).unwrap_err().code, "MissingParameter.UserName");
        assert_eq!(perm("Nope", &[]).unwrap_err().code, "InvalidAction.NotFound");
        for action in ACTIONS {
            // Every served action has a permission rule (given enough parameters).
            let all = [
                ("UserName", "u"),
                ("GroupName", "g"),
                ("RoleName", "r"),
                ("PolicyName", "p"),
                ("PolicyType", "Custom"),
            ];
            assert!(perm(action, &all).is_ok(), "{action}");
        }
        // Every served action has a handler: with an empty directory it fails on the missing
        // entity (or succeeds), never as an unknown action.
        let mut w = World::new();
        for action in ACTIONS {
            let all = [
                ("UserName", "u"),
                ("GroupName", "g"),
                ("RoleName", "r"),
                ("PolicyName", "p"),
                ("PolicyType", "Custom"),
            ];
            if let Err(e) = w.call(action, &all) {
                assert_ne!(e.code, "InvalidAction.NotFound", "{action}");
            }
        }
        assert!(!mutates("GetUser") && !mutates("ListUsers") && mutates("CreateUser") && mutates("AttachPolicyToUser"));
        assert!(is_action("CreateUser") && !is_action("AssumeRole"));
    }
}
