//! Authentication: who is calling. [`authenticate`] looks up the access key, verifies the
//! signature (both schemes, through `vpnroute-wire`) and checks the request time is within
//! 15 minutes. The nonce is checked afterwards by `http.rs`'s admission step against the
//! store's durable nonce log (so a replay after a restart is refused too). Also [`Throttle`],
//! the per (access key, action) rate limiter.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use vpnroute_domain::ApiError;
use vpnroute_store::{FixedWindowLimiter, RateLimiter};
use vpnroute_wire::{AuthInfo, ParsedRequest, RawRequest};

/// Allowed clock skew and nonce memory, as Alibaba: 15 minutes.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
    pub access_key_id: String,
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
    let key = tx.access_key(key_id)?.ok_or(ApiError::INVALID_ACCESS_KEY_NOT_FOUND)?;
    if key.status != "Active" {
        return Err(ApiError::INVALID_ACCESS_KEY_INACTIVE);
    }
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
        access_key_id: key.id,
    })
}

/// Per (access key, action) rate limits; `Throttling.User` beyond the limit. The counting is
/// a [`RateLimiter`] (in this process's memory today).
pub struct Throttle {
    limiter: Box<dyn RateLimiter>,
}

impl Throttle {
    /// `rps` calls per second per (access key, action); 0 turns throttling off.
    pub fn new(rps: u32) -> Self {
        Throttle {
            limiter: Box::new(FixedWindowLimiter::new(rps)),
        }
    }

    /// `Ok` if the call is within the limit (always, when throttling is off).
    pub fn check(&self, access_key_id: &str, action: &str, now_ms: i64) -> Result<(), ApiError> {
        if self.limiter.admit(access_key_id, action, now_ms) {
            Ok(())
        } else {
            Err(ApiError::THROTTLING_USER)
        }
    }
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
    fn throttle_limits_per_key_and_action() {
        let t = Throttle::new(2);
        assert!(t.check("k", "A", 1000).is_ok());
        assert!(t.check("k", "A", 1001).is_ok());
        assert_eq!(t.check("k", "A", 1002).unwrap_err().code, "Throttling.User");
        assert!(t.check("k", "B", 1002).is_ok());
        assert!(t.check("k", "A", 2000).is_ok());
        assert!(Throttle::new(0).check("k", "A", 0).is_ok());
    }
}
