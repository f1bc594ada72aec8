//! The request context a policy's `Condition` block is evaluated against: the documented global
//! keys (`acs:CurrentTime`, `acs:SourceIp`, `acs:SecureTransport`, `acs:MFAPresent`) typed, and
//! any further key (e.g. `sts:ExternalId`) as text.

use std::collections::BTreeMap;
use std::net::IpAddr;

use time::OffsetDateTime;

/// Condition key names, as policies spell them. Lookup ignores case.
pub mod keys {
    pub const CURRENT_TIME: &str = "acs:CurrentTime";
    pub const SOURCE_IP: &str = "acs:SourceIp";
    pub const SECURE_TRANSPORT: &str = "acs:SecureTransport";
    pub const MFA_PRESENT: &str = "acs:MFAPresent";
    pub const EXTERNAL_ID: &str = "sts:ExternalId";
}

/// What is known about one request when it is authorized.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub current_time: OffsetDateTime,
    /// The client's address (the TCP peer); absent only in tests and offline evaluation.
    pub source_ip: Option<IpAddr>,
    pub secure_transport: bool,
    pub mfa_present: bool,
    /// Further keys, by lower-cased name.
    other: BTreeMap<String, String>,
}

/// One context value, typed where the key has a type.
#[derive(Debug, Clone, PartialEq)]
pub enum ContextValue {
    Text(String),
    Time(OffsetDateTime),
    Ip(IpAddr),
    Bool(bool),
}

impl ContextValue {
    /// The value as the string operators see it.
    pub fn as_text(&self) -> String {
        match self {
            ContextValue::Text(s) => s.clone(),
            ContextValue::Time(t) => crate::token::format_iso8601(*t),
            ContextValue::Ip(ip) => ip.to_string(),
            ContextValue::Bool(b) => b.to_string(),
        }
    }
}

impl RequestContext {
    /// A context at `now` with no source address, plain HTTP and no MFA.
    pub fn at(now: OffsetDateTime) -> Self {
        RequestContext {
            current_time: now,
            source_ip: None,
            secure_transport: false,
            mfa_present: false,
            other: BTreeMap::new(),
        }
    }

    pub fn with_source_ip(mut self, ip: IpAddr) -> Self {
        self.source_ip = Some(ip);
        self
    }

    pub fn with_secure_transport(mut self, secure: bool) -> Self {
        self.secure_transport = secure;
        self
    }

    pub fn with_mfa(mut self, present: bool) -> Self {
        self.mfa_present = present;
        self
    }

    /// Sets a further key (case-insensitive name).
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.other.insert(key.to_ascii_lowercase(), value.into());
        self
    }

    /// The value of a key, or `None` when the request has none (a condition on it then fails).
    pub fn lookup(&self, key: &str) -> Option<ContextValue> {
        let is = |name: &str| key.eq_ignore_ascii_case(name);
        if is(keys::CURRENT_TIME) {
            Some(ContextValue::Time(self.current_time))
        } else if is(keys::SOURCE_IP) {
            self.source_ip.map(ContextValue::Ip)
        } else if is(keys::SECURE_TRANSPORT) {
            Some(ContextValue::Bool(self.secure_transport))
        } else if is(keys::MFA_PRESENT) {
            Some(ContextValue::Bool(self.mfa_present))
        } else {
            self.other
                .get(&key.to_ascii_lowercase())
                .cloned()
                .map(ContextValue::Text)
        }
    }
}
