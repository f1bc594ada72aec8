//! A fresh PostgreSQL database per test: `vpnroute_t_<random>` created through the
//! maintenance database of `VPNROUTE_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped when the guard goes, also when
//! the test fails. PostgreSQL unreachable: the test fails when `CI` is set, and is skipped
//! with a loud `SKIPPED:` line otherwise.

#![allow(dead_code)]

use std::str::FromStr;

pub fn base_url() -> String {
    std::env::var("VPNROUTE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test, dropped on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
}

fn admin_client(url: &str) -> Result<postgres_sync::Client, String> {
    postgres_sync::Client::connect(url).map_err(|e| format!("{e}"))
}

/// A thin blocking client over tokio-postgres for creating and dropping databases.
mod postgres_sync {
    pub struct Client {
        rt: tokio::runtime::Runtime,
        client: tokio_postgres::Client,
    }

    impl Client {
        pub fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let client = rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                Ok::<_, tokio_postgres::Error>(client)
            })?;
            Ok(Client { rt, client })
        }

        pub fn batch(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
            self.rt.block_on(self.client.batch_execute(sql))
        }

        pub fn int(&self, sql: &str) -> Result<i64, tokio_postgres::Error> {
            self.rt
                .block_on(async { Ok(self.client.query_one(sql, &[]).await?.get(0)) })
        }
    }
}

impl TestDb {
    /// `None` (after a `SKIPPED:` line) when PostgreSQL cannot be reached outside CI.
    pub fn create() -> Option<TestDb> {
        let admin = base_url();
        let client = match admin_client(&admin) {
            Ok(c) => c,
            Err(e) => {
                if std::env::var_os("CI").is_some() {
                    panic!("PostgreSQL at {admin} is unreachable (CI is set, so this fails): {e}");
                }
                eprintln!("SKIPPED: PostgreSQL at {admin} is unreachable: {e}");
                return None;
            }
        };
        let name = format!("vpnroute_t_{:016x}", rand::random::<u64>());
        client
            .batch(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let mut config = tokio_postgres::Config::from_str(&admin).expect("VPNROUTE_TEST_PG");
        config.dbname(&name);
        let url = url_of(&config);
        Some(TestDb { name, url, admin })
    }
}

fn url_of(c: &tokio_postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let user = c.get_user().unwrap_or("postgres");
    let password = c
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    format!(
        "postgres://{user}{password}@{host}:{port}/{}",
        c.get_dbname().unwrap_or("")
    )
}

impl TestDb {
    /// One BIGINT computed by `sql` on this database.
    pub fn int(&self, sql: &str) -> i64 {
        admin_client(&self.url)
            .expect("connect")
            .int(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match admin_client(&self.admin) {
            Ok(c) => {
                if let Err(e) = c.batch(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
                    eprintln!("DROP DATABASE {}: {e}", self.name);
                }
            }
            Err(e) => eprintln!("cannot drop {}: {e}", self.name),
        }
    }
}

/// A destination-based route of `gateway` to `dest` via `hop` (weight 100, priority 10).
pub fn route_via(gateway: &str, dest: &str, hop: &str) -> vpnroute_domain::model::VpnRoute {
    vpnroute_domain::model::VpnRoute {
        seq: 0,
        kind: vpnroute_domain::model::RouteKind::Dbr,
        gateway_id: gateway.into(),
        source: String::new(),
        dest: dest.into(),
        next_hop: hop.into(),
        weight: 100,
        priority: 10,
        published: false,
        description: String::new(),
        overlay_mode: "Ipsec".into(),
        create_time: 1,
    }
}
