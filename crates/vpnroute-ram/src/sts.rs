//! AssumeRole's parameter rules (RoleArn, RoleSessionName, DurationSeconds, Policy) with STS's
//! error codes, and who may call it.

use crate::policy::{DocumentKind, PolicyDocument, MAX_SESSION_POLICY_CHARS};
use crate::principal::parse_role_arn;

/// Shortest session (15 minutes).
pub const MIN_DURATION_SECONDS: u32 = 900;
/// Session length when DurationSeconds is absent.
pub const DEFAULT_DURATION_SECONDS: u32 = 3600;
/// A role's MaxSessionDuration bounds (RAM CreateRole).
pub const MAX_SESSION_DURATION_RANGE: std::ops::RangeInclusive<u32> = 3600..=43_200;

/// A refused AssumeRole parameter: STS's code and message (all HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StsParamError {
    #[error("Parameter {0} is required.")]
    Missing(&'static str),
    #[error("The parameter RoleArn is wrongly formed.")]
    RoleArn,
    #[error("The parameter RoleSessionName is wrongly formed.")]
    RoleSessionName,
    /// Carries the role's MaxSessionDuration for the message.
    #[error("The Min/Max value of DurationSeconds is 15min/{}.", describe_seconds(*.0))]
    DurationSeconds(u32),
    #[error("The parameter Policy is beyond the length limit of {MAX_SESSION_POLICY_CHARS} characters.")]
    PolicySize,
    #[error("The parameter Policy has not passed grammar check. {0}")]
    PolicyGrammar(String),
}

impl StsParamError {
    pub fn code(&self) -> String {
        match self {
            StsParamError::Missing(name) => format!("MissingParameter.{name}"),
            StsParamError::RoleArn => "InvalidParameter.RoleArn".into(),
            StsParamError::RoleSessionName => "InvalidParameter.RoleSessionName".into(),
            StsParamError::DurationSeconds(_) => "InvalidParameter.DurationSeconds".into(),
            StsParamError::PolicySize => "InvalidParameter.PolicySize".into(),
            StsParamError::PolicyGrammar(_) => "InvalidParameter.PolicyGrammar".into(),
        }
    }
}

/// `3600` ⇒ `1hr`, `43200` ⇒ `12hr`, otherwise seconds.
fn describe_seconds(seconds: u32) -> String {
    if seconds % 3600 == 0 {
        format!("{}hr", seconds / 3600)
    } else {
        format!("{seconds}s")
    }
}

/// `(account_id, role_name)` of a RoleArn parameter.
pub fn role_arn_param(value: Option<&str>) -> Result<(String, String), StsParamError> {
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or(StsParamError::Missing("RoleArn"))?;
    parse_role_arn(value)
        .map(|(account, name)| (account.to_string(), name.to_string()))
        .ok_or(StsParamError::RoleArn)
}

/// RoleSessionName: 2–64 characters of `A-Za-z0-9.@-_` (the larger documented limit).
pub fn session_name_param(value: Option<&str>) -> Result<String, StsParamError> {
    let value = value
        .filter(|v| !v.is_empty())
        .ok_or(StsParamError::Missing("RoleSessionName"))?;
    let valid = (2..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_'));
    if valid {
        Ok(value.to_string())
    } else {
        Err(StsParamError::RoleSessionName)
    }
}

/// DurationSeconds: 900 ..= the role's MaxSessionDuration, default 3600.
pub fn duration_param(value: Option<&str>, role_max_session_duration: u32) -> Result<u32, StsParamError> {
    let err = StsParamError::DurationSeconds(role_max_session_duration);
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_DURATION_SECONDS.min(role_max_session_duration));
    };
    let seconds: u32 = value.parse().map_err(|_| err.clone())?;
    if (MIN_DURATION_SECONDS..=role_max_session_duration).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(err)
    }
}

