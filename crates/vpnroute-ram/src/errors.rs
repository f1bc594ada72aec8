//! RAM's and STS's error codes (RAM "Error messages" page; STS AssumeRole page), as
//! [`ApiError`]s with Alibaba's code, message and HTTP status. Messages Alibaba does not give
//! are written in its style and marked "(ours)".

use vpnroute_domain::ApiError;

/// The kinds of RAM entity named in error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    User,
    Group,
    Policy,
    Role,
}

impl Entity {
    pub fn code(self) -> &'static str {
        match self {
            Entity::User => "User",
            Entity::Group => "Group",
            Entity::Policy => "Policy",
            Entity::Role => "Role",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Entity::User => "user",
            Entity::Group => "group",
            Entity::Policy => "policy",
            Entity::Role => "role",
        }
    }

    /// Plural noun for limit messages.
    fn plural(self) -> &'static str {
        match self {
            Entity::User => "users",
            Entity::Group => "groups",
            Entity::Policy => "policies",
            Entity::Role => "roles",
        }
    }
}

/// `EntityNotExist.<Entity>` 404 `The <entity> does not exist.`
pub fn not_exist(entity: Entity) -> ApiError {
    ApiError::new(
        format!("EntityNotExist.{}", entity.code()),
        format!("The {} does not exist.", entity.noun()),
        404,
    )
}

/// `EntityAlreadyExists.<Entity>` 409 `The <entity> does already EXIST.`
pub fn already_exists(entity: Entity) -> ApiError {
    ApiError::new(
        format!("EntityAlreadyExists.{}", entity.code()),
        format!("The {} does already EXIST.", entity.noun()),
        409,
    )
}

/// `EntityNotExist.<Entity>.Policy` 404: the policy is not attached.
pub fn policy_not_attached(entity: Entity) -> ApiError {
    ApiError::new(
        format!("EntityNotExist.{}.Policy", entity.code()),
        format!("The {} has not been attached this policy.", entity.noun()),
        404,
    )
}

/// `EntityAlreadyExists.<Entity>.Policy` 409.
pub fn policy_already_attached(entity: Entity) -> ApiError {
    ApiError::new(
        format!("EntityAlreadyExists.{}.Policy", entity.code()),
        format!("The {} has already been attached this policy.", entity.noun()),
        409,
    )
}

pub fn user_not_in_group() -> ApiError {
    ApiError::new_static("EntityNotExist.User.Group", "The user has not joined the group.", 404)
}

pub fn user_already_in_group() -> ApiError {
    ApiError::new_static(
        "EntityAlreadyExists.User.Group",
        "The user has already joined the group.",
        409,
    )
}

pub fn access_key_not_exist() -> ApiError {
    ApiError::new_static(
        "EntityNotExist.User.AccessKey",
        "The user access key does not exist.",
        404,
    )
}

pub fn policy_version_not_exist() -> ApiError {
    ApiError::new_static(
        "EntityNotExist.Policy.Version",
        "The policy version does not exist.",
        404,
    )
}

/// `DeleteConflict.<what>` 409 with Alibaba's "CAN NOT" message.
pub fn delete_conflict(what: &str) -> ApiError {
    let message = match what {
        "User.Group" => "The user CAN NOT be in any group while deleting the user.",
        "User.AccessKey" => "The user CAN NOT have any access key while deleting the user.",
        "User.Policy" => "The user CAN NOT be attached any policy while deleting the user.",
        "Group.User" => "The group CAN NOT have any user while deleting the group.",
        "Group.Policy" => "The group CAN NOT be attached any policy while deleting the group.",
        "Role.Policy" => "The role CAN NOT be attached any policy while deleting the role.",
        "Policy.User" => "The policy CAN NOT be attached to any user while deleting the policy.",
        "Policy.Group" => "The policy CAN NOT be attached to any group while deleting the policy.",
        "Policy.Role" => "The policy CAN NOT be attached to any role while deleting the policy.",
        "Policy.Version" => "The policy CAN NOT have any non-default version while deleting the policy.",
        "Policy.Version.Default" => "The default policy version CAN NOT been deleted directly.",
        _ => "The entity CAN NOT be deleted while it is in use.",
    };
    ApiError::new(format!("DeleteConflict.{what}"), message, 409)
}

/// `LimitExceeded.<what>` 409 `The count of <things> beyond the current limits.`
pub fn limit_exceeded(what: &str) -> ApiError {
    let things = match what {
        "User" => Entity::User.plural(),
        "Group" => Entity::Group.plural(),
        "Policy" => Entity::Policy.plural(),
        "Role" => Entity::Role.plural(),
        "User.AccessKey" => "access keys of the user",
        "User.Group" => "groups of the user",
        "User.Policy" => "policies attached to the user",
        "Group.Policy" => "policies attached to the group",
        "Role.Policy" => "policies attached to the role",
        "Policy.Version" => "versions of the policy",
        _ => "entities",
    };
    ApiError::new(
        format!("LimitExceeded.{what}"),
        format!("The count of {things} beyond the current limits."),
        409,
    )
}

