//! The RAM state of one account — users, groups, custom policies (with versions), roles, group
//! memberships and policy attachments — and the RAM operations on it with Alibaba's conflicts,
//! limits and error codes. Serialisable as one JSON document, so a store keeps it in one row.
//!
//! Access keys are not in here: they live with the account's other keys (the server looks them
//! up by AccessKeyId); operations that depend on them take the facts they need as arguments.
//!
//! Names are unique ignoring case (role ARNs lower-case the role name, so `Ops` and `ops` could
//! not both have one) and are found ignoring case; each entity keeps the spelling it was given
//! (ours).

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};
use vpnroute_domain::ApiError;

use crate::authorize::{AttachedPolicy, PolicyKind, TrustPolicy};
use crate::errors::{self, Entity};
use crate::policy::PolicyDocument;
use crate::system;

/// Alibaba's RAM quotas ("Limits" page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub users: usize,
    pub groups: usize,
    pub roles: usize,
    pub custom_policies: usize,
    pub versions_per_policy: usize,
    pub groups_per_user: usize,
    pub access_keys_per_user: usize,
    pub system_policies_per_principal: usize,
    pub custom_policies_per_user: usize,
    pub custom_policies_per_group_or_role: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            users: 1000,
            groups: 50,
            roles: 1000,
            custom_policies: 1500,
            versions_per_policy: 5,
            groups_per_user: 5,
            access_keys_per_user: 2,
            system_policies_per_principal: 20,
            custom_policies_per_user: 10,
            custom_policies_per_group_or_role: 5,
        }
    }
}

/// A policy attached to a user, group or role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub kind: PolicyKind,
    pub name: String,
    /// Unix seconds.
    pub attached: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The group's key (lower-cased name).
    pub group: String,
    pub joined: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub mobile_phone: String,
    pub email: String,
    pub comments: String,
    pub created: i64,
    pub updated: i64,
    pub policies: Vec<Attachment>,
    pub groups: Vec<Membership>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub comments: String,
    pub created: i64,
    pub updated: i64,
    pub policies: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// `v1`, `v2`, …
    pub id: String,
    pub document: String,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomPolicy {
    pub name: String,
    pub description: String,
    pub default_version: String,
    pub versions: Vec<PolicyVersion>,
    /// The number the next version gets (versions are never renumbered).
    pub next_version: u32,
    pub created: i64,
    pub updated: i64,
}

impl CustomPolicy {
    pub fn default_document(&self) -> &PolicyVersion {
        self.versions
            .iter()
            .find(|v| v.id == self.default_version)
            .expect("a policy always has its default version")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: String,
    pub trust_policy: String,
    pub max_session_duration: u32,
    pub created: i64,
    pub updated: i64,
    pub policies: Vec<Attachment>,
}

/// A policy as GetPolicy / ListPolicies show it (system or custom).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyView {
    pub name: String,
    pub kind: PolicyKind,
    pub description: String,
    pub default_version: String,
    pub created: i64,
    pub updated: i64,
    pub attachment_count: usize,
    pub default_document: String,
    pub default_version_created: i64,
}

/// Who a policy is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    User(&'a str),
    Group(&'a str),
    Role(&'a str),
}

impl Target<'_> {
    fn entity(&self) -> Entity {
        match self {
            Target::User(_) => Entity::User,
            Target::Group(_) => Entity::Group,
            Target::Role(_) => Entity::Role,
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `Some` exactly when the list is truncated.
    pub next_marker: Option<String>,
}

/// Fields of CreateUser / UpdateUser (`None` = not given).
#[derive(Debug, Clone, Default)]
pub struct UserFields {
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub mobile_phone: Option<String>,
    pub email: Option<String>,
    pub comments: Option<String>,
}

/// Fields of CreateRole / UpdateRole.
#[derive(Debug, Clone, Default)]
pub struct RoleFields {
    pub trust_policy: Option<String>,
    pub description: Option<String>,
    pub max_session_duration: Option<u32>,
}

/// When a version limit is reached: refuse, or drop the oldest non-default version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateStrategy {
    None,
    DeleteOldestNonDefaultVersionWhenLimitExceeded,
}

/// The time system policies were "created" (fixed, so answers are deterministic).
pub const SYSTEM_POLICY_CREATED: i64 = 1_430_000_000;

fn key(name: &str) -> String {
    name.to_lowercase()
}

fn digits(n: usize) -> String {
    let mut rng = rand::rng();
    let first = rng.random_range(1..10u8);
    std::iter::once(char::from(b'0' + first))
        .chain((1..n).map(|_| char::from(b'0' + rng.random_range(0..10u8))))
        .collect()
}

fn alnum(n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n).map(|_| char::from(A[rng.random_range(0..A.len())])).collect()
}

/// A user id in Alibaba's shape (16 digits).
pub fn new_user_id() -> String {
    digits(16)
}

/// The RAM state of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    #[serde(default)]
    users: BTreeMap<String, User>,
    #[serde(default)]
    groups: BTreeMap<String, Group>,
    #[serde(default)]
    policies: BTreeMap<String, CustomPolicy>,
    #[serde(default)]
    roles: BTreeMap<String, Role>,
}

fn page<'a, T>(map: &'a BTreeMap<String, T>, marker: Option<&str>, max: usize) -> Page<&'a T> {
    let start = marker.unwrap_or("");
    let mut iter = map.range(start.to_string()..);
    let items: Vec<&T> = iter.by_ref().take(max).map(|(_, v)| v).collect();
    let next_marker = iter.next().map(|(k, _)| k.clone());
    Page { items, next_marker }
}

