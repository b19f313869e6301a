//! TLS against real servers: the local one (`CARDRULES_TEST_POSTGRES`, with whatever
//! certificate it has), and a private cluster started by the test, presenting a certificate
//! of a CA the test made, for `verify-ca` and `verify-full`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cardrules::Error;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::PostgresLedger;
use crate::config::configure;
use crate::pool::Pool;
use crate::tests::{Scratch, server};

/// Says on stderr why a test did nothing (the harness captures `eprintln!`).
fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
}

/// Whether the ledger's connections are encrypted, as the server sees it.
fn encrypted(ledger: &PostgresLedger) -> bool {
    let mut lease = ledger.pool.get("test").expect("a connection");
    let session = lease.session.as_mut().expect("a session");
    session
        .client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .expect("pg_stat_ssl reads")
        .get(0)
}

fn refused(url: &str) -> Error {
    match PostgresLedger::open(url) {
        Ok(_) => panic!("`{url}` must be refused"),
        Err(error) => error,
    }
}

/// A certificate authority made for the test.
fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a CA key")).expect("a CA")
}

/// A server certificate for `names`, signed by `ca`: the certificate and the key, in PEM.
fn server_certificate(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("server parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, "cardrules test server");
    let key = KeyPair::generate().expect("a server key");
    let cert = params.signed_by(&key, ca).expect("a server certificate");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn require_encrypts_and_disable_does_not() {
    let Some(server) = server() else { return };
    // The local server has `ssl = on`; `prefer`, the default, then encrypts too.
    for (mode, tls) in [("require", true), ("disable", false), ("prefer", true)] {
        let scratch = Scratch::new(&server);
        let ledger = PostgresLedger::open(&format!("{}&sslmode={mode}", scratch.url))
            .unwrap_or_else(|e| panic!("`sslmode={mode}` opens: {e}"));
        assert_eq!(encrypted(&ledger), tls, "sslmode={mode}");
    }
}

#[test]
fn verify_full_refuses_a_certificate_of_another_ca() {
    let Some(server) = server() else { return };
    let files = tempfile::tempdir().expect("a temp dir");
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, authority("cardrules test CA").pem()).expect("the CA is written");
    let separator = if server.contains('?') { '&' } else { '?' };
    let error = refused(&format!(
        "{server}{separator}sslmode=verify-full&sslrootcert={}",
        ca.display()
    ));
    assert!(matches!(error, Error::Ledger { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("(`sslmode=verify-full`): the server's certificate is refused: "),
        "{message}"
    );
    assert!(message.contains("invalid peer certificate"), "{message}");
}

/// A PostgreSQL cluster of the test's own, as the `postgres` user, on a free port of
/// 127.0.0.1, with `ssl = on` and the certificate given; stopped and removed when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    /// `None` (and a line saying why) where no cluster can be started here: no PostgreSQL
    /// server binaries, or not root (the cluster runs as `postgres`).
    fn start(cert: &str, key: &str) -> Option<Cluster> {
        let Some(bin) = server_binaries() else {
            skipped(
                "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin for a private cluster",
            );
            return None;
        };
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if !root || Command::new("runuser").arg("--version").output().is_err() {
            skipped("a private PostgreSQL cluster needs root and `runuser`");
            return None;
        }
        let cluster = Cluster {
            dir: tempfile::Builder::new()
                .prefix("cardrules-pg-tls-")
                .tempdir()
                .expect("a temp dir"),
            bin,
            port: free_port(),
        };
        let path = cluster.dir.path();
        std::fs::write(path.join("server.crt"), cert).expect("the certificate is written");
        std::fs::write(path.join("server.key"), key).expect("the key is written");
        std::fs::set_permissions(
            path.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("the key is private");
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .output()
            .expect("chown runs");
        assert!(chown.status.success(), "chown: {chown:?}");
        let data = cluster.data();
        let initdb = cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(initdb.status.success(), "initdb: {initdb:?}");
        let dir = path.display();
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={dir} \
             -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key \
             -c fsync=off -c max_connections=20 -c shared_buffers=16MB",
            cluster.port
        );
        let log = format!("{dir}/log");
        let start = cluster.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "30", "-o", &options, "start",
            ],
        );
        assert!(
            start.status.success(),
            "pg_ctl start: {start:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("runuser runs")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

/// The newest PostgreSQL server binaries installed the Debian way.
fn server_binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("a file is written");
    path.display().to_string()
}

#[test]
fn verify_full_trusts_only_its_ca_and_the_names_in_the_certificate() {
    // Run with the other PostgreSQL tests (CI sets the variable).
    let Some(_) = server() else { return };
    let ca = authority("cardrules test CA");
    let (cert, key) = server_certificate(&ca, &["localhost", "127.0.0.1"]);
    let Some(cluster) = Cluster::start(&cert, &key) else {
        return;
    };
    let files = tempfile::tempdir().expect("a temp dir");
    let ca = write(files.path(), "ca.pem", &ca.pem());
    let other = write(files.path(), "other.pem", &authority("another CA").pem());
    // A password the server does not need (trust), which must show nowhere.
    let url = |host: &str, query: &str| {
        let separator = if query.is_empty() { "" } else { "?" };
        format!(
            "postgres://postgres:hunter2@{host}:{}/postgres{separator}{query}",
            cluster.port
        )
    };

    // By name and by address, both in the certificate.
    for host in ["localhost", "127.0.0.1"] {
        let ledger =
            PostgresLedger::open(&url(host, &format!("sslmode=verify-full&sslrootcert={ca}")))
                .unwrap_or_else(|e| panic!("verify-full to {host}: {e}"));
        assert!(encrypted(&ledger), "{host}");
    }

    // Another CA: refused, whether verify-full, verify-ca, or require given a root file.
    for mode in ["verify-full", "verify-ca", "require"] {
        let error = refused(&url(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={other}"),
        ));
        assert!(matches!(error, Error::Ledger { .. }), "{error:?}");
        let message = error.to_string();
        let shown_mode = if mode == "require" { "verify-ca" } else { mode };
        assert!(
            message.contains(&format!(
                "cannot connect to `postgres://postgres@localhost:{}/postgres` (`sslmode={shown_mode}`): the server's certificate is refused: ",
                cluster.port
            )),
            "{message}"
        );
        assert!(message.contains("UnknownIssuer"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    // A name not in the certificate (the address is): verify-full refuses, verify-ca does
    // not check names.
    let elsewhere = |mode: &str| {
        url(
            "elsewhere.example",
            &format!("hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={ca}"),
        )
    };
    let message = refused(&elsewhere("verify-full")).to_string();
    assert!(
        message.contains("certificate not valid for name \"elsewhere.example\""),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    let ledger = PostgresLedger::open(&elsewhere("verify-ca")).expect("verify-ca opens");
    assert!(encrypted(&ledger));

    // `require` without a root file takes any certificate, encrypted.
    let ledger = PostgresLedger::open(&url("localhost", "sslmode=require")).expect("opens");
    assert!(encrypted(&ledger));

    // `PGSSLMODE` and `PGSSLROOTCERT` as libpq: used where the URL says nothing.
    let connects = |env: &[(&str, &str)]| {
        let env = |name: &str| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        };
        let target = configure(&url("localhost", ""), &env).expect("configures");
        Pool::new(target, "test").get("test").map(drop)
    };
    connects(&[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", &ca)]).expect("trusted");
    let error = connects(&[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", &other)])
        .expect_err("not trusted");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
}
