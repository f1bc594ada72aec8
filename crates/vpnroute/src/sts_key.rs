//! The STS token key in the data directory (`sts.key`), shared by the server and
//! `vpnroute admin sts assume`.

use std::path::Path;

use anyhow::Context;
use vpnroute_ram::token::TokenKey;

/// The file holding the STS token key (64 hex characters), in the data directory.
pub const STS_KEY_FILE: &str = "sts.key";

/// The data directory's STS token key, created (mode 0600) on first use.
pub fn sts_key(data_dir: &Path) -> anyhow::Result<TokenKey> {
    let path = data_dir.join(STS_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => TokenKey::from_hex(&text).with_context(|| format!("{} is not 64 hex characters", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let key = TokenKey::generate();
            let tmp = data_dir.join(format!("{STS_KEY_FILE}.{}.tmp", std::process::id()));
            {
                use std::io::Write;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&tmp)?;
                f.write_all(key.to_hex().as_bytes())?;
                f.sync_all()?;
            }
            // Two processes starting at once: the first link wins, both then read it.
            if std::fs::hard_link(&tmp, &path).is_err() && !path.exists() {
                std::fs::rename(&tmp, &path)?;
            }
            let _ = std::fs::remove_file(&tmp);
            sts_key(data_dir)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