impl Directory {
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a directory serialises")
    }

    // ---- users ----

    pub fn create_user(&mut self, fields: UserFields, now: i64, limits: &Limits) -> Result<&User, ApiError> {
        let name = fields.name.ok_or_else(|| errors::missing("UserName"))?;
        let k = key(&name);
        if self.users.contains_key(&k) {
            return Err(errors::already_exists(Entity::User));
        }
        if self.users.len() >= limits.users {
            return Err(errors::limit_exceeded("User"));
        }
        let user = User {
            id: new_user_id(),
            name,
            display_name: fields.display_name.unwrap_or_default(),
            mobile_phone: fields.mobile_phone.unwrap_or_default(),
            email: fields.email.unwrap_or_default(),
            comments: fields.comments.unwrap_or_default(),
            created: now,
            updated: now,
            policies: Vec::new(),
            groups: Vec::new(),
        };
        Ok(self.users.entry(k).or_insert(user))
    }

    pub fn user(&self, name: &str) -> Result<&User, ApiError> {
        self.users
            .get(&key(name))
            .ok_or_else(|| errors::not_exist(Entity::User))
    }

    /// The user with this id (authentication maps a key to its user by id).
    pub fn user_by_id(&self, id: &str) -> Option<&User> {
        self.users.values().find(|u| u.id == id)
    }

    pub fn update_user(&mut self, name: &str, new: UserFields, now: i64) -> Result<&User, ApiError> {
        let old_key = key(name);
        if !self.users.contains_key(&old_key) {
            return Err(errors::not_exist(Entity::User));
        }
        let new_key = new.name.as_deref().map(key).unwrap_or_else(|| old_key.clone());
        if new_key != old_key && self.users.contains_key(&new_key) {
            return Err(errors::already_exists(Entity::User));
        }
        let mut user = self.users.remove(&old_key).expect("checked above");
        if let Some(n) = new.name {
            user.name = n;
        }
        let set = |field: &mut String, v: Option<String>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(&mut user.display_name, new.display_name);
        set(&mut user.mobile_phone, new.mobile_phone);
        set(&mut user.email, new.email);
        set(&mut user.comments, new.comments);
        user.updated = now;
        Ok(self.users.entry(new_key).or_insert(user))
    }

    /// Deletes a user; `has_access_keys` comes from the key store.
    pub fn delete_user(&mut self, name: &str, has_access_keys: bool) -> Result<User, ApiError> {
        let user = self.user(name)?;
        if !user.groups.is_empty() {
            return Err(errors::delete_conflict("User.Group"));
        }
        if has_access_keys {
            return Err(errors::delete_conflict("User.AccessKey"));
        }
        if !user.policies.is_empty() {
            return Err(errors::delete_conflict("User.Policy"));
        }
        Ok(self.users.remove(&key(name)).expect("found above"))
    }

    pub fn list_users(&self, marker: Option<&str>, max: usize) -> Page<&User> {
        page(&self.users, marker, max)
    }

    // ---- groups ----

    pub fn create_group(
        &mut self,
        name: String,
        comments: Option<String>,
        now: i64,
        limits: &Limits,
    ) -> Result<&Group, ApiError> {
        let k = key(&name);
        if self.groups.contains_key(&k) {
            return Err(errors::already_exists(Entity::Group));
        }
        if self.groups.len() >= limits.groups {
            return Err(errors::limit_exceeded("Group"));
        }
        let id = format!("g-{}", alnum(16));
        let group = Group {
            id,
            name,
            comments: comments.unwrap_or_default(),
            created: now,
            updated: now,
            policies: Vec::new(),
        };
        Ok(self.groups.entry(k).or_insert(group))
    }

    pub fn group(&self, name: &str) -> Result<&Group, ApiError> {
        self.groups
            .get(&key(name))
            .ok_or_else(|| errors::not_exist(Entity::Group))
    }

    pub fn update_group(
        &mut self,
        name: &str,
        new_name: Option<String>,
        new_comments: Option<String>,
        now: i64,
    ) -> Result<&Group, ApiError> {
        let old_key = key(name);
        if !self.groups.contains_key(&old_key) {
            return Err(errors::not_exist(Entity::Group));
        }
        let new_key = new_name.as_deref().map(key).unwrap_or_else(|| old_key.clone());
        if new_key != old_key && self.groups.contains_key(&new_key) {
            return Err(errors::already_exists(Entity::Group));
        }
        let mut group = self.groups.remove(&old_key).expect("checked above");
        if let Some(n) = new_name {
            group.name = n;
        }
        if let Some(c) = new_comments {
            group.comments = c;
        }
        group.updated = now;
        for m in self.users.values_mut().flat_map(|u| u.groups.iter_mut()) {
            if m.group == old_key {
                m.group = new_key.clone();
            }
        }
        Ok(self.groups.entry(new_key).or_insert(group))
    }

    pub fn delete_group(&mut self, name: &str) -> Result<Group, ApiError> {
        let k = key(name);
        let group = self.group(name)?;
        if self.users.values().any(|u| u.groups.iter().any(|m| m.group == k)) {
            return Err(errors::delete_conflict("Group.User"));
        }
        if !group.policies.is_empty() {
            return Err(errors::delete_conflict("Group.Policy"));
        }
        Ok(self.groups.remove(&k).expect("found above"))
    }

    pub fn list_groups(&self, marker: Option<&str>, max: usize) -> Page<&Group> {
        page(&self.groups, marker, max)
    }

    pub fn add_user_to_group(&mut self, user: &str, group: &str, now: i64, limits: &Limits) -> Result<(), ApiError> {
        self.user(user)?;
        self.group(group)?;
        let g = key(group);
        let u = self.users.get_mut(&key(user)).expect("checked above");
        if u.groups.iter().any(|m| m.group == g) {
            return Err(errors::user_already_in_group());
        }
        if u.groups.len() >= limits.groups_per_user {
            return Err(errors::limit_exceeded("User.Group"));
        }
        u.groups.push(Membership { group: g, joined: now });
        Ok(())
    }

    pub fn remove_user_from_group(&mut self, user: &str, group: &str) -> Result<(), ApiError> {
        self.user(user)?;
        self.group(group)?;
        let g = key(group);
        let u = self.users.get_mut(&key(user)).expect("checked above");
        let before = u.groups.len();
        u.groups.retain(|m| m.group != g);
        if u.groups.len() == before {
            return Err(errors::user_not_in_group());
        }
        Ok(())
    }

    /// The user's groups with their join times.
    pub fn groups_for_user(&self, user: &str) -> Result<Vec<(&Group, i64)>, ApiError> {
        let u = self.user(user)?;
        Ok(u.groups
            .iter()
            .filter_map(|m| self.groups.get(&m.group).map(|g| (g, m.joined)))
            .collect())
    }

    /// The group's users with their join times, by user name.
    pub fn users_for_group(
        &self,
        group: &str,
        marker: Option<&str>,
        max: usize,
    ) -> Result<Page<(&User, i64)>, ApiError> {
        self.group(group)?;
        let g = key(group);
        let members: BTreeMap<String, (&User, i64)> = self
            .users
            .iter()
            .filter_map(|(k, u)| {
                u.groups
                    .iter()
                    .find(|m| m.group == g)
                    .map(|m| (k.clone(), (u, m.joined)))
            })
            .collect();
        let p = page(&members, marker, max);
        Ok(Page {
            items: p.items.into_iter().copied().collect(),
            next_marker: p.next_marker,
        })
    }

    // ---- policies ----

    pub fn create_policy(
        &mut self,
        name: String,
        document: &str,
        description: Option<String>,
        now: i64,
        limits: &Limits,
    ) -> Result<&CustomPolicy, ApiError> {
        PolicyDocument::parse(document).map_err(|e| errors::malformed_policy(&e.message))?;
        let k = key(&name);
        if self.policies.contains_key(&k) || system::find(&name).is_some() {
            return Err(errors::already_exists(Entity::Policy));
        }
        if self.policies.len() >= limits.custom_policies {
            return Err(errors::limit_exceeded("Policy"));
        }
        let policy = CustomPolicy {
            name,
            description: description.unwrap_or_default(),
            default_version: "v1".into(),
            versions: vec![PolicyVersion {
                id: "v1".into(),
                document: document.to_string(),
                created: now,
            }],
            next_version: 2,
            created: now,
            updated: now,
        };
        Ok(self.policies.entry(k).or_insert(policy))
    }

    pub fn custom_policy(&self, name: &str) -> Result<&CustomPolicy, ApiError> {
        self.policies
            .get(&key(name))
            .ok_or_else(|| errors::not_exist(Entity::Policy))
    }

    fn custom_policy_mut(&mut self, name: &str) -> Result<&mut CustomPolicy, ApiError> {
        self.policies
            .get_mut(&key(name))
            .ok_or_else(|| errors::not_exist(Entity::Policy))
    }

    /// How many users, groups and roles of this account have the policy attached.
    pub fn attachment_count(&self, kind: PolicyKind, name: &str) -> usize {
        let hit = |list: &Vec<Attachment>| list.iter().any(|a| a.kind == kind && a.name.eq_ignore_ascii_case(name));
        self.users.values().filter(|u| hit(&u.policies)).count()
            + self.groups.values().filter(|g| hit(&g.policies)).count()
            + self.roles.values().filter(|r| hit(&r.policies)).count()
    }

    pub fn policy(&self, kind: PolicyKind, name: &str) -> Result<PolicyView, ApiError> {
        match kind {
            PolicyKind::System => {
                let p = system::find(name).ok_or_else(|| errors::not_exist(Entity::Policy))?;
                Ok(system_view(p, self.attachment_count(kind, name)))
            }
            PolicyKind::Custom => {
                let p = self.custom_policy(name)?;
                let default = p.default_document();
                Ok(PolicyView {
                    name: p.name.clone(),
                    kind,
                    description: p.description.clone(),
                    default_version: p.default_version.clone(),
                    created: p.created,
                    updated: p.updated,
                    attachment_count: self.attachment_count(kind, &p.name),
                    default_document: default.document.clone(),
                    default_version_created: default.created,
                })
            }
        }
    }

    /// ListPolicies: system policies first (by name), then custom ones; the marker is
    /// `0:<name>` (system) / `1:<name>` (custom) (ours).
    pub fn list_policies(&self, kind: Option<PolicyKind>, marker: Option<&str>, max: usize) -> Page<PolicyView> {
        let mut all: BTreeMap<String, PolicyView> = BTreeMap::new();
        if kind != Some(PolicyKind::Custom) {
            for p in system::SYSTEM_POLICIES {
                all.insert(
                    format!("0:{}", key(p.name)),
                    system_view(p, self.attachment_count(PolicyKind::System, p.name)),
                );
            }
        }
        if kind != Some(PolicyKind::System) {
            for (k, p) in &self.policies {
                all.insert(
                    format!("1:{k}"),
                    self.policy(PolicyKind::Custom, &p.name).expect("listed policy exists"),
                );
            }
        }
        let p = page(&all, marker, max);
        Page {
            items: p.items.into_iter().cloned().collect(),
            next_marker: p.next_marker,
        }
    }

    pub fn update_policy_description(
        &mut self,
        name: &str,
        description: String,
        now: i64,
    ) -> Result<PolicyView, ApiError> {
        let p = self.custom_policy_mut(name)?;
        p.description = description;
        p.updated = now;
        let name = p.name.clone();
        self.policy(PolicyKind::Custom, &name)
    }

    pub fn delete_policy(&mut self, name: &str, cascading: bool) -> Result<(), ApiError> {
        let p = self.custom_policy(name)?;
        let attached = |list: &Vec<Attachment>| {
            list.iter()
                .any(|a| a.kind == PolicyKind::Custom && a.name.eq_ignore_ascii_case(name))
        };
        if self.users.values().any(|u| attached(&u.policies)) {
            return Err(errors::delete_conflict("Policy.User"));
        }
        if self.groups.values().any(|g| attached(&g.policies)) {
            return Err(errors::delete_conflict("Policy.Group"));
        }
        if self.roles.values().any(|r| attached(&r.policies)) {
            return Err(errors::delete_conflict("Policy.Role"));
        }
        if p.versions.len() > 1 && !cascading {
            return Err(errors::delete_conflict("Policy.Version"));
        }
        self.policies.remove(&key(name));
        Ok(())
    }

    pub fn create_policy_version(
        &mut self,
        name: &str,
        document: &str,
        set_as_default: bool,
        rotate: RotateStrategy,
        now: i64,
        limits: &Limits,
    ) -> Result<PolicyVersion, ApiError> {
        let p = self.custom_policy_mut(name)?;
        PolicyDocument::parse(document).map_err(|e| errors::malformed_policy(&e.message))?;
        if p.versions.len() >= limits.versions_per_policy {
            match rotate {
                RotateStrategy::None => return Err(errors::limit_exceeded("Policy.Version")),
                RotateStrategy::DeleteOldestNonDefaultVersionWhenLimitExceeded => {
                    let oldest = p.versions.iter().position(|v| v.id != p.default_version);
                    match oldest {
                        Some(i) => {
                            p.versions.remove(i);
                        }
                        None => return Err(errors::limit_exceeded("Policy.Version")),
                    }
                }
            }
        }
        let version = PolicyVersion {
            id: format!("v{}", p.next_version),
            document: document.to_string(),
            created: now,
        };
        p.next_version += 1;
        if set_as_default {
            p.default_version = version.id.clone();
        }
        p.updated = now;
        p.versions.push(version.clone());
        Ok(version)
    }

    /// A version of a policy, with whether it is the default; system policies have `v1`.
    pub fn policy_version(
        &self,
        kind: PolicyKind,
        name: &str,
        version: &str,
    ) -> Result<(PolicyVersion, bool), ApiError> {
        self.policy_versions(kind, name)?
            .into_iter()
            .find(|(v, _)| v.id == version)
            .ok_or_else(errors::policy_version_not_exist)
    }

    pub fn policy_versions(&self, kind: PolicyKind, name: &str) -> Result<Vec<(PolicyVersion, bool)>, ApiError> {
        match kind {
            PolicyKind::System => {
                let p = system::find(name).ok_or_else(|| errors::not_exist(Entity::Policy))?;
                let v = PolicyVersion {
                    id: p.default_version.into(),
                    document: p.document_text.into(),
                    created: SYSTEM_POLICY_CREATED,
                };
                Ok(vec![(v, true)])
            }
            PolicyKind::Custom => {
                let p = self.custom_policy(name)?;
                Ok(p.versions
                    .iter()
                    .map(|v| (v.clone(), v.id == p.default_version))
                    .collect())
            }
        }
    }

    pub fn set_default_policy_version(&mut self, name: &str, version: &str, now: i64) -> Result<(), ApiError> {
        let p = self.custom_policy_mut(name)?;
        if !p.versions.iter().any(|v| v.id == version) {
            return Err(errors::policy_version_not_exist());
        }
        p.default_version = version.to_string();
        p.updated = now;
        Ok(())
    }

    pub fn delete_policy_version(&mut self, name: &str, version: &str) -> Result<(), ApiError> {
        let p = self.custom_policy_mut(name)?;
        let i = p
            .versions
            .iter()
            .position(|v| v.id == version)
            .ok_or_else(errors::policy_version_not_exist)?;
        if p.default_version == version {
            return Err(errors::delete_conflict("Policy.Version.Default"));
        }
        p.versions.remove(i);
        Ok(())
    }

    // ---- roles ----

    pub fn create_role(
        &mut self,
        name: String,
        fields: RoleFields,
        now: i64,
        limits: &Limits,
    ) -> Result<&Role, ApiError> {
        let trust = fields
            .trust_policy
            .ok_or_else(|| errors::missing("AssumeRolePolicyDocument"))?;
        TrustPolicy::parse(&trust).map_err(|e| errors::malformed_policy(&e.message))?;
        let k = key(&name);
        if self.roles.contains_key(&k) {
            return Err(errors::already_exists(Entity::Role));
        }
        if self.roles.len() >= limits.roles {
            return Err(errors::limit_exceeded("Role"));
        }
        let role = Role {
            id: digits(19),
            name,
            description: fields.description.unwrap_or_default(),
            trust_policy: trust,
            max_session_duration: fields
                .max_session_duration
                .unwrap_or(crate::sts::DEFAULT_DURATION_SECONDS),
            created: now,
            updated: now,
            policies: Vec::new(),
        };
        Ok(self.roles.entry(k).or_insert(role))
    }

    pub fn role(&self, name: &str) -> Result<&Role, ApiError> {
        self.roles
            .get(&key(name))
            .ok_or_else(|| errors::not_exist(Entity::Role))
    }

    pub fn update_role(&mut self, name: &str, new: RoleFields, now: i64) -> Result<&Role, ApiError> {
        if let Some(t) = &new.trust_policy {
            TrustPolicy::parse(t).map_err(|e| errors::malformed_policy(&e.message))?;
        }
        let role = self
            .roles
            .get_mut(&key(name))
            .ok_or_else(|| errors::not_exist(Entity::Role))?;
        if let Some(t) = new.trust_policy {
            role.trust_policy = t;
        }
        if let Some(d) = new.description {
            role.description = d;
        }
        if let Some(m) = new.max_session_duration {
            role.max_session_duration = m;
        }
        role.updated = now;
        Ok(role)
    }

    pub fn delete_role(&mut self, name: &str) -> Result<Role, ApiError> {
        if !self.role(name)?.policies.is_empty() {
            return Err(errors::delete_conflict("Role.Policy"));
        }
        Ok(self.roles.remove(&key(name)).expect("found above"))
    }

    pub fn list_roles(&self, marker: Option<&str>, max: usize) -> Page<&Role> {
        page(&self.roles, marker, max)
    }

    // ---- attachments ----

    fn attachments_mut(&mut self, target: Target) -> Result<&mut Vec<Attachment>, ApiError> {
        let not_found = errors::not_exist(target.entity());
        match target {
            Target::User(n) => self.users.get_mut(&key(n)).map(|u| &mut u.policies),
            Target::Group(n) => self.groups.get_mut(&key(n)).map(|g| &mut g.policies),
            Target::Role(n) => self.roles.get_mut(&key(n)).map(|r| &mut r.policies),
        }
        .ok_or(not_found)
    }

    /// The policies attached directly to a user, group or role.
    pub fn attachments(&self, target: Target) -> Result<&[Attachment], ApiError> {
        match target {
            Target::User(n) => self.user(n).map(|u| &u.policies[..]),
            Target::Group(n) => self.group(n).map(|g| &g.policies[..]),
            Target::Role(n) => self.role(n).map(|r| &r.policies[..]),
        }
    }

    /// The canonical spelling of an existing policy's name.
    fn policy_name(&self, kind: PolicyKind, name: &str) -> Result<String, ApiError> {
        match kind {
            PolicyKind::System => system::find(name).map(|p| p.name.to_string()),
            PolicyKind::Custom => self.policies.get(&key(name)).map(|p| p.name.clone()),
        }
        .ok_or_else(|| errors::not_exist(Entity::Policy))
    }

    pub fn attach(
        &mut self,
        target: Target,
        kind: PolicyKind,
        policy: &str,
        now: i64,
        limits: &Limits,
    ) -> Result<(), ApiError> {
        let entity = target.entity();
        self.attachments(target)?;
        let name = self.policy_name(kind, policy)?;
        let list = self.attachments_mut(target)?;
        if list.iter().any(|a| a.kind == kind && a.name == name) {
            return Err(errors::policy_already_attached(entity));
        }
        let limit = match (kind, entity) {
            (PolicyKind::System, _) => limits.system_policies_per_principal,
            (PolicyKind::Custom, Entity::User) => limits.custom_policies_per_user,
            (PolicyKind::Custom, _) => limits.custom_policies_per_group_or_role,
        };
        if list.iter().filter(|a| a.kind == kind).count() >= limit {
            return Err(errors::limit_exceeded(&format!("{}.Policy", entity.code())));
        }
        list.push(Attachment {
            kind,
            name,
            attached: now,
        });
        Ok(())
    }

    pub fn detach(&mut self, target: Target, kind: PolicyKind, policy: &str) -> Result<(), ApiError> {
        let entity = target.entity();
        self.attachments(target)?;
        let name = self.policy_name(kind, policy)?;
        let list = self.attachments_mut(target)?;
        let before = list.len();
        list.retain(|a| !(a.kind == kind && a.name == name));
        if list.len() == before {
            return Err(errors::policy_not_attached(entity));
        }
        Ok(())
    }

    /// ListEntitiesForPolicy: the users, groups and roles with the policy attached, with
    /// their attach times.
    #[allow(clippy::type_complexity)]
    pub fn entities_for_policy(
        &self,
        kind: PolicyKind,
        policy: &str,
    ) -> Result<(Vec<(&User, i64)>, Vec<(&Group, i64)>, Vec<(&Role, i64)>), ApiError> {
        let name = self.policy_name(kind, policy)?;
        let when = |list: &[Attachment]| {
            list.iter()
                .find(|a| a.kind == kind && a.name == name)
                .map(|a| a.attached)
        };
        Ok((
            self.users
                .values()
                .filter_map(|u| when(&u.policies).map(|t| (u, t)))
                .collect(),
            self.groups
                .values()
                .filter_map(|g| when(&g.policies).map(|t| (g, t)))
                .collect(),
            self.roles
                .values()
                .filter_map(|r| when(&r.policies).map(|t| (r, t)))
                .collect(),
        ))
    }

    // ---- evaluation inputs ----

    fn resolve(&self, attachments: &[Attachment]) -> Vec<AttachedPolicy> {
        attachments
            .iter()
            .filter_map(|a| {
                let document = match a.kind {
                    PolicyKind::System => system::document(&a.name)?,
                    PolicyKind::Custom => {
                        // Stored documents were validated on write; one that no longer parses
                        // (never expected) grants nothing.
                        let text = &self.policies.get(&key(&a.name))?.default_document().document;
                        Arc::new(PolicyDocument::parse(text).ok()?)
                    }
                };
                Some(AttachedPolicy {
                    name: a.name.clone(),
                    kind: a.kind,
                    document,
                })
            })
            .collect()
    }

    /// The policies in force for a user: its own and its groups'.
    pub fn policies_for_user(&self, user: &str) -> Vec<AttachedPolicy> {
        let Ok(u) = self.user(user) else {
            return Vec::new();
        };
        let mut out = self.resolve(&u.policies);
        for m in &u.groups {
            if let Some(g) = self.groups.get(&m.group) {
                out.extend(self.resolve(&g.policies));
            }
        }
        out
    }

    /// The policies in force for a role's sessions (before the session policy).
    pub fn policies_for_role(&self, role: &str) -> Vec<AttachedPolicy> {
        self.role(role).map(|r| self.resolve(&r.policies)).unwrap_or_default()
    }
}

