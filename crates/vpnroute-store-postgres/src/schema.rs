//! Versioned migrations: the embedded SQL files, applied in order at open; the
//! `schema_migrations` table records each applied version. The whole check-and-apply runs
//! under a session advisory lock, so when several replicas start together exactly one
//! migrates and the others wait for it, then find every version applied. Each migration
//! runs in its own transaction with its version row, so a crash mid-migration leaves the
//! previous version and the next opener applies it again.

use deadpool_postgres::Object;
use vpnroute_store::StoreError;

use crate::pg_err;

/// (version, SQL), in order.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/001_init.sql")),
    (2, include_str!("migrations/002_settings.sql")),
];

/// The advisory lock key of migrations ("vpnroute" in ASCII).
const MIGRATION_LOCK: i64 = 0x7670_6e72_6f75_7465;

pub(crate) async fn migrate(client: &Object) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    let result = apply(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err);
    result?;
    unlocked?;
    Ok(())
}

async fn apply(client: &Object) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg_err)?;
    let current: i64 = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
        .await
        .map_err(pg_err)?
        .get(0);
    if let Some((latest, _)) = MIGRATIONS.last() {
        if current > *latest {
            return Err(StoreError::Other(format!(
                "the database schema is at version {current}, newer than this vpnroute knows ({latest}): upgrade vpnroute"
            )));
        }
    }
    for (version, sql) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        let batch = format!("BEGIN; {sql}; INSERT INTO schema_migrations(version) VALUES ({version}); COMMIT");
        if let Err(e) = client.batch_execute(&batch).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(StoreError::Other(format!("migration {version}: {e}")));
        }
        tracing::info!(version, "postgres: applied migration");
    }
    Ok(())
}
