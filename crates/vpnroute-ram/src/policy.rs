//! The policy language: parsing with validation, and what one document says about one
//! (action, resource) pair.
//!
//! Grammar (`{"Version":"1","Statement":[…]}`), Alibaba's where documented, ours marked "(ours)":
//! * `Version` must be `"1"`; `Statement` a non-empty list (at most [`MAX_STATEMENTS`] (ours));
//! * a statement has `Effect` (`Allow`|`Deny`, exact case (ours)), exactly one of `Action` /
//!   `NotAction`, exactly one of `Resource` / `NotResource` (identity and session policies),
//!   or a `Principal` instead of a resource (trust policies), an optional `Condition` and an
//!   optional `Sid` (ours); any other member is an error (ours);
//! * each value is a string or a non-empty list of strings;
//! * an action is `*` or `<service>:<name>`; a resource is `*` or starts with `acs:` (ours);
//! * action names compare ignoring case (Alibaba: "in most cases not case-sensitive");
//!   resource ARNs compare exactly, except their `acs:<service>` prefix (the text before the
//!   second `:`), which ignores case (ours).

use serde_json::{Map, Value};

use crate::condition::{self, Condition};
use crate::context::RequestContext;
use crate::wildcard::{self, Case};

/// Largest identity-policy document, in characters (the largest of Alibaba's documented
/// limits 2048 / 4096 bytes / 6144 characters: the SDK's).
pub const MAX_POLICY_CHARS: usize = 6144;
/// Largest AssumeRole session policy, in characters (STS SDK 1.2.0: 2048).
pub const MAX_SESSION_POLICY_CHARS: usize = 2048;
/// Most statements in one document (ours): Alibaba documents none; the size limit allows ~100.
pub const MAX_STATEMENTS: usize = 100;

/// Why a document was refused: Alibaba's `MalformedPolicyDocument` with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub message: String,
}

impl PolicyError {
    pub const CODE: &'static str = "MalformedPolicyDocument";

    pub fn new(message: impl Into<String>) -> Self {
        PolicyError {
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn name(self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

/// `Action`/`Resource` (the listed patterns) or `NotAction`/`NotResource` (everything else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patterns {
    Only(Vec<String>),
    AllBut(Vec<String>),
}

impl Patterns {
    fn applies(&self, matches_one: impl Fn(&str) -> bool) -> bool {
        match self {
            Patterns::Only(list) => list.iter().any(|p| matches_one(p)),
            Patterns::AllBut(list) => !list.iter().any(|p| matches_one(p)),
        }
    }
}

/// The `Principal` of a trust-policy statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrincipalSpec {
    pub ram: Vec<String>,
    pub service: Vec<String>,
    pub federated: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub actions: Patterns,
    /// `None` in trust policies.
    pub resources: Option<Patterns>,
    /// `Some` only in trust policies.
    pub principal: Option<PrincipalSpec>,
    pub conditions: Vec<Condition>,
}

impl Statement {
    /// Does the statement cover this action on this resource, in this context?
    pub fn applies(&self, action: &str, resource: &str, ctx: &RequestContext) -> bool {
        self.actions.applies(|p| action_matches(p, action))
            && self
                .resources
                .as_ref()
                .is_none_or(|r| r.applies(|p| arn_matches(p, resource)))
            && self.conditions.iter().all(|c| c.holds(ctx))
    }
}

/// Does an action pattern cover an action (`vpc:Describe*` ⊇ `vpc:DescribeVpnGateway`)?
pub fn action_matches(pattern: &str, action: &str) -> bool {
    wildcard::matches(pattern, action, Case::Insensitive)
}

/// Does a resource pattern cover an ARN? The `acs:<service>` prefix ignores case, the rest not.
pub fn arn_matches(pattern: &str, arn: &str) -> bool {
    wildcard::matches(&fold_arn_prefix(pattern), &fold_arn_prefix(arn), Case::Sensitive)
}

/// Lower-cases the text before the second `:` (the whole text when it has fewer).
fn fold_arn_prefix(arn: &str) -> String {
    let cut = arn.match_indices(':').nth(1).map_or(arn.len(), |(i, _)| i);
    let mut out = arn[..cut].to_lowercase();
    out.push_str(&arn[cut..]);
    out
}

/// What a document's statements say about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A `Deny` statement applies.
    Deny,
    /// No `Deny` applies, an `Allow` does.
    Allow,
    /// Nothing applies.
    NotApplicable,
}

/// Which kind of document is parsed: the grammar differs in `Resource` vs `Principal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// A custom, system or session policy attached to an identity.
    Identity,
    /// A role's `AssumeRolePolicyDocument`.
    Trust,
}