fn system_view(p: &system::SystemPolicy, attachment_count: usize) -> PolicyView {
    PolicyView {
        name: p.name.to_string(),
        kind: PolicyKind::System,
        description: p.description.to_string(),
        default_version: p.default_version.to_string(),
        created: SYSTEM_POLICY_CREATED,
        updated: SYSTEM_POLICY_CREATED,
        attachment_count,
        default_document: p.document_text.to_string(),
        default_version_created: SYSTEM_POLICY_CREATED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"vpc:Describe*","Resource":"*"}]}"#;
    const TRUST: &str = r#"{"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"RAM":["acs:ram::100:root"]}}],"Version":"1"}"#;

    fn limits() -> Limits {
        Limits::default()
    }

    fn named(name: &str) -> UserFields {
        UserFields {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> String {
        r.unwrap_err().code.into_owned()
    }

    #[test]
    fn user_lifecycle() {
        let mut d = Directory::default();
        let u = d
            .create_user(
                UserFields {
                    display_name: Some("Alice".into()),
                    ..named("alice")
                },
                10,
                &limits(),
            )
            .unwrap();
        assert_eq!(
            (u.name.as_str(), u.display_name.as_str(), u.id.len()),
            ("alice", "Alice", 16)
        );
        let id = u.id.clone();
        assert_eq!(
            code(d.create_user(named("ALICE"), 11, &limits())),
            "EntityAlreadyExists.User"
        );
        assert_eq!(d.user("Alice").unwrap().id, id);
        assert_eq!(d.user_by_id(&id).unwrap().name, "alice");
        assert_eq!(code(d.user("bob")), "EntityNotExist.User");
        d.create_user(named("bob"), 12, &limits()).unwrap();
        assert_eq!(
            code(d.update_user("alice", named("Bob"), 13)),
            "EntityAlreadyExists.User"
        );
        let u = d
            .update_user(
                "alice",
                UserFields {
                    name: Some("carol".into()),
                    email: Some("c@x".into()),
                    ..Default::default()
                },
                14,
            )
            .unwrap();
        assert_eq!(
            (
                u.name.as_str(),
                u.email.as_str(),
                u.display_name.as_str(),
                u.updated,
                u.id.as_str()
            ),
            ("carol", "c@x", "Alice", 14, id.as_str())
        );
        assert_eq!(code(d.user("alice")), "EntityNotExist.User");
        assert_eq!(code(d.delete_user("carol", true)), "DeleteConflict.User.AccessKey");
        d.delete_user("carol", false).unwrap();
        assert_eq!(code(d.delete_user("carol", false)), "EntityNotExist.User");
    }

    #[test]
    fn user_limit() {
        let mut d = Directory::default();
        let l = Limits { users: 2, ..limits() };
        d.create_user(named("a"), 1, &l).unwrap();
        d.create_user(named("b"), 1, &l).unwrap();
        assert_eq!(code(d.create_user(named("c"), 1, &l)), "LimitExceeded.User");
        assert_eq!(
            code(d.create_user(UserFields::default(), 1, &l)),
            "MissingParameter.UserName"
        );
    }

    #[test]
    fn list_users_pages() {
        let mut d = Directory::default();
        for n in ["d", "b", "a", "c", "E"] {
            d.create_user(named(n), 1, &limits()).unwrap();
        }
        let p = d.list_users(None, 2);
        assert_eq!(p.items.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(p.next_marker.as_deref(), Some("c"));
        let p = d.list_users(p.next_marker.as_deref(), 2);
        assert_eq!(p.items.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["c", "d"]);
        let p = d.list_users(p.next_marker.as_deref(), 2);
        assert_eq!(p.items.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["E"]);
        assert_eq!(p.next_marker, None);
        assert_eq!(d.list_users(None, 5).next_marker, None);
    }

    #[test]
    fn groups_and_memberships() {
        let mut d = Directory::default();
        d.create_user(named("alice"), 1, &limits()).unwrap();
        let g = d.create_group("ops".into(), Some("c".into()), 1, &limits()).unwrap();
        assert!(g.id.starts_with("g-") && g.id.len() == 18);
        assert_eq!(
            code(d.create_group("OPS".into(), None, 1, &limits())),
            "EntityAlreadyExists.Group"
        );
        d.add_user_to_group("alice", "ops", 5, &limits()).unwrap();
        assert_eq!(
            code(d.add_user_to_group("alice", "ops", 5, &limits())),
            "EntityAlreadyExists.User.Group"
        );
        assert_eq!(
            code(d.add_user_to_group("bob", "ops", 5, &limits())),
            "EntityNotExist.User"
        );
        assert_eq!(
            code(d.add_user_to_group("alice", "dev", 5, &limits())),
            "EntityNotExist.Group"
        );
        assert_eq!(code(d.delete_group("ops")), "DeleteConflict.Group.User");
        assert_eq!(code(d.delete_user("alice", false)), "DeleteConflict.User.Group");
        // Renaming the group keeps the membership.
        d.update_group("ops", Some("netops".into()), None, 6).unwrap();
        assert_eq!(d.groups_for_user("alice").unwrap()[0].0.name, "netops");
        assert_eq!(d.users_for_group("netops", None, 10).unwrap().items[0].0.name, "alice");
        assert_eq!(code(d.remove_user_from_group("alice", "ops")), "EntityNotExist.Group");
        d.remove_user_from_group("alice", "netops").unwrap();
        assert_eq!(
            code(d.remove_user_from_group("alice", "netops")),
            "EntityNotExist.User.Group"
        );
        d.delete_group("netops").unwrap();
        let l = Limits {
            groups_per_user: 1,
            groups: 2,
            ..limits()
        };
        d.create_group("a".into(), None, 1, &l).unwrap();
        d.create_group("b".into(), None, 1, &l).unwrap();
        assert_eq!(code(d.create_group("c".into(), None, 1, &l)), "LimitExceeded.Group");
        d.add_user_to_group("alice", "a", 1, &l).unwrap();
        assert_eq!(
            code(d.add_user_to_group("alice", "b", 1, &l)),
            "LimitExceeded.User.Group"
        );
    }

    #[test]
    fn policies_and_versions() {
        let mut d = Directory::default();
        assert_eq!(
            code(d.create_policy("p".into(), "{}", None, 1, &limits())),
            "MalformedPolicyDocument"
        );
        d.create_policy("ReadVpc".into(), DOC, Some("read".into()), 1, &limits())
            .unwrap();
        assert_eq!(
            code(d.create_policy("readvpc".into(), DOC, None, 1, &limits())),
            "EntityAlreadyExists.Policy"
        );
        assert_eq!(
            code(d.create_policy("AdministratorAccess".into(), DOC, None, 1, &limits())),
            "EntityAlreadyExists.Policy"
        );
        let v = d.policy(PolicyKind::Custom, "ReadVpc").unwrap();
        assert_eq!(
            (
                v.default_version.as_str(),
                v.attachment_count,
                v.default_document.as_str()
            ),
            ("v1", 0, DOC)
        );
        assert_eq!(code(d.policy(PolicyKind::System, "ReadVpc")), "EntityNotExist.Policy");
        assert_eq!(
            d.policy(PolicyKind::System, "AliyunVPCReadOnlyAccess").unwrap().kind,
            PolicyKind::System
        );
        let l = Limits {
            versions_per_policy: 3,
            ..limits()
        };
        assert_eq!(
            d.create_policy_version("ReadVpc", DOC, false, RotateStrategy::None, 2, &l)
                .unwrap()
                .id,
            "v2"
        );
        assert_eq!(
            d.create_policy_version("ReadVpc", DOC, true, RotateStrategy::None, 3, &l)
                .unwrap()
                .id,
            "v3"
        );
        assert_eq!(d.policy(PolicyKind::Custom, "ReadVpc").unwrap().default_version, "v3");
        assert_eq!(
            code(d.create_policy_version("ReadVpc", DOC, false, RotateStrategy::None, 4, &l)),
            "LimitExceeded.Policy.Version"
        );
        assert_eq!(
            code(d.create_policy_version("ReadVpc", "{}", false, RotateStrategy::None, 4, &l)),
            "MalformedPolicyDocument"
        );
        let rotated = RotateStrategy::DeleteOldestNonDefaultVersionWhenLimitExceeded;
        assert_eq!(
            d.create_policy_version("ReadVpc", DOC, false, rotated, 4, &l)
                .unwrap()
                .id,
            "v4"
        );
        let ids: Vec<String> = d
            .policy_versions(PolicyKind::Custom, "ReadVpc")
            .unwrap()
            .into_iter()
            .map(|(v, _)| v.id)
            .collect();
        assert_eq!(ids, ["v2", "v3", "v4"]);
        assert_eq!(
            code(d.delete_policy_version("ReadVpc", "v3")),
            "DeleteConflict.Policy.Version.Default"
        );
        assert_eq!(
            code(d.delete_policy_version("ReadVpc", "v9")),
            "EntityNotExist.Policy.Version"
        );
        d.set_default_policy_version("ReadVpc", "v4", 5).unwrap();
        assert!(d.policy_version(PolicyKind::Custom, "ReadVpc", "v4").unwrap().1);
        assert_eq!(
            code(d.set_default_policy_version("ReadVpc", "v1", 5)),
            "EntityNotExist.Policy.Version"
        );
        d.delete_policy_version("ReadVpc", "v3").unwrap();
        assert_eq!(code(d.delete_policy("ReadVpc", false)), "DeleteConflict.Policy.Version");
        d.delete_policy("ReadVpc", true).unwrap();
        assert_eq!(code(d.delete_policy("ReadVpc", true)), "EntityNotExist.Policy");
        assert_eq!(
            d.policy_versions(PolicyKind::System, "AdministratorAccess")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn list_policies_pages_system_then_custom() {
        let mut d = Directory::default();
        d.create_policy("Mine".into(), DOC, None, 1, &limits()).unwrap();
        let all = d.list_policies(None, None, 1000);
        assert_eq!(all.items.len(), system::SYSTEM_POLICIES.len() + 1);
        assert_eq!(all.items.last().unwrap().name, "Mine");
        assert_eq!(d.list_policies(Some(PolicyKind::Custom), None, 1000).items.len(), 1);
        assert_eq!(
            d.list_policies(Some(PolicyKind::System), None, 1000).items.len(),
            system::SYSTEM_POLICIES.len()
        );
        let first = d.list_policies(None, None, 2);
        let rest = d.list_policies(None, first.next_marker.as_deref(), 1000);
        assert_eq!(first.items.len() + rest.items.len(), all.items.len());
        assert_eq!(rest.next_marker, None);
    }

    #[test]
    fn attachments_and_evaluation_inputs() {
        let mut d = Directory::default();
        d.create_user(named("alice"), 1, &limits()).unwrap();
        d.create_group("ops".into(), None, 1, &limits()).unwrap();
        d.create_policy("Mine".into(), DOC, None, 1, &limits()).unwrap();
        d.attach(
            Target::User("alice"),
            PolicyKind::System,
            "AliyunVPCReadOnlyAccess",
            2,
            &limits(),
        )
        .unwrap();
        assert_eq!(
            code(d.attach(
                Target::User("alice"),
                PolicyKind::System,
                "AliyunVPCReadOnlyAccess",
                2,
                &limits()
            )),
            "EntityAlreadyExists.User.Policy"
        );
        assert_eq!(
            code(d.attach(
                Target::User("alice"),
                PolicyKind::Custom,
                "AliyunVPCReadOnlyAccess",
                2,
                &limits()
            )),
            "EntityNotExist.Policy"
        );
        assert_eq!(
            code(d.attach(Target::User("zed"), PolicyKind::Custom, "Mine", 2, &limits())),
            "EntityNotExist.User"
        );
        d.attach(Target::Group("ops"), PolicyKind::Custom, "mine", 2, &limits())
            .unwrap();
        assert_eq!(d.attachments(Target::Group("ops")).unwrap()[0].name, "Mine");
        d.add_user_to_group("alice", "ops", 3, &limits()).unwrap();
        let names: Vec<String> = d.policies_for_user("alice").into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["AliyunVPCReadOnlyAccess", "Mine"]);
        assert_eq!(d.policy(PolicyKind::Custom, "Mine").unwrap().attachment_count, 1);
        assert_eq!(code(d.delete_policy("Mine", true)), "DeleteConflict.Policy.Group");
        assert_eq!(code(d.delete_group("ops")), "DeleteConflict.Group.User");
        let (users, groups, roles) = d.entities_for_policy(PolicyKind::Custom, "Mine").unwrap();
        assert_eq!((users.len(), groups.len(), roles.len()), (0, 1, 0));
        assert_eq!(
            code(d.detach(Target::User("alice"), PolicyKind::Custom, "Mine")),
            "EntityNotExist.User.Policy"
        );
        d.detach(Target::Group("ops"), PolicyKind::Custom, "Mine").unwrap();
        assert_eq!(d.policies_for_user("alice").len(), 1);
        assert_eq!(code(d.delete_user("alice", false)), "DeleteConflict.User.Group");
        d.remove_user_from_group("alice", "ops").unwrap();
        assert_eq!(code(d.delete_user("alice", false)), "DeleteConflict.User.Policy");
        let l = Limits {
            custom_policies_per_group_or_role: 0,
            ..limits()
        };
        assert_eq!(
            code(d.attach(Target::Group("ops"), PolicyKind::Custom, "Mine", 2, &l)),
            "LimitExceeded.Group.Policy"
        );
        assert!(d.policies_for_user("nobody").is_empty());
    }

    #[test]
    fn roles() {
        let mut d = Directory::default();
        assert_eq!(
            code(d.create_role("Ops".into(), RoleFields::default(), 1, &limits())),
            "MissingParameter.AssumeRolePolicyDocument"
        );
        let bad = RoleFields {
            trust_policy: Some(DOC.into()),
            ..Default::default()
        };
        assert_eq!(
            code(d.create_role("Ops".into(), bad, 1, &limits())),
            "MalformedPolicyDocument"
        );
        let fields = RoleFields {
            trust_policy: Some(TRUST.into()),
            max_session_duration: Some(7200),
            ..Default::default()
        };
        let r = d.create_role("Ops".into(), fields.clone(), 1, &limits()).unwrap();
        assert_eq!((r.max_session_duration, r.id.len()), (7200, 19));
        assert_eq!(
            code(d.create_role("ops".into(), fields, 1, &limits())),
            "EntityAlreadyExists.Role"
        );
        d.attach(
            Target::Role("ops"),
            PolicyKind::System,
            "AliyunVPCFullAccess",
            2,
            &limits(),
        )
        .unwrap();
        assert_eq!(d.policies_for_role("Ops").len(), 1);
        assert_eq!(code(d.delete_role("Ops")), "DeleteConflict.Role.Policy");
        let r = d
            .update_role(
                "Ops",
                RoleFields {
                    description: Some("d".into()),
                    ..Default::default()
                },
                3,
            )
            .unwrap();
        assert_eq!(
            (r.description.as_str(), r.trust_policy.as_str(), r.updated),
            ("d", TRUST, 3)
        );
        assert_eq!(
            code(d.update_role(
                "Ops",
                RoleFields {
                    trust_policy: Some("x".into()),
                    ..Default::default()
                },
                3
            )),
            "MalformedPolicyDocument"
        );
        d.detach(Target::Role("Ops"), PolicyKind::System, "AliyunVPCFullAccess")
            .unwrap();
        d.delete_role("Ops").unwrap();
        assert_eq!(code(d.role("Ops")), "EntityNotExist.Role");
        assert_eq!(d.list_roles(None, 10).items.len(), 0);
    }

    #[test]
    fn json_round_trip() {
        let mut d = Directory::default();
        d.create_user(named("alice"), 1, &limits()).unwrap();
        d.create_group("ops".into(), None, 1, &limits()).unwrap();
        d.add_user_to_group("alice", "ops", 1, &limits()).unwrap();
        d.create_policy("Mine".into(), DOC, None, 1, &limits()).unwrap();
        d.create_role(
            "R".into(),
            RoleFields {
                trust_policy: Some(TRUST.into()),
                ..Default::default()
            },
            1,
            &limits(),
        )
        .unwrap();
        assert_eq!(Directory::from_json(&d.to_json()).unwrap(), d);
        assert_eq!(Directory::from_json("{}").unwrap(), Directory::default());
    }
}
