//! Accepting connections: plain TCP or TLS (rustls), at most
//! [`Limits::max_connections`](crate::limits::Limits) of them and at most
//! [`Limits::max_connections_per_peer`](crate::limits::Limits) from one peer ([`Peers`]),
//! each closed when it takes longer than the idle timeout to send a request's head (new,
//! idle between requests, or half-sent: hyper's header read timeout runs whenever a head is
//! awaited) or to finish its TLS handshake, with request heads of bounded size.
//!
//! On shutdown the listener closes, idle connections close at once, responses in progress
//! finish (with `Connection: close`), and the server returns when no request is in flight
//! any more, or after [`SHUTDOWN_GRACE`] at the latest. A half-sent request is no request
//! in flight: it does not hold the stop up.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::head_errors::JsonErrors;
use crate::limits::{Limits, SHUTDOWN_GRACE};

/// Connections the kernel may hold, fully open, before the server accepts them. The
/// standard library's (and tokio's) 128 is soon full when a venue's tills all reconnect at
/// once — after a network blip, say: the kernel then drops further handshakes, and each of
/// those tills waits a second for its retransmission. The kernel still caps this at
/// `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `address` (a host and port; a name is resolved, the first address that can
/// be bound is used) with a backlog of [`LISTEN_BACKLOG`].
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for address in tokio::net::lookup_host(address).await? {
        let socket = match address {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(address)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// TLS settings made from a certificate chain and its key (`serve --tls-cert --tls-key`).
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Reads a PEM certificate chain (the server's certificate first) and its PEM private
    /// key (PKCS#8, PKCS#1 or SEC1); errors name the file and why it cannot be used.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        use rustls_pki_types::pem::{self, PemObject};
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .map_err(|e| format!("cannot read TLS {what} `{}`: {e}", path.display()))
        };
        let cert_pem = read(cert, "certificate")?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, pem::Error>>()
            .map_err(|e| format!("cannot parse TLS certificate `{}`: {e}", cert.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "cannot use TLS certificate `{}`: it holds no PEM `CERTIFICATE` block",
                cert.display()
            ));
        }
        let key_pem = read(key, "key")?;
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            pem::Error::NoItemsFound => format!(
                "cannot use TLS key `{}`: it holds no PEM private key (`PRIVATE KEY`, \
                 `RSA PRIVATE KEY` or `EC PRIVATE KEY`)",
                key.display()
            ),
            e => format!("cannot parse TLS key `{}`: {e}", key.display()),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, private)
            .map_err(|e| {
                format!(
                    "cannot use TLS key `{}` with certificate `{}`: {e}",
                    key.display(),
                    cert.display()
                )
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// Requests that reached the routes and have not been answered yet; a stopping server
/// waits for them.
#[derive(Debug, Default)]
pub struct Requests {
    count: AtomicUsize,
    idle: Notify,
}

/// One request in flight; dropping it (answered, or its connection gone) counts it out.
pub struct RequestGuard(Arc<Requests>);

impl Requests {
    pub fn enter(self: &Arc<Requests>) -> RequestGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        RequestGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Resolves once no request is in flight.
    async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Open connections, for `/metrics`.
#[derive(Debug, Default)]
pub struct Connections {
    pub open: AtomicUsize,
    pub cap: AtomicUsize,
    /// Connections closed at once because their peer had its most open.
    pub refused: AtomicU64,
}

/// Open connections by peer, bounded: one client holding idle connections must not take
/// the places of everyone else (the open-file limit caps them all together).
#[derive(Debug)]
pub struct Peers {
    most: usize,
    open: Mutex<HashMap<IpAddr, Peer>>,
}

#[derive(Debug, Default)]
struct Peer {
    open: usize,
    /// Whether its refusals were logged: once until it has no connection left, so that a
    /// client reopening what was closed cannot flood the log.
    warned: bool,
}

/// One peer's place, held as long as its connection; dropping it frees it.
pub struct PeerPlace {
    peers: Arc<Peers>,
    key: IpAddr,
}

impl Peers {
    pub fn new(most: usize) -> Arc<Peers> {
        Arc::new(Peers {
            most,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Who a connection from `ip` counts as: its address, an IPv4-mapped one as IPv4, an
    /// IPv6 one by its /64 (the block one subscriber is given, all of it theirs to use).
    fn key(ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
            v4 => v4,
        }
    }

    /// A place for a connection from `ip`, or `Err(first)` when the peer has its most open
    /// (`first`: whether this is the first refusal since it had none open).
    pub fn enter(self: &Arc<Peers>, ip: IpAddr) -> Result<PeerPlace, bool> {
        let key = Peers::key(ip);
        let mut open = self.open.lock();
        let peer = open.entry(key).or_default();
        if peer.open >= self.most {
            return Err(!std::mem::replace(&mut peer.warned, true));
        }
        peer.open += 1;
        Ok(PeerPlace {
            peers: self.clone(),
            key,
        })
    }
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock();
        if let Some(peer) = open.get_mut(&self.key) {
            peer.open -= 1;
            if peer.open == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The answer to a connection past its peer's bound, written (plain HTTP only) before it is
/// closed, so that a till behind a crowded NAT says why rather than "connection reset".
fn peer_full_answer(most: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "error": format!(
            "too many connections from your address: {most} are open, the most allowed \
             (`--max-connections-per-peer`); reuse or close them"
        )
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        crate::limits::RETRY_AFTER_SECS,
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` (over TLS with `tls`) within `limits` until `stop` resolves;
/// then stops as the module docs say.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Tls>,
    limits: &Limits,
    requests: Arc<Requests>,
    connections: Arc<Connections>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192) * 2)
        .keep_alive(true);
    let http = Arc::new(http);
    let service = TowerToHyperService::new(app);
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let peers = Peers::new(limits.max_connections_per_peer);
    let peer_full = peer_full_answer(limits.max_connections_per_peer);
    connections
        .cap
        .store(limits.max_connections, Ordering::Relaxed);
    let (stopping, stopped) = watch::channel(false);
    tokio::pin!(stop);
    let mut full_since: Option<tokio::time::Instant> = None;
    loop {
        // A place first, then a connection: at the cap, new connections wait in the
        // kernel's backlog instead of costing a file each.
        let place = if let Ok(place) = places.clone().try_acquire_owned() {
            full_since = None;
            place
        } else {
            if full_since.is_none() {
                full_since = Some(tokio::time::Instant::now());
                tracing::warn!(
                    "{} connections open, the most allowed (`--max-connections`); new ones wait \
                     until idle ones time out ({} s)",
                    limits.max_connections,
                    limits.idle_timeout.as_secs()
                );
            }
            tokio::select! {
                place = places.clone().acquire_owned() => match place {
                    Ok(place) => place,
                    Err(_) => break,
                },
                () = &mut stop => break,
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of files or memory for a moment: wait rather than spin.
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer_place = match peers.enter(peer.ip()) {
            Ok(place) => place,
            Err(first) => {
                connections.refused.fetch_add(1, Ordering::Relaxed);
                if first {
                    tracing::warn!(
                        "{} connections open from `{}`, the most allowed from one peer \
                         (`--max-connections-per-peer`); closing its new ones until some close",
                        limits.max_connections_per_peer,
                        peer.ip()
                    );
                }
                // A fresh socket's send buffer is empty: this never waits. Over TLS the
                // client expects a handshake, and gets the close alone.
                if tls.is_none() {
                    let _ = stream.try_write(&peer_full);
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (http, service, tls) = (http.clone(), service.clone(), tls.clone());
        let (stopped, connections) = (stopped.clone(), connections.clone());
        let (handshake, head_bytes) = (limits.idle_timeout, limits.max_header_bytes);
        tokio::spawn(async move {
            connections.open.fetch_add(1, Ordering::Relaxed);
            match tls {
                None => {
                    let io = TokioIo::new(JsonErrors::new(stream, head_bytes));
                    drive(io, &http, service, stopped).await
                }
                Some(tls) => {
                    match tokio::time::timeout(handshake, tls.acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let io = TokioIo::new(JsonErrors::new(stream, head_bytes));
                            drive(io, &http, service, stopped).await
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            connections.open.fetch_sub(1, Ordering::Relaxed);
            drop((peer_place, place));
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    let open = requests.count();
    if open > 0 {
        tracing::info!("waiting for {open} requests in flight");
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, requests.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} requests still in flight after {} s; stopping anyway",
            requests.count(),
            SHUTDOWN_GRACE.as_secs()
        );
    }
}

/// Serves one connection until it closes; on `stopped`, lets the response in progress
/// finish and closes.
async fn drive<I>(
    io: TokioIo<I>,
    http: &hyper::server::conn::http1::Builder,
    service: TowerToHyperService<axum::Router>,
    mut stopped: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            done = connection.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!("connection closed: {e}");
                }
                return;
            }
            _ = stopped.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_its_address_or_its_ipv6_64_and_holds_at_most_its_places() {
        let peers = Peers::new(2);
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let a = peers.enter(ip("192.0.2.1")).unwrap();
        let _b = peers.enter(ip("::ffff:192.0.2.1")).unwrap();
        // The third is refused, the first refusal said to be the first.
        assert_eq!(peers.enter(ip("192.0.2.1")).err(), Some(true));
        assert_eq!(peers.enter(ip("192.0.2.1")).err(), Some(false));
        assert!(peers.enter(ip("192.0.2.2")).is_ok(), "another peer");
        drop(a);
        assert!(peers.enter(ip("192.0.2.1")).is_ok(), "a place freed");

        let _c = peers.enter(ip("2001:db8:1:2::1")).unwrap();
        let _d = peers.enter(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(peers.enter(ip("2001:db8:1:2::77")).is_err(), "the same /64");
        assert!(peers.enter(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        drop((_c, _d));
        assert!(
            !peers.open.lock().contains_key(&ip("2001:db8:1:2::")),
            "forgotten once closed"
        );
    }
}
