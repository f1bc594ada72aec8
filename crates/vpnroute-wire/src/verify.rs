//! Signature verification for both schemes.
//!
//! This module owns the single decision "does this request carry a valid signature for
//! this secret". The caller has already parsed the request ([`crate::parse`]) and looked
//! up the secret for [`crate::AuthInfo::access_key_id`]. Comparison is constant-time
//! (HMAC `verify_slice`), the client's signature is decoded into a stack buffer, and the
//! only allocations are the string-to-sign (returned inside [`SignatureMismatch`] on
//! failure) and, for ACS3, the canonical request.
//!
//! Not checked here: timestamp freshness (`InvalidTimeStamp.Expired`) and nonce reuse
//! (`SignatureNonceUsed`) — those need a clock and state and belong to the server.

use crate::acs3::{acs3_canonical_request, acs3_string_to_sign, acs3_verify};
use crate::error::SignatureMismatch;
use crate::request::{AuthInfo, ParsedRequest, RawRequest};
use crate::v1::{v1_string_to_sign, v1_verify};

/// Verifies the request's signature with `secret`.
///
/// * v1: HMAC-SHA1 over all (query + body) parameters, key `secret + "&"`, base64.
/// * ACS3: HMAC-SHA256 over the canonical request, key `secret`, hex (either case).
/// * [`AuthInfo::Missing`]: always `Err` with an empty string-to-sign (callers should
///   have rejected unsigned requests with [`AuthInfo::require`] already).
///
/// On failure the error carries the server's string-to-sign for the
/// `SignatureDoesNotMatch` message.
pub fn verify(req: &RawRequest<'_>, parsed: &ParsedRequest, secret: &str) -> Result<(), SignatureMismatch> {
    match &parsed.auth {
        AuthInfo::V1 { signature, .. } => {
            let string_to_sign = v1_string_to_sign(req.method, &parsed.params);
            if v1_verify(secret, &string_to_sign, signature) {
                Ok(())
            } else {
                Err(SignatureMismatch { string_to_sign })
            }
        }
        AuthInfo::Acs3 { signature, .. } => {
            let canonical = acs3_canonical_request(req, parsed);
            let string_to_sign = acs3_string_to_sign(&canonical);
            if acs3_verify(secret, &string_to_sign, signature) {
                Ok(())
            } else {
                Err(SignatureMismatch { string_to_sign })
            }
        }
        AuthInfo::Missing => Err(SignatureMismatch {
            string_to_sign: String::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    #[test]
    fn missing_auth_never_verifies() {
        let req = RawRequest {
            method: "GET",
            path: "/",
            raw_query: "Action=X",
            headers: &[],
            body: b"",
        };
        let parsed = parse(&req).unwrap();
        assert_eq!(
            verify(&req, &parsed, "s"),
            Err(SignatureMismatch {
                string_to_sign: String::new()
            })
        );
    }
}
