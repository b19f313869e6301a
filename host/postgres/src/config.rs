//! Where the ledger is: a `postgres://` URL, completed from the `PG*` variables as libpq
//! would, with this crate's timeouts and its TLS settings (`sslmode`, `sslrootcert`: see
//! `tls.rs`); and the same place shown without its password.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use cardrules::{Error, Result};
use postgres::Config;
use postgres::config::Host;

use crate::error::Cause;
use crate::tls::{SslMode, Tls};

/// How long a TCP connection to the server may take, unless the URL says otherwise.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sent data may stay unacknowledged before the connection is given up (Linux).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Keepalive probes on idle connections, so that a vanished server is noticed in about a
/// minute rather than the system's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// Whether `s` is a PostgreSQL URL (`postgres://` or `postgresql://`).
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Where and how to connect: the client's settings, and the TLS connector to use.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) config: Config,
    pub(crate) tls: Tls,
}

/// The connection settings of `url`, with what it leaves out taken from `env` (the `PG*`
/// variables) and this crate's timeouts where it sets none; reads the `sslrootcert` file.
pub(crate) fn configure(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Target> {
    let context = "cannot open a postgres ledger";
    let env = |name: &str| env(name).filter(|value| !value.is_empty());
    // The client library knows neither `verify-ca`, `verify-full` nor `sslrootcert`: they
    // are taken out of the URL and applied here.
    let (url, ssl) = take_ssl_parameters(url);
    let ssl_mode = match (ssl.mode.filter(|mode| !mode.is_empty()), env("PGSSLMODE")) {
        (Some(value), _) => Some(("sslmode", value)),
        (None, Some(value)) => Some(("PGSSLMODE", value)),
        (None, None) => None,
    };
    let ssl_mode = match ssl_mode {
        None => SslMode::Prefer,
        Some((input, value)) => SslMode::parse(&value).ok_or_else(|| {
            Error::ledger(
                context,
                format!(
                    "`{input}` must be `disable`, `prefer`, `require`, `verify-ca` or `verify-full`, not `{value}`"
                ),
            )
        })?,
    };
    let root = ssl
        .root
        .filter(|root| !root.is_empty())
        .or_else(|| env("PGSSLROOTCERT"))
        .map(PathBuf::from);
    // `PGPORT` is read (and must be valid) only where the URL leaves the port out.
    let env_ports = || -> Result<Option<Vec<u16>>> {
        let Some(value) = env("PGPORT") else {
            return Ok(None);
        };
        value
            .split(',')
            .map(|port| {
                port.trim().parse::<u16>().map_err(|_| {
                    Error::ledger(context, format!("`PGPORT` is not a port number: `{value}`"))
                })
            })
            .collect::<Result<Vec<u16>>>()
            .map(Some)
    };
    let url = with_ports(&url, env_ports)?;
    // The input is never shown: it may hold a password.
    let mut config: Config = url
        .parse()
        .map_err(|e: postgres::Error| Error::ledger(context, Cause::of(e)))?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        match env("PGHOST") {
            Some(hosts) => hosts.split(',').for_each(|host| {
                config.host(host.trim());
            }),
            None => {
                config.host("localhost");
            }
        }
    }
    if config.get_ports().is_empty() {
        for port in env_ports()?.into_iter().flatten() {
            config.port(port);
        }
    }
    if config.get_user().is_none()
        && let Some(user) = env("PGUSER")
    {
        config.user(&user);
    }
    if config.get_password().is_none()
        && let Some(password) = env("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_dbname().is_none()
        && let Some(dbname) = env("PGDATABASE")
    {
        config.dbname(&dbname);
    }
    if config.get_application_name().is_none() {
        config.application_name("cardrules");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if config.get_keepalives_idle() == Config::new().get_keepalives_idle() {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVE_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVE_RETRIES);
    }
    let tls = Tls::new(ssl_mode, root.as_deref()).map_err(|e| Error::ledger(context, e))?;
    config.ssl_mode(tls.mode.client_mode());
    // As libpq, no TLS over a local socket (the server offers none there); and none when
    // only addresses are named: `prefer` would have no name to give the handshake.
    let hosts = config.get_hosts();
    let local_only = !hosts.is_empty() && hosts.iter().all(|host| !matches!(host, Host::Tcp(_)));
    if local_only || (hosts.is_empty() && tls.mode == SslMode::Prefer) {
        config.ssl_mode(postgres::config::SslMode::Disable);
    }
    Ok(Target { config, tls })
}

/// The TLS parameters of a URL, percent-decoded.
#[derive(Default)]
struct SslParameters {
    mode: Option<String>,
    root: Option<String>,
}

/// `url` without its `sslmode` and `sslrootcert` parameters, and their values (the last
/// one of each, as the client library would take). Anything but a URL is left as it is.
fn take_ssl_parameters(url: &str) -> (Cow<'_, str>, SslParameters) {
    let mut taken = SslParameters::default();
    let Some((base, query)) = url.split_once('?') else {
        return (Cow::Borrowed(url), taken);
    };
    if !is_postgres_url(url) {
        return (Cow::Borrowed(url), taken);
    }
    let mut kept = Vec::new();
    for parameter in query.split('&') {
        match parameter.split_once('=') {
            Some(("sslmode", value)) => taken.mode = Some(percent_decoded(value)),
            Some(("sslrootcert", value)) => taken.root = Some(percent_decoded(value)),
            _ => kept.push(parameter),
        }
    }
    if taken.mode.is_none() && taken.root.is_none() {
        return (Cow::Borrowed(url), taken);
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (Cow::Owned(url), taken)
}

/// `text` with its `%XX` escapes decoded (an escape that is not one is kept as written).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// `url` with `ports` given to its hosts when it names hosts but no port: the URL parser
/// would otherwise fill in 5432, where libpq takes `PGPORT`. Other URLs are returned as
/// they are. The split follows the parser's: credentials up to the first `@`, hosts up to
/// the next `/` or `?`.
fn with_ports<'a>(
    url: &'a str,
    ports: impl FnOnce() -> Result<Option<Vec<u16>>>,
) -> Result<Cow<'a, str>> {
    let Some((scheme, rest)) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme).map(|rest| (*scheme, rest)))
    else {
        return Ok(Cow::Borrowed(url));
    };
    let (credentials, rest) = match rest.find('@') {
        Some(at) => rest.split_at(at + 1),
        None => ("", rest),
    };
    let (hosts, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let names_port = |host: &str| match host.strip_prefix('[') {
        Some(bracketed) => bracketed
            .find(']')
            .is_some_and(|end| bracketed[end + 1..].starts_with(':')),
        None => host.contains(':'),
    };
    let query_names_port = tail
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("port=")));
    if hosts.is_empty() || hosts.split(',').any(names_port) || query_names_port {
        return Ok(Cow::Borrowed(url));
    }
    let Some(ports) = ports()? else {
        return Ok(Cow::Borrowed(url));
    };
    let Some(&first) = ports.first() else {
        return Ok(Cow::Borrowed(url));
    };
    let hosts: Vec<String> = hosts
        .split(',')
        .enumerate()
        .map(|(i, host)| format!("{host}:{}", ports.get(i).copied().unwrap_or(first)))
        .collect();
    Ok(Cow::Owned(format!(
        "{scheme}{credentials}{}{tail}",
        hosts.join(",")
    )))
}

