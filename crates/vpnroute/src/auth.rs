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
    authenticate_keyed(tx, raw, parsed, sts_key, now_ms).map(|(caller, _)| caller)
}

/// The secret a request's signature was verified with, for [`confirm`].
pub struct VerifiedWith(String);

/// [`authenticate`], and the secret the signature was verified with.
pub fn authenticate_keyed(
    tx: &dyn vpnroute_store::ReadTx,
    raw: &RawRequest<'_>,
    parsed: &ParsedRequest,
    sts_key: &vpnroute_ram::token::TokenKey,
    now_ms: i64,
) -> Result<(Caller, VerifiedWith), ApiError> {
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
    Ok((
        Caller {
            account_id: key.account_id,
            access_key_id: key.access_key_id,
            identity: key.identity,
            signed_at_ms: ts,
        },
        VerifiedWith(key.secret),
    ))
}

/// Authenticate again, on `tx`, a request [`authenticate_keyed`] passed on other state (a
/// read first authenticated on this process's cache, then run at the generation its
/// statement read): the key must still exist and be Active (or the STS session's role still
/// exist), and the caller's account and identity come from `tx`. The timestamp and nonce
/// checks do not depend on the state and stand; the signature is verified again only when
/// the key's secret in `tx` is not the one it was verified with. The same answer as
/// [`authenticate`] on `tx`, without computing the signature twice.
pub fn confirm(
    tx: &dyn vpnroute_store::ReadTx,
    raw: &RawRequest<'_>,
    parsed: &ParsedRequest,
    sts_key: &vpnroute_ram::token::TokenKey,
    now_ms: i64,
    first: &Caller,
    verified: &VerifiedWith,
) -> Result<Caller, ApiError> {
    let holder = current_holder(tx, &first.access_key_id, parsed, sts_key, now_ms)?;
    if holder.secret != verified.0 {
        return authenticate(tx, raw, parsed, sts_key, now_ms);
    }
    Ok(Caller {
        account_id: holder.account_id,
        access_key_id: holder.access_key_id,
        identity: holder.identity,
        signed_at_ms: first.signed_at_ms,
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
    caller.identity = current_holder(tx, &caller.access_key_id, parsed, sts_key, now_ms)?.identity;
    Ok(())
}

/// The holder of an already authenticated request's key in `tx` (with the request's
/// SecurityToken, for an STS key): what [`confirm`] and [`still_active`] check again.
fn current_holder(
    tx: &dyn vpnroute_store::ReadTx,
    access_key_id: &str,
    parsed: &ParsedRequest,
    sts_key: &vpnroute_ram::token::TokenKey,
    now_ms: i64,
) -> Result<vpnroute_app::ram::KeyHolder, ApiError> {
    let token = parsed.auth.require().ok().and_then(|a| a.security_token());
    vpnroute_app::ram::key_holder(tx, access_key_id, token, sts_key, now_ms)
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

    /// `confirm` answers as `authenticate` would on the second state: the key's state and
    /// secret there decide, not the first check's.
    #[test]
    fn confirm_decides_on_its_own_state() {
        use vpnroute_store::{AccessKey, Account, Durability, Store};
        let dir = tempfile::tempdir().unwrap();
        let store = vpnroute_store_sqlite::SqliteStore::open(&dir.path().join("db"), Durability::Process).unwrap();
        let store: &dyn Store = &*store;
        let key = |secret: &str, status: &str| AccessKey {
            id: "AK1".into(),
            account_id: "1234".into(),
            secret: secret.into(),
            status: status.into(),
            created_at: 0,
            ram_user_id: None,
        };
        store
            .write(|tx| {
                tx.insert_account(&Account {
                    id: "1234".into(),
                    name: "1234".into(),
                    is_root: true,
                    created_at: 0,
                })?;
                tx.insert_access_key(&key("s1", "Active"))
            })
            .unwrap();
        let now = OffsetDateTime::now_utc();
        let ts = now
            .format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .unwrap();
        let mut p = vpnroute_wire::Params::new();
        for (k, v) in [
            ("Action", "DescribeVpcs"),
            ("Version", "2016-04-28"),
            ("AccessKeyId", "AK1"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "n1"),
            ("Timestamp", ts.as_str()),
        ] {
            p.push(k, v);
        }
        let query = vpnroute_wire::v1_signed_query("GET", &p, "s1");
        let raw = RawRequest {
            method: "GET",
            path: "/",
            raw_query: &query,
            headers: &[],
            body: b"",
        };
        let parsed = vpnroute_wire::parse(&raw).unwrap();
        let sts = vpnroute_ram::token::TokenKey::generate();
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let (first, verified) = store
            .read(|tx| authenticate_keyed(tx, &raw, &parsed, &sts, now_ms))
            .unwrap();
        let again = |store: &dyn Store| store.read(|tx| confirm(tx, &raw, &parsed, &sts, now_ms, &first, &verified));
        let same = again(store).unwrap();
        assert_eq!(
            (same.account_id.as_str(), same.signed_at_ms),
            ("1234", first.signed_at_ms)
        );

        store.write(|tx| tx.set_access_key_status("AK1", "Inactive")).unwrap();
        assert_eq!(
            again(store).unwrap_err().code,
            ApiError::INVALID_ACCESS_KEY_INACTIVE.code
        );
        // The same id with another secret: the signature is checked again, and fails.
        store
            .write(|tx| {
                tx.delete_access_key("AK1")?;
                tx.insert_access_key(&key("s2", "Active"))
            })
            .unwrap();
        assert_eq!(again(store).unwrap_err().code, "SignatureDoesNotMatch");
        // The same id and secret in another account: the caller is the second state's.
        store
            .write(|tx| {
                tx.insert_account(&Account {
                    id: "5678".into(),
                    name: "5678".into(),
                    is_root: true,
                    created_at: 0,
                })?;
                tx.delete_access_key("AK1")?;
                tx.insert_access_key(&AccessKey {
                    account_id: "5678".into(),
                    ..key("s1", "Active")
                })
            })
            .unwrap();
        assert_eq!(again(store).unwrap().account_id, "5678");
        store.write(|tx| tx.delete_access_key("AK1")).unwrap();
        assert_eq!(
            again(store).unwrap_err().code,
            ApiError::INVALID_ACCESS_KEY_NOT_FOUND.code
        );
    }
}
