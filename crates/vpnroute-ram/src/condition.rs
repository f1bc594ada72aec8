//! The `Condition` block: `{Operator: {Key: value | [values]}}`, validated when the policy is
//! parsed (values must fit the operator) and evaluated against a [`RequestContext`].
//!
//! Rules (Alibaba's where documented, ours marked "(ours)" and recorded in docs/compatibility.md):
//! * every operator and every key of a block must hold; a key holds when any value matches;
//! * a negated operator (`StringNotEquals`, `StringNotEqualsIgnoreCase`, `StringNotLike`,
//!   `NumericNotEquals`, `DateNotEquals`, `NotIpAddress`) holds when no value matches (ours);
//! * a key the request does not have fails the condition, negated or not (ours);
//! * a request value that does not parse for the operator (e.g. text for `NumericEquals`) fails it;
//! * key names compare ignoring case (ours); operator names are exact.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::context::{ContextValue, RequestContext};
use crate::policy::PolicyError;
use crate::wildcard::{self, Case};

/// A condition operator of the policy language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    IpAddress,
    NotIpAddress,
}

impl Operator {
    pub const ALL: [Operator; 21] = [
        Operator::StringEquals,
        Operator::StringNotEquals,
        Operator::StringEqualsIgnoreCase,
        Operator::StringNotEqualsIgnoreCase,
        Operator::StringLike,
        Operator::StringNotLike,
        Operator::NumericEquals,
        Operator::NumericNotEquals,
        Operator::NumericLessThan,
        Operator::NumericLessThanEquals,
        Operator::NumericGreaterThan,
        Operator::NumericGreaterThanEquals,
        Operator::DateEquals,
        Operator::DateNotEquals,
        Operator::DateLessThan,
        Operator::DateLessThanEquals,
        Operator::DateGreaterThan,
        Operator::DateGreaterThanEquals,
        Operator::Bool,
        Operator::IpAddress,
        Operator::NotIpAddress,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operator::StringEquals => "StringEquals",
            Operator::StringNotEquals => "StringNotEquals",
            Operator::StringEqualsIgnoreCase => "StringEqualsIgnoreCase",
            Operator::StringNotEqualsIgnoreCase => "StringNotEqualsIgnoreCase",
            Operator::StringLike => "StringLike",
            Operator::StringNotLike => "StringNotLike",
            Operator::NumericEquals => "NumericEquals",
            Operator::NumericNotEquals => "NumericNotEquals",
            Operator::NumericLessThan => "NumericLessThan",
            Operator::NumericLessThanEquals => "NumericLessThanEquals",
            Operator::NumericGreaterThan => "NumericGreaterThan",
            Operator::NumericGreaterThanEquals => "NumericGreaterThanEquals",
            Operator::DateEquals => "DateEquals",
            Operator::DateNotEquals => "DateNotEquals",
            Operator::DateLessThan => "DateLessThan",
            Operator::DateLessThanEquals => "DateLessThanEquals",
            Operator::DateGreaterThan => "DateGreaterThan",
            Operator::DateGreaterThanEquals => "DateGreaterThanEquals",
            Operator::Bool => "Bool",
            Operator::IpAddress => "IpAddress",
            Operator::NotIpAddress => "NotIpAddress",
        }
    }

    pub fn from_name(name: &str) -> Option<Operator> {
        Operator::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Holds when no value matches (instead of when any does).
    fn negated(self) -> bool {
        matches!(
            self,
            Operator::StringNotEquals
                | Operator::StringNotEqualsIgnoreCase
                | Operator::StringNotLike
                | Operator::NumericNotEquals
                | Operator::DateNotEquals
                | Operator::NotIpAddress
        )
    }
}

/// The values of one key, parsed for the operator's type.
#[derive(Debug, Clone, PartialEq)]
enum Operands {
    Text(Vec<String>),
    Number(Vec<f64>),
    Date(Vec<OffsetDateTime>),
    Bool(Vec<bool>),
    Net(Vec<IpNet>),
}

/// One `Operator: {Key: values}` pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    operator: Operator,
    /// The key as written (for serialisation); lookup ignores case.
    key: String,
    /// The values as written.
    raw: Vec<String>,
    operands: Operands,
}

