//! Authentication: who is calling. [`authenticate`] looks up the access key, verifies the
//! signature (both schemes, through `vpnroute-wire`) and checks the request time is within
//! 15 minutes. The nonce is checked afterwards by `http.rs`'s admission step against the
//! store's durable nonce log (so a replay after a restart is refused too). The throttle is
//! `vpnroute_app::throttle`.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vpnroute_domain::ApiError;
use vpnroute_wire::{AuthInfo, ParsedRequest, RawRequest};

/// Allowed clock skew and nonce memory, as Alibaba: 15 minutes.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
    pub access_key_id: String,
    /// The root account, a RAM user or a role session, with the policies in force for it.
    pub identity: vpnroute_ram::identity::Identity,
    /// The request's own time (`Timestamp` / `x-acs-date`), epoch ms.
    pub signed_at_ms: i64,
}

impl Caller {
    /// Until when the request's nonce must be refused: as long as its timestamp is still
    /// accepted (timestamp + window), and at least the window after it was seen.
    pub fn nonce_keep_until(&self, now_ms: i64) -> i64 {
        now_ms.max(self.signed_at_ms).saturating_add(WINDOW_MS)
    }
}

fn wire_err(e: vpnroute_wire::WireError) -> ApiError {
    let a = e.to_alibaba();
    ApiError::new(a.code, a.message, a.http_status)
}

/// Parse `YYYY-MM-DDThh:mm:ssZ` (RFC 3339 accepted generally) into epoch ms.
pub fn parse_timestamp(text: &str) -> Result<i64, ApiError> {
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| ApiError::TIMESTAMP_FORMAT)?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Verify the request's signature and freshness; returns the caller. The nonce is recorded
/// separately in the nonce log.
pub fn authenticate(
    tx: &dyn vpnroute_store::ReadTx,
    raw: &RawRequest<'_>,
    parsed: &ParsedRequest,
    sts_key: &vpnroute_ram::token::TokenKey,
    now_ms: i64,
) -> Result<Caller, ApiError> {
    let auth = parsed.auth.require().map_err(wire_err)?;
    if let AuthInfo::V1 {
        signature_method,
        signature_version,
        ..
    } = auth
    {
        if !signature_method.is_empty() && signature_method != "HMAC-SHA1" {
            return Err(ApiError::UNSUPPORTED_SIGNATURE_METHOD);
        }
        if !signature_version.is_empty() && signature_version != "1.0" {
            return Err(ApiError::new(
                "InvalidSignatureVersion",
                "Specified signature version is not supported.",
                400,
            ));
        }
    }
    let key_id = auth.access_key_id().unwrap_or_default();
    if key_id.is_empty() {
        return Err(ApiError::missing_parameter("AccessKeyId"));
    }
    let key = vpnroute_app::ram::key_holder(tx, key_id, auth.security_token(), sts_key, now_ms)?;
    vpnroute_wire::verify(raw, parsed, &key.secret).map_err(|m| {
        let a = m.to_alibaba();
        ApiError::new(a.code, a.message, a.http_status)
    })?;
    let ts = auth.timestamp().unwrap_or_default();
    if ts.is_empty() {
        return Err(ApiError::missing_parameter(if matches!(auth, AuthInfo::Acs3 { .. }) {
            "x-acs-date"
        } else {
            "Timestamp"
        }));
    }
    let ts = parse_timestamp(ts)?;
    if (now_ms - ts).abs() > WINDOW_MS {
        return Err(ApiError::TIMESTAMP_EXPIRED);
    }
    if auth.nonce().unwrap_or_default().is_empty() {
        return Err(ApiError::missing_parameter(if matches!(auth, AuthInfo::Acs3 { .. }) {
            "x-acs-signature-nonce"
        } else {
            "SignatureNonce"
        }));
    }
    Ok(Caller {
        account_id: key.account_id,
        access_key_id: key.access_key_id,
        identity: key.identity,
        signed_at_ms: ts,
    })
}

/// `Ok` if the caller's key is still valid in `tx` (a write authenticated before it was
/// queued re-checks this in its own transaction): the key exists and is Active, or the STS
/// session's role still exists. The caller's identity is refreshed from `tx`, so a policy
/// change committed meanwhile decides the write.
pub fn still_active(
    tx: &dyn vpnroute_store::ReadTx,
    caller: &mut Caller,
    parsed: &ParsedRequest,
    sts_key: &vpnroute_ram::token::TokenKey,
    now_ms: i64,
) -> Result<(), ApiError> {
    let token = parsed.auth.require().ok().and_then(|a| a.security_token());
    let holder = vpnroute_app::ram::key_holder(tx, &caller.access_key_id, token, sts_key, now_ms)?;
    caller.identity = holder.identity;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_timestamp("2024-05-10 08:00").unwrap_err().code,
            "InvalidTimeStamp.Format"
        );
    }

    #[test]
    fn a_future_timestamp_keeps_its_nonce_longer() {
        let caller = |signed_at_ms| Caller {
            account_id: "a".into(),
            access_key_id: "k".into(),
            identity: vpnroute_ram::identity::Identity::root("a"),
            signed_at_ms,
        };
        let now = 1_000_000_000;
        assert_eq!(caller(now).nonce_keep_until(now), now + WINDOW_MS);
        assert_eq!(caller(now - 60_000).nonce_keep_until(now), now + WINDOW_MS);
        let future = now + 14 * 60_000 + 30_000;
        assert_eq!(caller(future).nonce_keep_until(now), future + WINDOW_MS);
    }
}
