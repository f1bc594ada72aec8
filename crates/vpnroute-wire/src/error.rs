//! Typed wire-level failures and their Alibaba error codes.
//!
//! This module owns the mapping from "the request could not be understood" to the
//! `(Code, Message, HTTP status)` triple that Alibaba's gateway would answer with, so the
//! server never invents error texts for protocol problems in ad-hoc places.
//!
//! | failure | Alibaba `Code` | status |
//! |---|---|---|
//! | [`WireError::MissingParameter`] (a v1 signature parameter, `x-acs-date`, …, or `Action`/`Version`) | `MissingParameter` | 400 |
//! | [`WireError::IncompleteSignature`] (malformed `Authorization` header, unsigned `x-acs-*` header) | `IncompleteSignature` | 400 |
//! | [`WireError::UnsupportedSignature`] (`ACS3-HMAC-SM3`, `SignatureMethod=HMAC-SHA256`, `SignatureVersion=2.0`, …) | `IncompleteSignature` | 400 |
//! | [`WireError::InvalidEncoding`] (bad `%` escape, non-UTF-8 after decoding) | `InvalidParameter` | 400 |
//! | [`SignatureMismatch`] (from [`crate::verify()`]) | `SignatureDoesNotMatch` | 400 |
//!
//! Choices (Alibaba's exact answer for these was not observed, see `sdk-wire.md` §4):
//! * An unsupported signature algorithm/method/version is reported as
//!   `IncompleteSignature` ("does not conform to Aliyun standards") rather than as a
//!   signature mismatch, so the caller learns that the *scheme* is the problem.
//! * `SignatureDoesNotMatch` carries the server's string-to-sign after
//!   `server string to sign is:`, exactly the text the legacy Python SDK compares with
//!   its own string-to-sign to turn the error into `InvalidAccessKeySecret`.

use crate::response::ErrorBody;

/// Where a parameter came from: the URL query string or the form-encoded body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamSource {
    /// The URL query string.
    Query,
    /// An `application/x-www-form-urlencoded` request body.
    Body,
}

impl ParamSource {
    /// Human-readable name used in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamSource::Query => "query string",
            ParamSource::Body => "form body",
        }
    }
}

/// Why a percent-encoded component could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    /// A `%` not followed by two hexadecimal digits.
    #[error("malformed percent-escape")]
    BadEscape,
    /// The decoded bytes are not valid UTF-8.
    #[error("not valid UTF-8 after percent-decoding")]
    InvalidUtf8,
}

/// A request that cannot be parsed at the wire level.
///
/// Every variant maps to an Alibaba error via [`WireError::code`],
/// [`WireError::message`] and [`WireError::http_status`] (or [`WireError::to_alibaba`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A mandatory parameter (or ACS3 header) is absent or empty.
    #[error("mandatory parameter {name} is missing")]
    MissingParameter {
        /// The parameter or header name as Alibaba spells it (`AccessKeyId`, `x-acs-date`, …).
        name: &'static str,
    },
    /// The `Authorization` header is malformed (not `ALGO Credential=…,SignedHeaders=…,Signature=…`),
    /// or a header that must be signed is not in `SignedHeaders`.
    #[error("incomplete signature: {reason}")]
    IncompleteSignature {
        /// What exactly is wrong (for logs; not sent to the client).
        reason: &'static str,
    },
    /// A signature scheme this server does not implement.
    #[error("unsupported signature {what}: {value:?}")]
    UnsupportedSignature {
        /// `"algorithm"` (ACS3), `"SignatureMethod"` or `"SignatureVersion"` (v1), or
        /// `"Authorization scheme"`.
        what: &'static str,
        /// The value the client sent.
        value: String,
    },
    /// A query or body component is not valid percent-encoding or not UTF-8.
    #[error("invalid encoding in the {} (parameter {name:?}): {kind}", location.as_str())]
    InvalidEncoding {
        /// Where the component was.
        location: ParamSource,
        /// The (decoded) parameter name when the failure is in a value; `None` when the
        /// name itself could not be decoded.
        name: Option<String>,
        /// The decoding failure.
        kind: DecodeError,
    },
    /// The query and form body together hold more than [`crate::request::MAX_PARAMS`]
    /// `&`-separated components (counted before decoding, so the cost is one scan).
    #[error("more than {limit} parameters")]
    TooManyParameters {
        /// The limit.
        limit: usize,
    },
}

/// The `(Code, Message, HTTP status)` triple of an Alibaba error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlibabaError {
    /// Alibaba error code, e.g. `MissingParameter`.
    pub code: &'static str,
    /// The message text sent to the client.
    pub message: String,
    /// HTTP status code.
    pub http_status: u16,
}