/// Parses a `Condition` object into its (operator, key) pairs.
pub fn parse_block(value: &Value) -> Result<Vec<Condition>, PolicyError> {
    let ops = value
        .as_object()
        .ok_or_else(|| PolicyError::new("Condition must be an object of operators"))?;
    let mut out = Vec::new();
    for (op_name, keys) in ops {
        let operator = Operator::from_name(op_name)
            .ok_or_else(|| PolicyError::new(format!("Condition operator \"{op_name}\" is not supported")))?;
        let keys = keys
            .as_object()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| PolicyError::new(format!("Condition operator \"{op_name}\" must map keys to values")))?;
        for (key, values) in keys {
            if key.is_empty() {
                return Err(PolicyError::new("Condition key must not be empty"));
            }
            let raw = scalar_list(values).ok_or_else(|| {
                PolicyError::new(format!(
                    "Condition values of \"{key}\" must be a value or a non-empty list of values"
                ))
            })?;
            let operands = parse_operands(operator, &raw)
                .map_err(|bad| PolicyError::new(format!("Condition value \"{bad}\" is not valid for {op_name}")))?;
            out.push(Condition {
                operator,
                key: key.clone(),
                raw,
                operands,
            });
        }
    }
    Ok(out)
}

/// A string, number or boolean, or a non-empty list of them, each as text.
fn scalar_list(value: &Value) -> Option<Vec<String>> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        Value::Array(items) if !items.is_empty() => items.iter().map(scalar).collect(),
        Value::Array(_) => None,
        other => scalar(other).map(|s| vec![s]),
    }
}