/// `postgres://user@host:port/db` (and `?options=…` if any): where the ledger is, for
/// logs; never the password.
pub(crate) fn describe(config: &Config) -> String {
    let mut shown = String::from("postgres://");
    if let Some(user) = config.get_user() {
        shown.push_str(user);
        shown.push('@');
    }
    let hosts: Vec<String> = if config.get_hosts().is_empty() {
        config
            .get_hostaddrs()
            .iter()
            .map(|addr| match addr {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                std::net::IpAddr::V4(v4) => v4.to_string(),
            })
            .collect()
    } else {
        config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]"),
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string().replace('/', "%2F"),
            })
            .collect()
    };
    let ports = config.get_ports();
    for (i, host) in hosts.iter().enumerate() {
        if i > 0 {
            shown.push(',');
        }
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        shown.push_str(&format!("{host}:{port}"));
    }
    if let Some(dbname) = config.get_dbname() {
        shown.push('/');
        shown.push_str(dbname);
    }
    // The server options (a `search_path`, say) tell ledgers in one database apart.
    if let Some(options) = config.get_options() {
        shown.push_str("?options=");
        for c in options.chars() {
            match c {
                '%' => shown.push_str("%25"),
                ' ' => shown.push_str("%20"),
                '=' => shown.push_str("%3D"),
                '&' => shown.push_str("%26"),
                c => shown.push(c),
            }
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn what_the_url_leaves_out_comes_from_the_pg_variables() {
        let env: HashMap<&str, &str> = [
            ("PGHOST", "db.example"),
            ("PGPORT", "6432"),
            ("PGUSER", "cards"),
            ("PGPASSWORD", "s3cret"),
            ("PGDATABASE", "ledger"),
        ]
        .into();
        let env = |name: &str| env.get(name).map(|v| v.to_string());
        let config = configure("postgres://", &env).expect("parses").config;
        assert_eq!(describe(&config), "postgres://cards@db.example:6432/ledger");
        assert_eq!(config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));

        // What the URL names wins; a host without a port takes `PGPORT`, as with libpq.
        let config = configure("postgresql://me:pw@[::1],other/mine", &env)
            .expect("parses")
            .config;
        assert_eq!(
            describe(&config),
            "postgres://me@[::1]:6432,other:6432/mine"
        );
        assert_eq!(config.get_password(), Some(&b"pw"[..]));
        let config = configure("postgres://me@here:5433", &env)
            .expect("parses")
            .config;
        assert_eq!(describe(&config), "postgres://me@here:5433/ledger");
        let config = configure("postgres:///mine?host=here&port=5434", &env)
            .expect("parses")
            .config;
        assert_eq!(describe(&config), "postgres://cards@here:5434/mine");
        let config = configure("postgres:///mine?host=%2Fvar%2Frun%2Fpostgresql", &env)
            .expect("parses")
            .config;
        assert_eq!(
            describe(&config),
            "postgres://cards@%2Fvar%2Frun%2Fpostgresql:6432/mine"
        );

        // Without variables: localhost and 5432.
        let config = configure("postgres://", &|_| None).expect("parses").config;
        assert_eq!(describe(&config), "postgres://localhost:5432");

        // Server options show (they tell schemas apart); a password never does.
        let config = configure(
            "postgres://u:hunter2@h/db?options=-c%20search_path%3Dx",
            &|_| None,
        )
        .expect("parses")
        .config;
        assert_eq!(
            describe(&config),
            "postgres://u@h:5432/db?options=-c%20search_path%3Dx"
        );

        // A bad `PGPORT` matters only where it is used.
        let bad_port = |name: &str| (name == "PGPORT").then(|| "x".to_string());
        assert!(configure("postgres://h:5432/db", &bad_port).is_ok());
        let error = configure("postgres://h/db", &bad_port).expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("`PGPORT` is not a port number: `x`"),
            "{error}"
        );
        let error = configure("postgres://", &bad_port).expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("`PGPORT` is not a port number: `x`"),
            "{error}"
        );
        let error =
            configure("postgres://u:hunter2@h:notaport/db", &|_| None).expect_err("refused");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error
                .to_string()
                .contains("invalid value for option `port`"),
            "{error}"
        );
    }

    #[test]
    fn sslmode_and_sslrootcert_are_read_as_libpq_reads_them() {
        use postgres::config::SslMode as ClientMode;
        let none = |_: &str| -> Option<String> { None };
        let mode = |url: &str, env: &dyn Fn(&str) -> Option<String>| {
            let target = configure(url, env).expect("configures");
            (target.tls.mode, target.config.get_ssl_mode())
        };
        // `prefer` unless told otherwise; the URL wins over `PGSSLMODE`.
        assert_eq!(
            mode("postgres://h/db", &none),
            (SslMode::Prefer, ClientMode::Prefer)
        );
        let disable = |name: &str| (name == "PGSSLMODE").then(|| "disable".to_string());
        assert_eq!(
            mode("postgres://h/db", &disable),
            (SslMode::Disable, ClientMode::Disable)
        );
        assert_eq!(
            mode("postgres://h/db?sslmode=require", &disable),
            (SslMode::Require, ClientMode::Require)
        );
        // No TLS over a local socket, as with libpq.
        assert_eq!(
            mode(
                "postgres:///db?host=%2Fvar%2Frun%2Fpostgresql&sslmode=require",
                &none
            )
            .1,
            ClientMode::Disable
        );
        // The other parameters stay.
        let target = configure(
            "postgres://h/db?sslmode=require&application_name=till&sslrootcert=",
            &none,
        )
        .expect("configures");
        assert_eq!(target.config.get_application_name(), Some("till"));

        // `require` given a root file checks the chain, as `verify-ca`.
        let files = tempfile::tempdir().expect("a temp dir");
        let ca = files.path().join("ca pem");
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("a CA");
        std::fs::write(&ca, cert.pem()).expect("written");
        let url = format!(
            "postgres://h/db?sslmode=require&sslrootcert={}",
            ca.display().to_string().replace(' ', "%20")
        );
        assert_eq!(mode(&url, &none).0, SslMode::VerifyCa);
        let root = |name: &str| (name == "PGSSLROOTCERT").then(|| ca.display().to_string());
        assert_eq!(
            mode("postgres://h/db?sslmode=verify-full", &root),
            (SslMode::VerifyFull, ClientMode::Require)
        );

        // Errors name the input, and never the password.
        let refused = |url: &str, env: &dyn Fn(&str) -> Option<String>| {
            let error = configure(url, env).expect_err("refused").to_string();
            assert!(error.contains("cannot open a postgres ledger: "), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
            error
        };
        let error = refused(
            "postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert=%2Fnowhere%2Fca.pem",
            &none,
        );
        assert!(
            error.contains("cannot read `sslrootcert` file `/nowhere/ca.pem`: "),
            "{error}"
        );
        let error = refused("postgres://u:hunter2@h/db?sslmode=verify-ca", &none);
        assert!(
            error.contains("`sslmode=verify-ca` needs the CA certificates to trust"),
            "{error}"
        );
        let error = refused("postgres://u:hunter2@h/db?sslmode=allow", &none);
        assert!(
            error.contains("`sslmode` must be `disable`, `prefer`, `require`, `verify-ca` or `verify-full`, not `allow`"),
            "{error}"
        );
        let bogus = |name: &str| (name == "PGSSLMODE").then(|| "on".to_string());
        let error = refused("postgres://u:hunter2@h/db", &bogus);
        assert!(error.contains("`PGSSLMODE` must be"), "{error}");
        let empty = files.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").expect("written");
        let error = refused(
            &format!(
                "postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert={}",
                empty.display()
            ),
            &none,
        );
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }

    #[test]
    fn postgres_urls_are_recognised() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://"));
        assert!(!is_postgres_url("sqlite:ledger.sqlite"));
        assert!(!is_postgres_url("ledger.sqlite"));
        assert!(!is_postgres_url("host=localhost user=postgres"));
    }
}
