//! Fixtures shared by the unit tests.

use crate::directory::{Directory, Limits, UserFields};
use crate::principal::Principal;

/// RAM user `alice` (id 2001) of account 100.
pub fn alice() -> Principal {
    Principal::User {
        account_id: "100".into(),
        user_id: "2001".into(),
        user_name: "alice".into(),
    }
}

/// Session `ci` of role `role_name` (id 3001) of account 100.
pub fn session_of(role_name: &str) -> Principal {
    Principal::AssumedRole {
        account_id: "100".into(),
        role_id: "3001".into(),
        role_name: role_name.into(),
        session_name: "ci".into(),
    }
}

/// Adds user `name` to the directory; its id.
pub fn add_user(d: &mut Directory, name: &str) -> String {
    let fields = UserFields {
        name: Some(name.into()),
        ..Default::default()
    };
    d.create_user(fields, 1, &Limits::default()).unwrap().id.clone()
}
