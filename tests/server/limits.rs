//! The server stays answering under load: `--max-in-flight`, bounded request heads and
//! bodies, idle connections under a low open-file limit, and `/readyz` saying why not.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixtures::*;
use crate::support::files::{copy_dir, shipped_policies};
use crate::support::server::*;

#[test]
fn past_max_in_flight_the_answer_is_503_at_once_with_retry_after_and_readyz_says_why() {
    let server = Arc::new(server_with_a_slow_program(&["--max-in-flight", "1"]));
    let (status, ready) = server.get("/readyz");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["max-in-flight"], 1);

    // A till keeps the one place busy with slow decisions until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let slow = {
        let (server, stop) = (server.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut answered = 0;
            while !stop.load(Ordering::SeqCst) {
                let (status, decision) = server.post("/v1/decisions", &loop_request());
                if status == 200 {
                    assert_eq!(decision["reason"], "policy-error", "{decision}");
                    answered += 1;
                }
            }
            answered
        })
    };
    // Readiness says so while the place is taken…
    let mut not_ready = Value::Null;
    eventually("/readyz reports the bound reached", &server, || {
        let (status, ready) = server.get("/readyz");
        let full = status == 503
            && ready["reasons"].as_array().unwrap().iter().any(|r| {
                r.as_str()
                    .unwrap()
                    .contains("every place for work in flight is taken")
            });
        if full {
            not_ready = ready;
        }
        full
    });
    assert_eq!(not_ready["ready"], false);
    assert!(
        not_ready["error"]
            .as_str()
            .unwrap()
            .starts_with("not ready: "),
        "{not_ready}"
    );
    conforms(
        &server.get("/v1/openapi.json").1,
        "GET",
        "/readyz",
        503,
        &not_ready,
    );
    // …and a decision that finds it taken is refused at once, not queued.
    let mut refused = None;
    eventually("a decision is refused with a 503", &server, || {
        let started = Instant::now();
        let response = agent()
            .post(server.url("/v1/decisions"))
            .send(kino("AK-1001", None).to_string())
            .unwrap();
        if response.status() == 503 {
            refused = Some((started.elapsed(), response));
            true
        } else {
            false
        }
    });
    let (took, mut response) = refused.unwrap();
    // The slow decision takes up to 2 s; a queued answer would have waited for it.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(response.headers()["retry-after"], "1");
    let error: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    let spec = server.get("/v1/openapi.json").1;
    conforms(&spec, "POST", "/v1/decisions", 503, &error);
    let message = error["error"].as_str().unwrap();
    assert!(
        message.starts_with("the server is busy: 1 requests are in flight"),
        "{message}"
    );
    assert!(message.contains("`--max-in-flight`"), "{message}");

    stop.store(true, Ordering::SeqCst);
    assert!(
        slow.join().unwrap() >= 1,
        "the slow decisions were answered"
    );
    // Once the place is free, decisions are answered again and the server is ready.
    assert_eq!(server.decide(&kino("AK-1001", None))["allow"], true);
    assert_eq!(server.get("/readyz").0, 200);
    let metrics = metrics_of(&server);
    assert!(metrics.value("cardrules_overload_rejections_total", &[]) >= 1.0);
    assert_eq!(metrics.value("cardrules_max_in_flight", &[]), 1.0);
}

#[test]
fn request_heads_and_bodies_are_bounded_in_size_and_time() {
    let server = Server::start_with(
        Arc::new({
            let dir = tempfile::tempdir().unwrap();
            copy_dir(&shipped_policies(), &dir.path().join("policies"));
            dir
        }),
        &[
            "--allow-unsigned",
            "--max-header-bytes",
            "4096",
            "--idle-timeout",
            "2",
        ],
    );
    let big = "x".repeat(8_000);
    let response = agent()
        .get(server.url("/healthz"))
        .header("X-Padding", &big)
        .call();
    // hyper answers 431 and closes; a client may also see the close first.
    if let Ok(response) = response {
        assert_eq!(response.status(), 431);
    }
    let small = "x".repeat(1_000);
    let (status, _) = answer(
        agent()
            .get(server.url("/healthz"))
            .header("X-Padding", &small)
            .call(),
    );
    assert_eq!(status, 200);

    // A body that stops half-way is answered 408 once the idle timeout has passed…
    use std::io::{Read, Write};
    let address = server.base.strip_prefix("http://").unwrap().to_string();
    let mut stalled = std::net::TcpStream::connect(&address).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stalled
        .write_all(
            b"POST /v1/decisions HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{\"pro",
        )
        .unwrap();
    let mut answer = String::new();
    stalled.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"cannot read request: the body did not arrive within 2 s"}"#),
        "{answer}"
    );
    // …and a connection that sends nothing, or half a head, is closed by the server.
    for sent in [&b""[..], b"GET /healthz HTTP/1.1\r\nHo"] {
        let mut silent = std::net::TcpStream::connect(&address).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        silent.write_all(sent).unwrap();
        let mut rest = Vec::new();
        // EOF (or a reset) from the server, well before the read timeout.
        let closed = silent.read_to_end(&mut rest);
        assert!(
            closed.is_ok()
                || closed
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{closed:?}"
        );
        assert!(
            rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&rest)
        );
    }
    // So is one kept alive after its answer that sends no next request: the head's timer
    // runs again whenever a head is awaited.
    let mut kept = std::net::TcpStream::connect(&address).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let closed = kept.read_to_end(&mut rest);
    assert!(
        closed.is_ok()
            || closed
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{closed:?}"
    );
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(!rest.contains("connection: close"), "kept alive: {rest}");
}