/// A parsed, validated policy document; keeps the text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    statements: Vec<Statement>,
    text: String,
}

impl PolicyDocument {
    /// Parses an identity (custom, system) policy.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        parse_document(text, DocumentKind::Identity, MAX_POLICY_CHARS)
    }

    /// Parses with an explicit kind and size limit (session policies, trust policies).
    pub fn parse_as(text: &str, kind: DocumentKind, max_chars: usize) -> Result<Self, PolicyError> {
        parse_document(text, kind, max_chars)
    }

    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// The text as submitted (what GetPolicyVersion returns).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Explicit deny first, then allow, else not applicable.
    pub fn verdict(&self, action: &str, resource: &str, ctx: &RequestContext) -> Verdict {
        let mut allowed = false;
        for s in &self.statements {
            if s.applies(action, resource, ctx) {
                match s.effect {
                    Effect::Deny => return Verdict::Deny,
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed {
            Verdict::Allow
        } else {
            Verdict::NotApplicable
        }
    }

    /// The document in canonical JSON form (lists everywhere, members in a fixed order).
    pub fn to_json(&self) -> Value {
        let statements = self.statements.iter().map(statement_to_json).collect();
        let mut doc = Map::new();
        doc.insert("Version".into(), Value::String("1".into()));
        doc.insert("Statement".into(), Value::Array(statements));
        Value::Object(doc)
    }
}

fn statement_to_json(s: &Statement) -> Value {
    let list = |items: &[String]| Value::Array(items.iter().cloned().map(Value::String).collect());
    let mut out = Map::new();
    if let Some(sid) = &s.sid {
        out.insert("Sid".into(), Value::String(sid.clone()));
    }
    out.insert("Effect".into(), Value::String(s.effect.name().into()));
    match &s.actions {
        Patterns::Only(a) => out.insert("Action".into(), list(a)),
        Patterns::AllBut(a) => out.insert("NotAction".into(), list(a)),
    };
    match &s.resources {
        Some(Patterns::Only(r)) => {
            out.insert("Resource".into(), list(r));
        }
        Some(Patterns::AllBut(r)) => {
            out.insert("NotResource".into(), list(r));
        }
        None => {}
    }
    if let Some(p) = &s.principal {
        let mut principal = Map::new();
        for (name, items) in [("RAM", &p.ram), ("Service", &p.service), ("Federated", &p.federated)] {
            if !items.is_empty() {
                principal.insert(name.into(), list(items));
            }
        }
        out.insert("Principal".into(), Value::Object(principal));
    }
    if !s.conditions.is_empty() {
        out.insert("Condition".into(), condition::to_json(&s.conditions));
    }
    Value::Object(out)
}

fn parse_document(text: &str, kind: DocumentKind, max_chars: usize) -> Result<PolicyDocument, PolicyError> {
    let chars = text.chars().count();
    if chars == 0 {
        return Err(PolicyError::new("The policy document is empty"));
    }
    if chars > max_chars {
        return Err(PolicyError::new(format!(
            "The policy document has {chars} characters, more than the limit of {max_chars}"
        )));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| PolicyError::new(format!("The policy document is not valid JSON: {e}")))?;
    let doc = value
        .as_object()
        .ok_or_else(|| PolicyError::new("The policy document must be a JSON object"))?;
    for key in doc.keys() {
        if key != "Version" && key != "Statement" {
            return Err(PolicyError::new(format!("Unknown policy element \"{key}\"")));
        }
    }
    match doc.get("Version") {
        Some(Value::String(v)) if v == "1" => {}
        Some(_) => return Err(PolicyError::new("The policy Version must be \"1\"")),
        None => return Err(PolicyError::new("The policy document has no Version")),
    }
    let statements = match doc.get("Statement") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(_) => return Err(PolicyError::new("Statement must be a non-empty list")),
        None => return Err(PolicyError::new("The policy document has no Statement")),
    };
    if statements.len() > MAX_STATEMENTS {
        return Err(PolicyError::new(format!(
            "The policy document has {} statements, more than the limit of {MAX_STATEMENTS}",
            statements.len()
        )));
    }
    let statements = statements
        .iter()
        .enumerate()
        .map(|(i, s)| {
            parse_statement(s, kind).map_err(|e| PolicyError::new(format!("Statement {}: {}", i + 1, e.message)))
        })
        .collect::<Result<_, _>>()?;
    Ok(PolicyDocument {
        statements,
        text: text.to_string(),
    })
}

fn parse_statement(value: &Value, kind: DocumentKind) -> Result<Statement, PolicyError> {
    let obj = value
        .as_object()
        .ok_or_else(|| PolicyError::new("a statement must be an object"))?;
    let allowed: &[&str] = match kind {
        DocumentKind::Identity => &[
            "Sid",
            "Effect",
            "Action",
            "NotAction",
            "Resource",
            "NotResource",
            "Condition",
        ],
        DocumentKind::Trust => &["Sid", "Effect", "Action", "NotAction", "Principal", "Condition"],
    };
    if let Some(key) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(PolicyError::new(format!("element \"{key}\" is not allowed here")));
    }
    let sid = match obj.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(PolicyError::new("Sid must be a string")),
    };
    let effect = match obj.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(_) => return Err(PolicyError::new("Effect must be \"Allow\" or \"Deny\"")),
        None => return Err(PolicyError::new("Effect is missing")),
    };
    let actions = one_of(obj, "Action", "NotAction", validate_action)?;
    let (resources, principal) = match kind {
        DocumentKind::Identity => (Some(one_of(obj, "Resource", "NotResource", validate_resource)?), None),
        DocumentKind::Trust => {
            let p = obj
                .get("Principal")
                .ok_or_else(|| PolicyError::new("Principal is missing"))?;
            (None, Some(parse_principal(p)?))
        }
    };
    let conditions = match obj.get("Condition") {
        None => Vec::new(),
        Some(c) => condition::parse_block(c)?,
    };
    Ok(Statement {
        sid,
        effect,
        actions,
        resources,
        principal,
        conditions,
    })
}