/// `MalformedPolicyDocument` 400 with the parser's detail.
pub fn malformed_policy(detail: &str) -> ApiError {
    ApiError::new("MalformedPolicyDocument", detail.to_string(), 400)
}

/// A RAM parameter with a character outside its set.
pub fn invalid_chars(param: &str) -> ApiError {
    ApiError::new(
        format!("InvalidParameter.{param}.InvalidChars"),
        format!("The parameter - \"{param}\" contains invalid chars."),
        400,
    )
}

/// A RAM parameter too long (or empty).
pub fn invalid_length(param: &str) -> ApiError {
    ApiError::new(
        format!("InvalidParameter.{param}.Length"),
        format!("The parameter - \"{param}\" beyond the length limit."),
        400,
    )
}

/// A RAM parameter with a bad format (numbers, enums, phone, email).
pub fn invalid_format(param: &str) -> ApiError {
    ApiError::new(
        format!("InvalidParameter.{param}.Format"),
        format!("The format of the parameter - \"{param}\" is incorrect."),
        400,
    )
}

pub fn invalid_policy_type() -> ApiError {
    ApiError::new_static(
        "InvalidParameter.PolicyType",
        "The parameter - \"PolicyType\" is incorrect.",
        400,
    )
}

/// A missing required RAM/STS parameter: STS's `MissingParameter.<Name>` (ours for RAM).
pub fn missing(param: &str) -> ApiError {
    ApiError::new(
        format!("MissingParameter.{param}"),
        format!("Parameter {param} is required."),
        400,
    )
}

/// RAM's denial of a RAM call.
pub fn no_permission() -> ApiError {
    ApiError::new_static("NoPermission", "You are not authorized to do this action.", 403)
}

/// STS's denial of AssumeRole by policy or trust.
pub fn sts_no_permission() -> ApiError {
    ApiError::new_static(
        "NoPermission",
        "No permission perform sts:AssumeRole on this Role. Maybe you are not authorized to perform sts:AssumeRole or the specified role does not trust you",
        403,
    )
}

/// STS's refusal of AssumeRole by the account itself.
pub fn root_cannot_assume() -> ApiError {
    ApiError::new_static("NoPermission", "Roles may not be assumed by root accounts.", 403)
}

/// STS AssumeRole on a role that does not exist.
pub fn sts_role_not_exist() -> ApiError {
    ApiError::new_static("EntityNotExist.Role", "The specified Role not exists.", 404)
}

/// VPC's denial of a RAM identity by policy.
pub fn forbidden_sub_user() -> ApiError {
    ApiError::new_static(
        "Forbbiden.SubUser",
        "User not authorized to operate on the specified resource as your account is created by another user.",
        403,
    )
}

/// VPC's plain denial.
pub fn forbidden() -> ApiError {
    ApiError::FORBIDDEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_messages_statuses() {
        let e = not_exist(Entity::User);
        assert_eq!(
            (e.code.as_ref(), e.message.as_ref(), e.status),
            ("EntityNotExist.User", "The user does not exist.", 404)
        );
        let e = already_exists(Entity::Role);
        assert_eq!(
            (e.code.as_ref(), e.message.as_ref(), e.status),
            ("EntityAlreadyExists.Role", "The role does already EXIST.", 409)
        );
        assert_eq!(policy_not_attached(Entity::Group).code, "EntityNotExist.Group.Policy");
        assert_eq!(policy_already_attached(Entity::User).status, 409);
        assert_eq!(
            delete_conflict("User.Group").message,
            "The user CAN NOT be in any group while deleting the user."
        );
        assert_eq!(
            delete_conflict("Policy.Version.Default").code,
            "DeleteConflict.Policy.Version.Default"
        );
        assert_eq!(
            limit_exceeded("User").message,
            "The count of users beyond the current limits."
        );
        assert_eq!(limit_exceeded("User.AccessKey").status, 409);
        assert_eq!(
            invalid_chars("UserName").message,
            "The parameter - \"UserName\" contains invalid chars."
        );
        assert_eq!(invalid_length("UserName").code, "InvalidParameter.UserName.Length");
        assert_eq!(invalid_format("MaxItems").code, "InvalidParameter.MaxItems.Format");
        assert_eq!(missing("UserName").message, "Parameter UserName is required.");
        assert_eq!(forbidden_sub_user().code, "Forbbiden.SubUser");
        assert_eq!(forbidden().status, 403);
        assert_eq!(no_permission().code, "NoPermission");
        assert_eq!(malformed_policy("x").status, 400);
    }
}
