//! STS session credentials: temporary AccessKeyId (`STS.` + 24 characters), secret and a
//! SecurityToken that is self-describing and tamper-evident, so the server stores nothing
//! per session.
//!
//! Format: `v1.<payload>.<mac>`, where `payload` is base64url (no padding) of the JSON
//! [`SessionClaims`] (account, role id and name, session name, AccessKeyId, issue and expiry
//! times, the inline session policy text) and `mac` is base64url of
//! HMAC-SHA256(server key, `"vpnroute-sts-token\0" ‖ payload`). The secret is not in the token:
//! it is HMAC-SHA256(server key, `"vpnroute-sts-secret\0" ‖ payload`), hex, first 30 characters,
//! so only the server (and the client it was handed to) can sign with it. Verification checks
//! the MAC before reading any claim, then that the token belongs to the AccessKeyId, then expiry.
//! A token names the RoleId, so deleting (or re-creating) the role voids it: the server checks
//! that the role still exists with that id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::macros::format_description;
use time::OffsetDateTime;

type HmacSha256 = Hmac<Sha256>;

const TOKEN_VERSION: &str = "v1";
const MAC_DOMAIN: &[u8] = b"vpnroute-sts-token\0";
const SECRET_DOMAIN: &[u8] = b"vpnroute-sts-secret\0";
/// Prefix of every temporary AccessKeyId: the server routes verification on it.
pub const STS_ACCESS_KEY_PREFIX: &str = "STS.";

/// The server's token key (32 random bytes, kept in the data directory).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

impl TokenKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        TokenKey(bytes)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(TokenKey(bytes.try_into().ok()?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn mac(&self, domain: &[u8], payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(domain);
        mac.update(payload.as_bytes());
        mac
    }
}

/// What a SecurityToken says about its session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    #[serde(rename = "ak")]
    pub access_key_id: String,
    #[serde(rename = "acct")]
    pub account_id: String,
    #[serde(rename = "rid")]
    pub role_id: String,
    #[serde(rename = "role")]
    pub role_name: String,
    #[serde(rename = "sn")]
    pub session_name: String,
    /// Unix seconds.
    #[serde(rename = "iat")]
    pub issued_at: i64,
    /// Unix seconds; the token is expired from this second on.
    #[serde(rename = "exp")]
    pub expires_at: i64,
    /// The AssumeRole inline policy, verbatim.
    #[serde(rename = "pol", default, skip_serializing_if = "Option::is_none")]
    pub session_policy: Option<String>,
}

/// AssumeRole's `Credentials`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
    /// `YYYY-MM-DDThh:mm:ssZ`.
    pub expiration: String,
}

/// What a session is issued for.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    pub account_id: String,
    pub role_id: String,
    pub role_name: String,
    pub session_name: String,
    pub session_policy: Option<String>,
    pub duration_seconds: u32,
}

/// Issues credentials for a session starting at `now`.
pub fn issue(key: &TokenKey, request: SessionRequest, now: OffsetDateTime) -> (Credentials, SessionClaims) {
    let issued_at = now.unix_timestamp();
    let claims = SessionClaims {
        access_key_id: new_sts_access_key_id(),
        account_id: request.account_id,
        role_id: request.role_id,
        role_name: request.role_name,
        session_name: request.session_name,
        issued_at,
        expires_at: issued_at + i64::from(request.duration_seconds),
        session_policy: request.session_policy,
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise"));
    let mac = URL_SAFE_NO_PAD.encode(key.mac(MAC_DOMAIN, &payload).finalize().into_bytes());
    let expires = OffsetDateTime::from_unix_timestamp(claims.expires_at).unwrap_or(now);
    let credentials = Credentials {
        access_key_id: claims.access_key_id.clone(),
        access_key_secret: derive_secret(key, &payload),
        security_token: format!("{TOKEN_VERSION}.{payload}.{mac}"),
        expiration: format_iso8601(expires),
    };
    (credentials, claims)
}

fn derive_secret(key: &TokenKey, payload: &str) -> String {
    let digest = key.mac(SECRET_DOMAIN, payload).finalize().into_bytes();
    hex::encode(digest)[..30].to_string()
}

fn new_sts_access_key_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let tail: String = (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{STS_ACCESS_KEY_PREFIX}{tail}")
}

/// Is this AccessKeyId a temporary (STS) one?
pub fn is_sts_access_key_id(access_key_id: &str) -> bool {
    access_key_id.starts_with(STS_ACCESS_KEY_PREFIX)
}

/// Why a SecurityToken was refused: Alibaba's gateway codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No SecurityToken with an STS AccessKeyId.
    #[error("SecurityToken is mandatory for this action.")]
    Missing,
    /// Not a token of this server, or altered.
    #[error("Specified SecurityToken is malformed.")]
    Malformed,
    /// A valid token presented with another AccessKeyId.
    #[error("Specified SecurityToken mismatch with the AccessKey.")]
    MismatchWithAccessKey,
    #[error("Specified SecurityToken is expired.")]
    Expired,
}