/// Exactly one of `positive` / `negative`, each a string or non-empty list of valid patterns.
fn one_of(
    obj: &Map<String, Value>,
    positive: &str,
    negative: &str,
    validate: fn(&str) -> bool,
) -> Result<Patterns, PolicyError> {
    let parse = |name: &str, v: &Value| -> Result<Vec<String>, PolicyError> {
        let items = string_list(v)
            .ok_or_else(|| PolicyError::new(format!("{name} must be a string or a non-empty list of strings")))?;
        match items.iter().find(|s| !validate(s)) {
            Some(bad) => Err(PolicyError::new(format!("{name} \"{bad}\" is not valid"))),
            None => Ok(items),
        }
    };
    match (obj.get(positive), obj.get(negative)) {
        (Some(v), None) => Ok(Patterns::Only(parse(positive, v)?)),
        (None, Some(v)) => Ok(Patterns::AllBut(parse(negative, v)?)),
        (Some(_), Some(_)) => Err(PolicyError::new(format!(
            "{positive} and {negative} cannot both be given"
        ))),
        (None, None) => Err(PolicyError::new(format!("{positive} is missing"))),
    }
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items.iter().map(|i| i.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

/// `*` or `<service>:<name>` with a service code of letters, digits, `-` (or wildcards).
fn validate_action(a: &str) -> bool {
    if a == "*" {
        return true;
    }
    let Some((service, name)) = a.split_once(':') else {
        return false;
    };
    !service.is_empty()
        && !name.is_empty()
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '*' | '?'))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '?' | '-' | '_' | '.'))
}

fn validate_resource(r: &str) -> bool {
    r == "*" || r.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("acs:"))
}

