//! The operator token: what guards the introspection API (`/_vpnroute/*`) and `/metrics`.
//!
//! Those endpoints span accounts and change state (tunnels, task advance), so they take
//! `Authorization: Bearer <token>`; anything else gets 401 and nothing runs. A header a web
//! page cannot set without a CORS preflight (which vpnroute never grants) also keeps
//! cross-site requests out. The token is `--operator-token` / `VPNROUTE_OPERATOR_TOKEN`, else
//! the one stored in the data directory (`operator.token`, mode 0600), else a new random one,
//! stored there and printed once. `--metrics-public` opens `/metrics` alone. The CLI
//! (`vpnroute admin`, `vpnroute explain`) reads the data directory and needs no token.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// File in the data directory holding the generated token.
pub const TOKEN_FILE: &str = "operator.token";

/// The token every operator request must present.
#[derive(Clone)]
pub struct OperatorToken {
    digest: [u8; 32],
}

impl OperatorToken {
    pub fn new(token: &str) -> Self {
        OperatorToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether an `Authorization` header value carries the token. Compares SHA-256 digests
    /// in constant time, so neither the token's length nor its prefix leaks through timing.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else { return false };
        let Some(presented) = value
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"Bearer "))
            .map(|_| value[7..].trim_ascii())
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The token to use: `configured` (flag or environment) if non-empty, else the one stored
/// in `data_dir`, else a new one, stored there (mode 0600) and printed once on stdout.
pub fn resolve(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(t) = configured.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(t.to_string());
    }
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            restrict_permissions(&path)?;
            return Ok(text.trim().to_string());
        }
        Ok(_) => tracing::warn!(path = %path.display(), "operator token file is empty: a new token is generated"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
    let bytes: [u8; 32] = rand::random();
    let token = hex::encode(bytes);
    std::fs::create_dir_all(data_dir)?;
    let tmp = data_dir.join(format!("{TOKEN_FILE}.tmp"));
    {
        let mut f = open_private(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    println!(
        "vpnroute generated the operator token (shown once; stored in {}):",
        path.display()
    );
    println!("  OperatorToken: {token}");
    Ok(token)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

/// A stored token readable by others is narrowed to its owner (and said so).
fn restrict_permissions(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode != 0o600 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "operator token file was not 0600: fixed");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let _ = path;
    Ok(())
}

/// Middleware: the request runs only with the operator token; else 401, JSON
/// `{"Code":"InvalidOperatorToken","Message":…}` and `WWW-Authenticate: Bearer`.
pub async fn require_token(State(token): State<Arc<OperatorToken>>, req: Request, next: Next) -> Response {
    let presented = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if token.accepts(presented) {
        return next.run(req).await;
    }
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({
            "Code": "InvalidOperatorToken",
            "Message": "This endpoint requires the header Authorization: Bearer <operator token>.",
        })),
    )
        .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"vpnroute\""),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        let t = OperatorToken::new("s3cret");
        assert!(t.accepts(Some(b"Bearer s3cret")));
        assert!(t.accepts(Some(b"bearer  s3cret ")));
        for bad in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cret2",
            b"Basic s3cret",
            b"s3cret",
            b"Bearer ",
            b"",
        ] {
            assert!(!t.accepts(Some(bad)), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(!t.accepts(None));
    }

    #[test]
    fn a_generated_token_is_stored_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = resolve(None, dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        let path = dir.path().join(TOKEN_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(resolve(None, dir.path()).unwrap(), first);
        assert_eq!(resolve(Some(" given "), dir.path()).unwrap(), "given");
        assert_eq!(resolve(Some(""), dir.path()).unwrap(), first);
    }
}