impl TokenError {
    pub fn code(self) -> &'static str {
        match self {
            TokenError::Missing => "MissingSecurityToken",
            TokenError::Malformed => "InvalidSecurityToken.Malformed",
            TokenError::MismatchWithAccessKey => "InvalidSecurityToken.MismatchWithAccessKey",
            TokenError::Expired => "InvalidSecurityToken.Expired",
        }
    }

    /// HTTP status (ours): Alibaba does not state it; 400 like the other signature errors.
    pub fn http_status(self) -> u16 {
        400
    }
}

/// A verified session: its claims and the secret requests must be signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSession {
    pub claims: SessionClaims,
    pub access_key_secret: String,
}

/// Verifies a SecurityToken presented with `access_key_id` at `now`.
pub fn verify(
    key: &TokenKey,
    access_key_id: &str,
    security_token: Option<&str>,
    now: OffsetDateTime,
) -> Result<VerifiedSession, TokenError> {
    let token = security_token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
    let mut parts = token.split('.');
    let (Some(TOKEN_VERSION), Some(payload), Some(mac), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| TokenError::Malformed)?;
    key.mac(MAC_DOMAIN, payload)
        .verify_slice(&mac)
        .map_err(|_| TokenError::Malformed)?;
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
    let claims: SessionClaims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    if claims.access_key_id != access_key_id {
        return Err(TokenError::MismatchWithAccessKey);
    }
    if now.unix_timestamp() >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(VerifiedSession {
        access_key_secret: derive_secret(key, payload),
        claims,
    })
}