fn parse_operands(op: Operator, raw: &[String]) -> Result<Operands, String> {
    fn all<T>(raw: &[String], parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
        raw.iter().map(|s| parse(s).ok_or_else(|| s.clone())).collect()
    }
    use Operator::*;
    Ok(match op {
        StringEquals
        | StringNotEquals
        | StringEqualsIgnoreCase
        | StringNotEqualsIgnoreCase
        | StringLike
        | StringNotLike => Operands::Text(raw.to_vec()),
        NumericEquals
        | NumericNotEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => Operands::Number(all(raw, parse_number)?),
        DateEquals | DateNotEquals | DateLessThan | DateLessThanEquals | DateGreaterThan | DateGreaterThanEquals => {
            Operands::Date(all(raw, parse_date)?)
        }
        Bool => Operands::Bool(all(raw, parse_bool)?),
        IpAddress | NotIpAddress => Operands::Net(all(raw, parse_net)?),
    })
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

fn parse_date(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A CIDR block or a bare address (a host route).
fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

impl Condition {
    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn values(&self) -> &[String] {
        &self.raw
    }

    /// Does the request satisfy this condition?
    pub fn holds(&self, ctx: &RequestContext) -> bool {
        let Some(actual) = ctx.lookup(&self.key) else {
            return false;
        };
        match self.any_value_matches(&actual) {
            Some(any) => any != self.operator.negated(),
            None => false,
        }
    }

    /// `None` when the request's value does not parse for the operator.
    fn any_value_matches(&self, actual: &ContextValue) -> Option<bool> {
        use Operator::*;
        Some(match &self.operands {
            Operands::Text(values) => {
                let actual = actual.as_text();
                values.iter().any(|v| match self.operator {
                    StringEquals | StringNotEquals => *v == actual,
                    StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => v.to_lowercase() == actual.to_lowercase(),
                    _ => wildcard::matches(v, &actual, Case::Sensitive),
                })
            }
            Operands::Number(values) => {
                let actual = parse_number(&actual.as_text())?;
                values.iter().any(|v| match self.operator {
                    NumericEquals | NumericNotEquals => actual == *v,
                    NumericLessThan => actual < *v,
                    NumericLessThanEquals => actual <= *v,
                    NumericGreaterThan => actual > *v,
                    _ => actual >= *v,
                })
            }
            Operands::Date(values) => {
                let actual = match actual {
                    ContextValue::Time(t) => *t,
                    other => parse_date(&other.as_text())?,
                };
                values.iter().any(|v| match self.operator {
                    DateEquals | DateNotEquals => actual == *v,
                    DateLessThan => actual < *v,
                    DateLessThanEquals => actual <= *v,
                    DateGreaterThan => actual > *v,
                    _ => actual >= *v,
                })
            }
            Operands::Bool(values) => {
                let actual = match actual {
                    ContextValue::Bool(b) => *b,
                    other => parse_bool(&other.as_text())?,
                };
                values.contains(&actual)
            }
            Operands::Net(nets) => {
                let ip = match actual {
                    ContextValue::Ip(ip) => *ip,
                    other => other.as_text().trim().parse::<IpAddr>().ok()?,
                };
                nets.iter().any(|net| net.contains(&ip))
            }
        })
    }
}

/// The `Condition` object for a list of conditions (grouped by operator), for serialisation.
pub fn to_json(conditions: &[Condition]) -> Value {
    let mut ops = serde_json::Map::new();
    for c in conditions {
        let keys = ops
            .entry(c.operator.name().to_string())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Value::Object(keys) = keys {
            let values = c.raw.iter().cloned().map(Value::String).collect();
            keys.insert(c.key.clone(), Value::Array(values));
        }
    }
    Value::Object(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::keys;
    use serde_json::json;
    use time::macros::datetime;

    fn ctx() -> RequestContext {
        RequestContext::at(datetime!(2026-12-01 08:00:00 UTC))
            .with_source_ip("192.168.7.9".parse().unwrap())
            .with("sts:ExternalId", "abc-123")
    }

    fn holds(block: Value) -> bool {
        let conds = parse_block(&block).unwrap();
        conds.iter().all(|c| c.holds(&ctx()))
    }

    #[test]
    fn string_operators() {
        assert!(holds(json!({"StringEquals": {"sts:ExternalId": "abc-123"}})));
        assert!(!holds(json!({"StringEquals": {"sts:ExternalId": "ABC-123"}})));
        assert!(holds(json!({"StringEqualsIgnoreCase": {"sts:ExternalId": "ABC-123"}})));
        assert!(holds(json!({"StringNotEquals": {"sts:ExternalId": ["x", "y"]}})));
        assert!(!holds(json!({"StringNotEquals": {"sts:ExternalId": ["x", "abc-123"]}})));
        assert!(!holds(
            json!({"StringNotEqualsIgnoreCase": {"sts:ExternalId": "ABC-123"}})
        ));
        assert!(holds(json!({"StringLike": {"sts:ExternalId": "abc-*"}})));
        assert!(holds(json!({"StringLike": {"sts:ExternalId": "abc-12?"}})));
        assert!(!holds(json!({"StringLike": {"sts:ExternalId": "ABC-*"}})));
        assert!(holds(json!({"StringNotLike": {"sts:ExternalId": "x*"}})));
        assert!(!holds(json!({"StringNotLike": {"sts:ExternalId": "a*"}})));
        // Key names ignore case.
        assert!(holds(json!({"StringEquals": {"STS:EXTERNALID": "abc-123"}})));
    }

    #[test]
    fn absent_key_fails_even_negated() {
        assert!(!holds(json!({"StringEquals": {"acs:Nothing": "x"}})));
        assert!(!holds(json!({"StringNotEquals": {"acs:Nothing": "x"}})));
        let no_ip = RequestContext::at(datetime!(2026-12-01 08:00:00 UTC));
        let conds = parse_block(&json!({"NotIpAddress": {"acs:SourceIp": "10.0.0.0/8"}})).unwrap();
        assert!(!conds[0].holds(&no_ip));
    }

    #[test]
    fn ip_operators() {
        assert!(holds(json!({"IpAddress": {"acs:SourceIp": "192.168.0.0/16"}})));
        assert!(holds(
            json!({"IpAddress": {"acs:SourceIp": ["10.0.0.0/8", "192.168.7.9"]}})
        ));
        assert!(!holds(json!({"IpAddress": {"acs:SourceIp": "10.0.0.0/8"}})));
        assert!(holds(json!({"NotIpAddress": {"acs:SourceIp": "10.0.0.0/8"}})));
        assert!(!holds(json!({"NotIpAddress": {"acs:SourceIp": "192.168.7.0/24"}})));
        assert!(!holds(json!({"IpAddress": {"acs:SourceIp": "::/0"}})));
    }

    #[test]
    fn date_operators() {
        assert!(holds(
            json!({"DateLessThan": {"acs:CurrentTime": "2026-12-01T09:00:00Z"}})
        ));
        assert!(!holds(
            json!({"DateLessThan": {"acs:CurrentTime": "2026-12-01T08:00:00Z"}})
        ));
        assert!(holds(
            json!({"DateLessThanEquals": {"acs:CurrentTime": "2026-12-01T16:00:00+08:00"}})
        ));
        assert!(holds(
            json!({"DateGreaterThan": {"acs:CurrentTime": "2026-01-01T00:00:00Z"}})
        ));
        assert!(holds(
            json!({"DateGreaterThanEquals": {"acs:CurrentTime": "2026-12-01T08:00:00Z"}})
        ));
        assert!(holds(
            json!({"DateEquals": {"acs:CurrentTime": "2026-12-01T08:00:00Z"}})
        ));
        assert!(holds(
            json!({"DateNotEquals": {"acs:CurrentTime": "2026-12-01T08:00:01Z"}})
        ));
    }

    #[test]
    fn bool_and_numeric_operators() {
        assert!(holds(json!({"Bool": {"acs:SecureTransport": "false"}})));
        assert!(!holds(json!({"Bool": {"acs:SecureTransport": true}})));
        assert!(!holds(json!({"Bool": {"acs:MFAPresent": "true"}})));
        let c = ctx().with("acs:Count", "5");
        let check = |block: Value| parse_block(&block).unwrap().iter().all(|x| x.holds(&c));
        assert!(check(json!({"NumericEquals": {"acs:Count": 5}})));
        assert!(check(json!({"NumericNotEquals": {"acs:Count": "6"}})));
        assert!(check(json!({"NumericLessThan": {"acs:Count": 6}})));
        assert!(check(json!({"NumericLessThanEquals": {"acs:Count": 5}})));
        assert!(check(json!({"NumericGreaterThan": {"acs:Count": 4.5}})));
        assert!(check(json!({"NumericGreaterThanEquals": {"acs:Count": 5}})));
        assert!(!check(json!({"NumericGreaterThan": {"acs:Count": 5}})));
        // A non-numeric request value fails.
        assert!(!check(json!({"NumericEquals": {"sts:ExternalId": 5}})));
    }

    #[test]
    fn every_key_and_operator_must_hold() {
        assert!(!holds(json!({
            "IpAddress": {"acs:SourceIp": "192.168.0.0/16"},
            "StringEquals": {"sts:ExternalId": "nope"}
        })));
    }

    #[test]
    fn invalid_blocks_are_rejected() {
        for bad in [
            json!("x"),
            json!({"StringMatches": {"k": "v"}}),
            json!({"StringEquals": "v"}),
            json!({"StringEquals": {}}),
            json!({"StringEquals": {"k": []}}),
            json!({"StringEquals": {"k": [{"a": 1}]}}),
            json!({"StringEquals": {"": "v"}}),
            json!({"NumericEquals": {"k": "five"}}),
            json!({"DateLessThan": {"acs:CurrentTime": "yesterday"}}),
            json!({"Bool": {"acs:SecureTransport": "yes"}}),
            json!({"IpAddress": {"acs:SourceIp": "300.1.1.1"}}),
        ] {
            assert!(parse_block(&bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn round_trips_through_json() {
        let block = json!({"IpAddress": {"acs:SourceIp": ["10.0.0.0/8"]}, "StringLike": {"a": ["b*"], "c": ["d"]}});
        let parsed = parse_block(&block).unwrap();
        assert_eq!(to_json(&parsed), block);
        assert_eq!(parse_block(&to_json(&parsed)).unwrap(), parsed);
        assert_eq!(parsed[0].key(), keys::SOURCE_IP);
    }
}
