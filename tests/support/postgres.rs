//! A fresh PostgreSQL database per test, on the server `CARDRULES_TEST_POSTGRES` names
//! (shared by the test files that need one).

use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh database on the PostgreSQL server named by `CARDRULES_TEST_POSTGRES`, dropped
/// when done; `None` (and a line saying the test was skipped) when the variable is unset.
pub struct Database {
    admin: String,
    name: String,
    pub url: String,
}

impl Database {
    pub fn fresh() -> Option<Database> {
        let Ok(admin) = std::env::var("CARDRULES_TEST_POSTGRES") else {
            // Straight to stderr: the test harness captures eprintln! of passing tests.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: set CARDRULES_TEST_POSTGRES=postgres://user@host:port/db to run the PostgreSQL tests"
            );
            return None;
        };
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "cardrules_server_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .expect("CARDRULES_TEST_POSTGRES names a reachable server");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let (base, _) = admin.rsplit_once('/').expect("the URL names a database");
        let url = format!("{base}/{name}");
        Some(Database { admin, name, url })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