/// `YYYY-MM-DDThh:mm:ssZ` in UTC (Alibaba's Expiration and RAM date format).
pub fn format_iso8601(t: OffsetDateTime) -> String {
    let utc = t.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
        .expect("a UTC time formats")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 08:00:00 UTC);

    fn request(policy: Option<&str>) -> SessionRequest {
        SessionRequest {
            account_id: "100".into(),
            role_id: "3001".into(),
            role_name: "Ops".into(),
            session_name: "ci".into(),
            session_policy: policy.map(str::to_string),
            duration_seconds: 900,
        }
    }

    #[test]
    fn issue_and_verify() {
        let key = TokenKey::generate();
        let (creds, claims) = issue(&key, request(Some("{\"Version\":\"1\"}")), NOW);
        assert!(creds.access_key_id.starts_with("STS.") && creds.access_key_id.len() == 28);
        assert!(is_sts_access_key_id(&creds.access_key_id));
        assert_eq!(creds.access_key_secret.len(), 30);
        assert_eq!(creds.expiration, "2026-12-01T08:15:00Z");
        let v = verify(&key, &creds.access_key_id, Some(&creds.security_token), NOW).unwrap();
        assert_eq!(v.claims, claims);
        assert_eq!(v.access_key_secret, creds.access_key_secret);
        assert_eq!(v.claims.session_policy.as_deref(), Some("{\"Version\":\"1\"}"));
        // Still valid one second before expiry, expired at it.
        let last = NOW + time::Duration::seconds(899);
        assert!(verify(&key, &creds.access_key_id, Some(&creds.security_token), last).is_ok());
        let at_expiry = NOW + time::Duration::seconds(900);
        assert_eq!(
            verify(&key, &creds.access_key_id, Some(&creds.security_token), at_expiry),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn refusals() {
        let key = TokenKey::generate();
        let (creds, _) = issue(&key, request(None), NOW);
        let (other, _) = issue(&key, request(None), NOW);
        assert_ne!(creds.access_key_id, other.access_key_id);
        assert_ne!(creds.access_key_secret, other.access_key_secret);
        let check = |ak: &str, token: Option<&str>| verify(&key, ak, token, NOW);
        assert_eq!(check(&creds.access_key_id, None), Err(TokenError::Missing));
        assert_eq!(check(&creds.access_key_id, Some("")), Err(TokenError::Missing));
        assert_eq!(check(&creds.access_key_id, Some("garbage")), Err(TokenError::Malformed));
        assert_eq!(
            check(&creds.access_key_id, Some(&other.security_token)),
            Err(TokenError::MismatchWithAccessKey)
        );
        let foreign_key = TokenKey::generate();
        assert_eq!(
            verify(&foreign_key, &creds.access_key_id, Some(&creds.security_token), NOW),
            Err(TokenError::Malformed)
        );
        // A payload swapped in from another token does not carry its MAC.
        let mine: Vec<&str> = creds.security_token.split('.').collect();
        let theirs: Vec<&str> = other.security_token.split('.').collect();
        let spliced = format!("v1.{}.{}", theirs[1], mine[2]);
        assert_eq!(check(&other.access_key_id, Some(&spliced)), Err(TokenError::Malformed));
        assert_eq!(
            check(&creds.access_key_id, Some(&format!("{}.x", creds.security_token))),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            check(
                &creds.access_key_id,
                Some(&creds.security_token.replacen("v1", "v2", 1))
            ),
            Err(TokenError::Malformed)
        );
        for code in [
            TokenError::Missing,
            TokenError::Malformed,
            TokenError::MismatchWithAccessKey,
            TokenError::Expired,
        ] {
            assert!(!code.code().is_empty() && code.http_status() == 400 && !code.to_string().is_empty());
        }
    }

    #[test]
    fn extended_claims_are_forged_not_trusted() {
        let key = TokenKey::generate();
        let (creds, mut claims) = issue(&key, request(None), NOW);
        claims.expires_at += 86_400;
        claims.session_policy = None;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let mac = creds.security_token.rsplit('.').next().unwrap();
        let forged = format!("v1.{forged_payload}.{mac}");
        assert_eq!(
            verify(&key, &creds.access_key_id, Some(&forged), NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn key_hex_round_trip() {
        let key = TokenKey::generate();
        assert_eq!(TokenKey::from_hex(&key.to_hex()), Some(key.clone()));
        assert_eq!(TokenKey::from_hex("abcd"), None);
        assert_eq!(TokenKey::from_hex("zz"), None);
        assert_eq!(format!("{key:?}"), "TokenKey(…)");
    }

    #[test]
    fn iso8601_is_utc_without_fractions() {
        assert_eq!(
            format_iso8601(datetime!(2015-04-09 19:52:19.5 +08:00)),
            "2015-04-09T11:52:19Z"
        );
    }

    proptest! {
        #[test]
        fn any_single_byte_change_is_refused(index in 0usize..400, replacement in any::<u8>()) {
            let key = TokenKey([7u8; 32]);
            let (creds, _) = issue(&key, request(Some("{\"Statement\":[]}")), NOW);
            let mut bytes = creds.security_token.clone().into_bytes();
            let index = index % bytes.len();
            prop_assume!(bytes[index] != replacement);
            bytes[index] = replacement;
            let tampered = String::from_utf8_lossy(&bytes).into_owned();
            prop_assume!(tampered != creds.security_token);
            // The MAC covers the payload text and canonical base64 decoding is strict, so every
            // altered token is refused.
            prop_assert_eq!(verify(&key, &creds.access_key_id, Some(&tampered), NOW), Err(TokenError::Malformed));
        }

        #[test]
        fn round_trip_any_session(name in "[A-Za-z0-9.@_-]{2,64}", duration in 900u32..=43_200, policy in proptest::option::of("\\PC{0,50}")) {
            let key = TokenKey([9u8; 32]);
            let mut r = request(policy.as_deref());
            r.session_name = name.clone();
            r.duration_seconds = duration;
            let (creds, claims) = issue(&key, r, NOW);
            let v = verify(&key, &creds.access_key_id, Some(&creds.security_token), NOW).unwrap();
            prop_assert_eq!(&v.claims, &claims);
            prop_assert_eq!(v.claims.session_name, name);
            prop_assert_eq!(v.claims.expires_at - v.claims.issued_at, i64::from(duration));
            prop_assert_eq!(v.claims.session_policy, policy);
        }
    }
}
