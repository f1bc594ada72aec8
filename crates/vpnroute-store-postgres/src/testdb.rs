//! A fresh database for the crate's own unit tests (the integration tests have theirs in
//! `tests/common`): `vpnroute_t_<random>` on `VPNROUTE_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped with the guard. Unreachable: the
//! test fails when `CI` is set, and is skipped with a `SKIPPED:` line otherwise.

use std::str::FromStr;

pub(crate) struct TestDb {
    name: String,
    admin: String,
    pub(crate) config: tokio_postgres::Config,
}

fn run(admin: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.batch_execute(sql).await
    })
}

impl TestDb {
    pub(crate) fn create() -> Option<TestDb> {
        let admin =
            std::env::var("VPNROUTE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("vpnroute_t_{:016x}", rand::random::<u64>());
        if let Err(e) = run(&admin, &format!("CREATE DATABASE {name}")) {
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL at {admin}: {e}");
            }
            eprintln!("SKIPPED: PostgreSQL at {admin}: {e}");
            return None;
        }
        let mut config = tokio_postgres::Config::from_str(&admin).expect("VPNROUTE_TEST_PG");
        config.dbname(&name);
        Some(TestDb { name, admin, config })
    }

    /// A connection string for [`crate::PgStore::open`] (`key=value` form).
    pub(crate) fn url(&self) -> String {
        let c = &self.config;
        let host = match c.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let mut url = format!(
            "host={host} port={} user={} dbname={}",
            c.get_ports().first().copied().unwrap_or(5432),
            c.get_user().unwrap_or("postgres"),
            self.name
        );
        if let Some(p) = c.get_password() {
            url.push_str(&format!(
                " password='{}'",
                String::from_utf8_lossy(p).replace('\'', "\\'")
            ));
        }
        url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Err(e) = run(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("DROP DATABASE {}: {e}", self.name);
        }
    }
}