/// Sets this process's soft limit on open files to at least `files` (within the hard
/// limit), for tests that hold many connections.
fn allow_open_files(files: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < files {
            assert!(
                limit.rlim_max == libc::RLIM_INFINITY || limit.rlim_max >= files,
                "the hard limit on open files ({}) is below {files}",
                limit.rlim_max
            );
            limit.rlim_cur = files;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

#[test]
fn under_ulimit_1024_eleven_hundred_idle_connections_do_not_stop_decisions() {
    allow_open_files(4096);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_cardrules"))
        .arg("serve")
        .arg("--policies")
        .arg(dir.path().join("policies"))
        .arg("--ledger")
        .arg(dir.path().join("ledger.sqlite"))
        .args(["--listen", "127.0.0.1:0", "--allow-unsigned"])
        .args(["--idle-timeout", "3"])
        // Every connection here is from one peer: the cap on them all is what is tested.
        .args(["--max-connections-per-peer", "2000"])
        // Recorded traffic of 2024, as every server of the harness decides it.
        .args(["--max-lateness", "none"]);
    let server = Server::spawn(Arc::new(dir), command);
    let address = server.base.strip_prefix("http://").unwrap().to_string();

    let idle: Vec<std::net::TcpStream> = (0..1_100)
        .map(|i| {
            std::net::TcpStream::connect(&address)
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();
    // With 1 024 files, the server takes 896 connections; the rest wait in the backlog
    // until idle ones time out. Decisions are answered all the same.
    let started = Instant::now();
    for n in 0..3 {
        let (status, decision) = server.post(
            "/v1/decisions",
            &kino("AK-1001", Some(&format!("idle-{n}"))).to_string(),
        );
        assert_eq!(status, 200, "{decision}");
        assert_eq!(decision["allow"], true);
    }
    assert_eq!(server.get("/healthz").0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    let log = server.log();
    assert!(
        log.contains("896 connections open, the most allowed (`--max-connections`)"),
        "{log}"
    );
    assert!(!log.contains("Too many open files"), "{log}");
    drop(idle);
}

/// A connection to `to` from the local address `from`: with another loopback address than
/// 127.0.0.1, another peer as the server sees it.
fn connect_from(from: std::net::Ipv4Addr, to: std::net::SocketAddrV4) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    let address = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let (local, remote) = (address(from, 0), address(*to.ip(), to.port()));
    let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain system calls on a socket this function owns (the stream closes it), with
    // addresses that live across the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let bound = libc::bind(fd, (&raw const local).cast(), size);
        assert_eq!(bound, 0, "bind {from}: {}", std::io::Error::last_os_error());
        let connected = libc::connect(fd, (&raw const remote).cast(), size);
        assert_eq!(
            connected,
            0,
            "connect {to}: {}",
            std::io::Error::last_os_error()
        );
        stream
    }
}

/// `GET path` from the local address `from`, and the answer (head and body) as text.
fn get_from(from: std::net::Ipv4Addr, server: &Server, path: &str) -> String {
    try_get_from(from, server, path).unwrap_or_else(|e| panic!("GET {path} from {from}: {e}"))
}

/// `GET path` from the local address `from`: the answer as text, or why none was read.
fn try_get_from(from: std::net::Ipv4Addr, server: &Server, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let to = server
        .base
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let mut stream = connect_from(from, to);
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[test]
fn one_peer_holding_idle_connections_leaves_the_server_to_the_others() {
    allow_open_files(4096);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    // 1 024 files, hard limit too: 896 connections in all. The idle timeout is long, so
    // only the bound on one peer's connections can leave places for another peer.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_cardrules"))
        .arg("serve")
        .arg("--policies")
        .arg(dir.path().join("policies"))
        .arg("--ledger")
        .arg(dir.path().join("ledger.sqlite"))
        .args(["--listen", "127.0.0.1:0", "--allow-unsigned"])
        .args(["--idle-timeout", "3600"]);
    let server = Server::spawn(Arc::new(dir), command);
    let address = server.base.strip_prefix("http://").unwrap().to_string();
    let here = std::net::Ipv4Addr::LOCALHOST;
    let elsewhere = std::net::Ipv4Addr::new(127, 0, 0, 2);

    let idle: Vec<std::net::TcpStream> = (0..1_000)
        .map(|i| {
            std::net::TcpStream::connect(&address)
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();
    // Another peer is answered every time (the same peer was 2 times in 25 without the
    // bound: its connections waited in the backlog behind the 896 idle ones).
    for probe in 0..25 {
        let answer = get_from(elsewhere, &server, "/healthz");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "probe {probe}: {answer}"
        );
    }
    // The server accepts in order: every idle connection was seen before the probes. The
    // first 256 (the default bound) are held; the others were told why and closed.
    let metrics = get_from(elsewhere, &server, "/metrics");
    assert!(
        metrics.contains("\ncardrules_connections_refused_total 744\n"),
        "{metrics}"
    );
    let (mut open, mut refused) = (0, 0);
    for mut stream in idle {
        use std::io::Read;
        stream.set_nonblocking(true).unwrap();
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && answer.is_empty() => open += 1,
            _ => {
                let answer = String::from_utf8_lossy(&answer);
                assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
                assert!(answer.contains("retry-after: 1"), "{answer}");
                assert!(
                    answer.ends_with(
                        r#"{"error":"too many connections from your address: 256 are open, the most allowed (`--max-connections-per-peer`); reuse or close them"}"#
                    ),
                    "{answer}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!((open, refused), (256, 744));
    // Once its connections closed (the server sees it soon, not at once), the peer is
    // served again.
    eventually("127.0.0.1 is served again", &server, || {
        try_get_from(here, &server, "/healthz").is_ok_and(|a| a.starts_with("HTTP/1.1 200"))
    });
    let log = server.log();
    let warning = "256 connections open from `127.0.0.1`, the most allowed from one peer \
                   (`--max-connections-per-peer`)";
    assert_eq!(log.matches(warning).count(), 1, "warned once: {log}");
    assert!(!log.contains("Too many open files"), "{log}");
}

#[test]
fn serve_raises_its_soft_open_file_limit_to_the_hard_one() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a plain system call on a struct we own.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    assert!(
        limit.rlim_max > 1024,
        "the hard limit on open files ({}) leaves nothing to raise to",
        limit.rlim_max
    );
    let hard = if limit.rlim_max == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        limit.rlim_max.to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -S -n 1024 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_cardrules"))
        .arg("serve")
        .arg("--policies")
        .arg(dir.path().join("policies"))
        .arg("--ledger")
        .arg(dir.path().join("ledger.sqlite"))
        .args(["--listen", "127.0.0.1:0", "--allow-unsigned"]);
    let server = Server::spawn(Arc::new(dir), command);
    let log = server.log();
    assert!(
        log.contains(&format!(
            "raised the open-file limit (`ulimit -n`) from 1024 to the hard limit, {hard}"
        )),
        "{log}"
    );
    assert!(
        !log.contains("896 connections (`--max-connections`)"),
        "{log}"
    );
}

#[test]
fn readyz_says_when_decisions_have_been_queueing_too_long() {
    let server = Arc::new(server_with_a_slow_program(&["--queue-alarm", "1"]));
    assert_eq!(server.get("/readyz").0, 200);
    // Slow decisions on one program's lane (each burns 10⁹ fuel), enough of them that the
    // last waits for those before it well past the 1 s alarm however fast this machine
    // burns fuel: one decision is timed first. (Under the default 64 in flight.) It is the
    // second: the first can take three times as long on a busy machine, and timed on it
    // the tills were too few to queue for a second.
    assert_eq!(server.post("/v1/decisions", &loop_request()).0, 200);
    let started = std::time::Instant::now();
    assert_eq!(server.post("/v1/decisions", &loop_request()).0, 200);
    let one = started.elapsed().as_secs_f64();
    let count = ((2.5 / one).ceil() as usize).clamp(4, 60);
    let tills: Vec<_> = (0..count)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || server.post("/v1/decisions", &loop_request()).0)
        })
        .collect();
    let mut reasons = Value::Null;
    eventually("/readyz reports queueing", &server, || {
        let (status, ready) = server.get("/readyz");
        let queueing = status == 503
            && ready["error"]
                .as_str()
                .is_some_and(|e| e.contains("decisions are queueing"));
        if queueing {
            reasons = ready;
        }
        queueing
    });
    assert!(reasons["oldest-ms"].as_u64().unwrap() > 1_000, "{reasons}");
    for till in tills {
        assert_eq!(till.join().unwrap(), 200);
    }
    assert_eq!(server.get("/readyz").0, 200);
}