fn parse_principal(v: &Value) -> Result<PrincipalSpec, PolicyError> {
    let obj = v
        .as_object()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| PolicyError::new("Principal must be an object with RAM, Service or Federated"))?;
    let mut spec = PrincipalSpec::default();
    for (key, value) in obj {
        let items = string_list(value)
            .filter(|items| items.iter().all(|s| !s.is_empty()))
            .ok_or_else(|| {
                PolicyError::new(format!(
                    "Principal {key} must be a string or a non-empty list of strings"
                ))
            })?;
        match key.as_str() {
            "RAM" => spec.ram = items,
            "Service" => spec.service = items,
            "Federated" => spec.federated = items,
            other => return Err(PolicyError::new(format!("Principal type \"{other}\" is not supported"))),
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const GW: &str = "acs:vpc:cn-hangzhou:1234567890:vpngateway/vpn-abc";

    fn ctx() -> RequestContext {
        RequestContext::at(datetime!(2026-12-01 08:00:00 UTC))
    }

    fn doc(v: Value) -> PolicyDocument {
        PolicyDocument::parse(&v.to_string()).unwrap()
    }

    fn err(v: Value) -> String {
        PolicyDocument::parse(&v.to_string()).unwrap_err().message
    }

    #[test]
    fn allow_deny_and_not_applicable() {
        let d = doc(json!({"Version":"1","Statement":[
            {"Effect":"Allow","Action":"vpc:Describe*","Resource":"*"},
            {"Effect":"Deny","Action":["vpc:DescribeVpnGateway"],"Resource":[GW]}
        ]}));
        assert_eq!(d.verdict("vpc:DescribeVpnGateways", GW, &ctx()), Verdict::Allow);
        assert_eq!(d.verdict("vpc:DescribeVpnGateway", GW, &ctx()), Verdict::Deny);
        assert_eq!(
            d.verdict(
                "vpc:DescribeVpnGateway",
                "acs:vpc:cn-hangzhou:1234567890:vpngateway/vpn-x",
                &ctx()
            ),
            Verdict::Allow
        );
        assert_eq!(d.verdict("vpc:CreateVpnRouteEntry", GW, &ctx()), Verdict::NotApplicable);
    }

    #[test]
    fn not_action_and_not_resource() {
        let d = doc(json!({"Version":"1","Statement":[
            {"Effect":"Allow","NotAction":["ram:*"],"NotResource":"acs:vpc:*:*:vpngateway/vpn-secret"}
        ]}));
        assert_eq!(d.verdict("vpc:DeleteVpnGateway", GW, &ctx()), Verdict::Allow);
        assert_eq!(
            d.verdict("ram:CreateUser", "acs:ram:*:1:user/*", &ctx()),
            Verdict::NotApplicable
        );
        assert_eq!(
            d.verdict(
                "vpc:DeleteVpnGateway",
                "acs:vpc:cn-hangzhou:1:vpngateway/vpn-secret",
                &ctx()
            ),
            Verdict::NotApplicable
        );
    }

    #[test]
    fn case_rules() {
        let d = doc(json!({"Version":"1","Statement":[
            {"Effect":"Allow","Action":"VPC:describevpngateway","Resource":"ACS:VPC:cn-hangzhou:*:vpngateway/vpn-abc"}
        ]}));
        assert_eq!(d.verdict("vpc:DescribeVpnGateway", GW, &ctx()), Verdict::Allow);
        // Past the service, ARNs are case-sensitive.
        assert_eq!(
            d.verdict(
                "vpc:DescribeVpnGateway",
                "acs:vpc:cn-hangzhou:1234567890:vpngateway/VPN-ABC",
                &ctx()
            ),
            Verdict::NotApplicable
        );
        assert_eq!(
            d.verdict(
                "vpc:DescribeVpnGateway",
                "acs:vpc:CN-HANGZHOU:1234567890:vpngateway/vpn-abc",
                &ctx()
            ),
            Verdict::NotApplicable
        );
    }

    #[test]
    fn conditions_gate_statements() {
        let d = doc(json!({"Version":"1","Statement":[
            {"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"acs:SourceIp":"10.0.0.0/8"}}}
        ]}));
        assert_eq!(d.verdict("vpc:X", GW, &ctx()), Verdict::NotApplicable);
        let inside = ctx().with_source_ip("10.1.2.3".parse().unwrap());
        assert_eq!(d.verdict("vpc:X", GW, &inside), Verdict::Allow);
    }

    #[test]
    fn malformed_documents() {
        let ok_stmt = json!({"Effect":"Allow","Action":"*","Resource":"*"});
        let cases = [
            (json!([]), "JSON object"),
            (json!({"Statement":[ok_stmt]}), "no Version"),
            (json!({"Version":"2","Statement":[ok_stmt]}), "Version must be"),
            (json!({"Version":1,"Statement":[ok_stmt]}), "Version must be"),
            (json!({"Version":"1"}), "no Statement"),
            (json!({"Version":"1","Statement":[]}), "non-empty"),
            (json!({"Version":"1","Statement":ok_stmt}), "non-empty"),
            (
                json!({"Version":"1","Statement":[ok_stmt],"Id":"x"}),
                "Unknown policy element",
            ),
            (json!({"Version":"1","Statement":["x"]}), "must be an object"),
            (
                json!({"Version":"1","Statement":[{"Action":"*","Resource":"*"}]}),
                "Effect is missing",
            ),
            (
                json!({"Version":"1","Statement":[{"Effect":"allow","Action":"*","Resource":"*"}]}),
                "Effect must be",
            ),
            (
                json!({"Version":"1","Statement":[{"Effect":"Allow","Resource":"*"}]}),
                "Action is missing",
            ),
            (
                json!({"Version":"1","Statement":[{"Effect":"Allow","Action":"*","NotAction":"*","Resource":"*"}]}),
                "cannot both",
            ),
            (
                json!({"Version":"1","Statement":[{"Effect":"Allow","Action":"*"}]}),
                "Resource is missing",
            ),
            (
                json!({"Version":"1","Statement":[{"Effect":"Allow","Action":[],"Resource":"*"}]}),
                "non-empty list",
            ),
            (
                json!({"Version":"1","Statement":[{"Effect":"Allow","Action":[1],"Resource":"*"}]}),
                "non-empty list",
            ),
            (
                json!({"Version":"1","Statement":[{"Effect":"Allow","Action":"CreateVpnRouteEntry","Resource":"*"}]}),
                "is not valid",
            ),
            (
                json!({"Version":"1","Statement":[{"Effect":"Allow","Action":"vpc:","Resource":"*"}]}),
                "is not valid",
            ),
            (
                json!({"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"vpngateway/x"}]}),
                "is not valid",
            ),
            (
                json!({"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Principal":{"RAM":"x"}}]}),
                "not allowed",
            ),
            (
                json!({"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Sid":3}]}),
                "Sid",
            ),
            (
                json!({"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Nope":{}}}]}),
                "not supported",
            ),
        ];
        for (value, expected) in cases {
            let message = err(value.clone());
            assert!(message.contains(expected), "{value}: {message}");
        }
        assert!(PolicyDocument::parse("").unwrap_err().message.contains("empty"));
        assert!(PolicyDocument::parse("{not json")
            .unwrap_err()
            .message
            .contains("not valid JSON"));
        assert_eq!(PolicyError::CODE, "MalformedPolicyDocument");
    }

    #[test]
    fn statement_errors_name_the_statement() {
        let message = err(json!({"Version":"1","Statement":[
            {"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Maybe","Action":"*","Resource":"*"}
        ]}));
        assert!(message.starts_with("Statement 2:"), "{message}");
    }

    #[test]
    fn size_and_statement_limits() {
        let stmt = json!({"Effect":"Allow","Action":"vpc:A","Resource":"*"});
        let at_limit = json!({"Version":"1","Statement": vec![stmt.clone(); MAX_STATEMENTS]}).to_string();
        assert!(at_limit.chars().count() <= MAX_POLICY_CHARS);
        assert!(PolicyDocument::parse(&at_limit).is_ok());
        let over = json!({"Version":"1","Statement": vec![stmt; MAX_STATEMENTS + 1]}).to_string();
        let message = PolicyDocument::parse_as(&over, DocumentKind::Identity, usize::MAX)
            .unwrap_err()
            .message;
        assert!(message.contains("statements"), "{message}");
        let padded = format!(
            "{}{}",
            " ".repeat(MAX_POLICY_CHARS),
            json!({"Version":"1","Statement":[]})
        );
        assert!(PolicyDocument::parse(&padded)
            .unwrap_err()
            .message
            .contains("limit of 6144"));
    }

    #[test]
    fn trust_grammar() {
        let trust = json!({"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{"RAM":["acs:ram::123:root"]}}],"Version":"1"});
        let d = PolicyDocument::parse_as(&trust.to_string(), DocumentKind::Trust, MAX_POLICY_CHARS).unwrap();
        assert_eq!(
            d.statements()[0].principal.as_ref().unwrap().ram,
            vec!["acs:ram::123:root"]
        );
        let with_resource = json!({"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Resource":"*","Principal":{"RAM":"x"}}],"Version":"1"});
        assert!(PolicyDocument::parse_as(&with_resource.to_string(), DocumentKind::Trust, MAX_POLICY_CHARS).is_err());
        for bad_principal in [
            json!("acs:ram::1:root"),
            json!({}),
            json!({"AWS":"x"}),
            json!({"RAM":[]}),
            json!({"RAM":[""]}),
        ] {
            let t = json!({"Statement":[{"Action":"sts:AssumeRole","Effect":"Allow","Principal":bad_principal}],"Version":"1"});
            assert!(
                PolicyDocument::parse_as(&t.to_string(), DocumentKind::Trust, MAX_POLICY_CHARS).is_err(),
                "{t}"
            );
        }
        // An identity policy has no Principal: a trust document is not one.
        assert!(PolicyDocument::parse(&trust.to_string()).is_err());
    }

    #[test]
    fn canonical_json_round_trip() {
        let d = doc(json!({"Version":"1","Statement":[
            {"Sid":"a","Effect":"Deny","NotAction":"vpc:Delete*","Resource":GW,"Condition":{"Bool":{"acs:SecureTransport":"false"}}}
        ]}));
        let again = PolicyDocument::parse(&d.to_json().to_string()).unwrap();
        assert_eq!(again.statements(), d.statements());
    }
}