impl AlibabaError {
    /// Builds the response body for this error (with the standard `Recommend` link).
    pub fn into_body(self, request_id: &str, host_id: &str) -> ErrorBody {
        ErrorBody::new(request_id, host_id, self.code, self.message)
    }
}

impl WireError {
    /// The Alibaba error code.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::MissingParameter { .. } => "MissingParameter",
            WireError::IncompleteSignature { .. } | WireError::UnsupportedSignature { .. } => "IncompleteSignature",
            WireError::InvalidEncoding { .. } | WireError::TooManyParameters { .. } => "InvalidParameter",
        }
    }

    /// The message text Alibaba-style clients display.
    pub fn message(&self) -> String {
        match self {
            WireError::MissingParameter { name } => {
                format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied.")
            }
            WireError::IncompleteSignature { .. } | WireError::UnsupportedSignature { .. } => {
                "The request signature does not conform to Aliyun standards.".to_owned()
            }
            WireError::InvalidEncoding {
                location,
                name: Some(name),
                kind,
            } => format!(
                "The specified parameter \"{name}\" is not valid: the {} value is {kind}.",
                location.as_str()
            ),
            WireError::InvalidEncoding {
                location,
                name: None,
                kind,
            } => format!(
                "The request {} contains a parameter name that is {kind}.",
                location.as_str()
            ),
            WireError::TooManyParameters { limit } => {
                format!("The request has too many parameters; at most {limit} are accepted.")
            }
        }
    }

    /// The HTTP status to answer with (400 for every wire-level failure).
    pub fn http_status(&self) -> u16 {
        400
    }

    /// Code, message and status in one value.
    pub fn to_alibaba(&self) -> AlibabaError {
        AlibabaError {
            code: self.code(),
            message: self.message(),
            http_status: self.http_status(),
        }
    }
}

/// The request's signature does not match the one computed by the server.
///
/// Carries the server's string-to-sign so it can be reported the way Alibaba does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature does not match; server string to sign is: {string_to_sign:?}")]
pub struct SignatureMismatch {
    /// The string-to-sign the server computed (empty when the request carried no signature).
    pub string_to_sign: String,
}

impl SignatureMismatch {
    /// Alibaba code for a signature mismatch.
    pub const CODE: &'static str = "SignatureDoesNotMatch";

    /// `SignatureDoesNotMatch`, 400, `Specified signature is not matched with our
    /// calculation. server string to sign is:<StringToSign>`.
    pub fn to_alibaba(&self) -> AlibabaError {
        AlibabaError {
            code: Self::CODE,
            message: format!(
                "Specified signature is not matched with our calculation. server string to sign is:{}",
                self.string_to_sign
            ),
            http_status: 400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parameter_message() {
        let e = WireError::MissingParameter { name: "AccessKeyId" };
        let a = e.to_alibaba();
        assert_eq!(a.code, "MissingParameter");
        assert_eq!(a.http_status, 400);
        assert_eq!(
            a.message,
            "The input parameter \"AccessKeyId\" that is mandatory for processing this request is not supplied."
        );
    }

    #[test]
    fn incomplete_signature_message() {
        for e in [
            WireError::IncompleteSignature { reason: "x" },
            WireError::UnsupportedSignature {
                what: "algorithm",
                value: "ACS3-HMAC-SM3".into(),
            },
        ] {
            assert_eq!(e.code(), "IncompleteSignature");
            assert_eq!(
                e.message(),
                "The request signature does not conform to Aliyun standards."
            );
            assert_eq!(e.http_status(), 400);
        }
    }

    #[test]
    fn invalid_encoding_is_invalid_parameter() {
        let e = WireError::InvalidEncoding {
            location: ParamSource::Query,
            name: Some("Description".into()),
            kind: DecodeError::InvalidUtf8,
        };
        assert_eq!(e.code(), "InvalidParameter");
        assert!(e.message().contains("\"Description\""));
        let e = WireError::InvalidEncoding {
            location: ParamSource::Body,
            name: None,
            kind: DecodeError::BadEscape,
        };
        assert_eq!(e.code(), "InvalidParameter");
        assert!(e.message().contains("form body"));
    }

    #[test]
    fn mismatch_message_has_string_to_sign_after_colon() {
        let m = SignatureMismatch {
            string_to_sign: "POST&%2F&A%3Db".into(),
        };
        let a = m.to_alibaba();
        assert_eq!(a.code, "SignatureDoesNotMatch");
        assert_eq!(a.http_status, 400);
        // The legacy Python SDK splits on the first ':' and compares the rest.
        let (_, tail) = a.message.split_once(':').unwrap_or_default();
        assert_eq!(tail, "POST&%2F&A%3Db");
    }
}