/// The inline session policy, if given: at most 2048 characters, valid grammar.
pub fn session_policy_param(value: Option<&str>) -> Result<Option<PolicyDocument>, StsParamError> {
    let Some(text) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > MAX_SESSION_POLICY_CHARS {
        return Err(StsParamError::PolicySize);
    }
    PolicyDocument::parse_as(text, DocumentKind::Identity, MAX_SESSION_POLICY_CHARS)
        .map(Some)
        .map_err(|e| StsParamError::PolicyGrammar(e.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn role_arn() {
        assert_eq!(
            role_arn_param(Some("acs:ram::100:role/Ops")),
            Ok(("100".into(), "Ops".into()))
        );
        assert_eq!(role_arn_param(None), Err(StsParamError::Missing("RoleArn")));
        assert_eq!(role_arn_param(Some("")), Err(StsParamError::Missing("RoleArn")));
        assert_eq!(role_arn_param(Some("acs:ram::100:user/x")), Err(StsParamError::RoleArn));
        assert_eq!(StsParamError::RoleArn.code(), "InvalidParameter.RoleArn");
        assert_eq!(StsParamError::Missing("RoleArn").code(), "MissingParameter.RoleArn");
        assert_eq!(
            StsParamError::Missing("RoleArn").to_string(),
            "Parameter RoleArn is required."
        );
    }

    #[test]
    fn session_name() {
        assert_eq!(session_name_param(Some("ci.job-1@x_y")), Ok("ci.job-1@x_y".into()));
        assert_eq!(session_name_param(Some("a")), Err(StsParamError::RoleSessionName));
        assert_eq!(
            session_name_param(Some(&"a".repeat(65))),
            Err(StsParamError::RoleSessionName)
        );
        assert!(session_name_param(Some(&"a".repeat(64))).is_ok());
        assert_eq!(session_name_param(Some("a b")), Err(StsParamError::RoleSessionName));
        assert_eq!(session_name_param(None), Err(StsParamError::Missing("RoleSessionName")));
    }

    #[test]
    fn duration() {
        assert_eq!(duration_param(None, 3600), Ok(3600));
        assert_eq!(duration_param(Some(""), 43_200), Ok(3600));
        assert_eq!(duration_param(Some("900"), 3600), Ok(900));
        assert_eq!(duration_param(Some("3600"), 3600), Ok(3600));
        assert_eq!(
            duration_param(Some("3601"), 3600),
            Err(StsParamError::DurationSeconds(3600))
        );
        assert_eq!(
            duration_param(Some("899"), 3600),
            Err(StsParamError::DurationSeconds(3600))
        );
        assert_eq!(duration_param(Some("43200"), 43_200), Ok(43_200));
        assert_eq!(
            duration_param(Some("-1"), 3600),
            Err(StsParamError::DurationSeconds(3600))
        );
        assert_eq!(
            duration_param(Some("1e3"), 3600),
            Err(StsParamError::DurationSeconds(3600))
        );
        assert_eq!(
            StsParamError::DurationSeconds(3600).to_string(),
            "The Min/Max value of DurationSeconds is 15min/1hr."
        );
        assert_eq!(
            StsParamError::DurationSeconds(5400).to_string(),
            "The Min/Max value of DurationSeconds is 15min/5400s."
        );
    }

    #[test]
    fn session_policy() {
        assert_eq!(session_policy_param(None), Ok(None));
        let ok = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"vpc:Describe*","Resource":"*"}]}"#;
        assert!(session_policy_param(Some(ok)).unwrap().is_some());
        assert_eq!(
            session_policy_param(Some(&"x".repeat(2049))),
            Err(StsParamError::PolicySize)
        );
        let bad = session_policy_param(Some("{\"Version\":\"1\"}")).unwrap_err();
        assert_eq!(bad.code(), "InvalidParameter.PolicyGrammar");
        assert!(bad
            .to_string()
            .starts_with("The parameter Policy has not passed grammar check."));
    }

    proptest! {
        #[test]
        fn duration_inside_bounds_is_kept(max in 3600u32..=43_200, d in 900u32..=43_200) {
            let result = duration_param(Some(&d.to_string()), max);
            if d <= max {
                prop_assert_eq!(result, Ok(d));
            } else {
                prop_assert_eq!(result, Err(StsParamError::DurationSeconds(max)));
            }
        }
    }
}
