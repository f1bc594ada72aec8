//! Versioned migrations: `PRAGMA user_version` records the last applied one; each migration
//! runs in its own transaction.

use rusqlite::Connection;

use crate::Error;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/001_init.sql")),
    (2, include_str!("migrations/002_route_counts.sql")),
    (3, include_str!("migrations/003_nonces_out.sql")),
    (4, include_str!("migrations/004_route_page_index.sql")),
    (5, include_str!("migrations/005_resource_counts.sql")),
    (6, include_str!("migrations/006_commit_generation.sql")),
    (7, include_str!("migrations/007_reconcile.sql")),
    (8, include_str!("migrations/008_ram.sql")),
    (9, include_str!("migrations/009_settings.sql")),
];

pub fn migrate(conn: &mut Connection) -> Result<(), Error> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (version, sql) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        let txn = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        txn.execute_batch(sql)?;
        txn.pragma_update(None, "user_version", version)?;
        txn.commit()?;
        tracing::info!(version, "applied migration");
    }
    Ok(())
}
