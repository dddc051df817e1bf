//! The web console's listeners (HTTPS, and HTTP on port 80 that only redirects), with
//! the same limits on both, so that nobody on the network can hold the console away
//! from its administrator by opening connections:
//!
//! - at most [`Limits::per_address`] connections from one address and
//!   [`Limits::total`] in all; at either limit, a new connection pushes out the oldest
//!   *idle* one (connected, but no request being answered), or is closed at once when
//!   every connection is busy;
//! - a connection without a byte in either direction for [`Limits::idle`] is closed, and
//!   so is one that takes longer than [`Limits::handshake`] for its TLS handshake or
//!   [`Limits::header_read`] to send a request's headers (hyper's header timeout, which
//!   also bounds the wait for the next request on a kept-alive connection).
//!
//! Each connection's task owns its socket; pushing one out wakes that task, which drops
//! the connection.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Extension;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::web::Peer;

/// The limits of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections at once, in all.
    pub total: usize,
    /// Connections at once from one address.
    pub per_address: usize,
    /// Longest TLS handshake.
    pub handshake: Duration,
    /// Longest time for a request's headers (and for the next request to begin).
    pub header_read: Duration,
    /// Longest time without a byte either way.
    pub idle: Duration,
}

impl Default for Limits {
    /// A console for a few administrators: 256 connections, 16 per address, 10 s for
    /// a handshake or a request's headers, 60 s without traffic.
    fn default() -> Limits {
        Limits {
            total: 256,
            per_address: 16,
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        }
    }
}

struct Entry {
    addr: IpAddr,
    opened: Instant,
    busy: Arc<AtomicBool>,
    close: Arc<Notify>,
}

/// The open connections of one listener.
#[derive(Default)]
struct Registry {
    next: u64,
    open: HashMap<u64, Entry>,
}

impl Registry {
    /// Makes room for a connection from `addr` under `limits` (pushing out an idle
    /// one when needed) and registers it; `None` when there is no room.
    fn admit(
        &mut self,
        addr: IpAddr,
        limits: &Limits,
    ) -> Option<(u64, Arc<AtomicBool>, Arc<Notify>)> {
        let from_addr = self.open.values().filter(|e| e.addr == addr).count();
        if from_addr >= limits.per_address && !self.push_out(|e| e.addr == addr) {
            return None;
        }
        if self.open.len() >= limits.total {
            // Out of the busiest address first, then the oldest.
            let mut counts: HashMap<IpAddr, usize> = HashMap::new();
            for e in self.open.values() {
                *counts.entry(e.addr).or_default() += 1;
            }
            let busiest = counts
                .iter()
                .filter(|(a, _)| {
                    self.open
                        .values()
                        .any(|e| e.addr == **a && !e.busy.load(Ordering::SeqCst))
                })
                .max_by_key(|(_, n)| **n)
                .map(|(a, _)| *a);
            let pushed = match busiest {
                Some(a) => self.push_out(|e| e.addr == a),
                None => false,
            };
            if !pushed {
                return None;
            }
        }
        self.next += 1;
        let id = self.next;
        let busy = Arc::new(AtomicBool::new(false));
        let close = Arc::new(Notify::new());
        self.open.insert(
            id,
            Entry {
                addr,
                opened: Instant::now(),
                busy: Arc::clone(&busy),
                close: Arc::clone(&close),
            },
        );
        Some((id, busy, close))
    }

    /// Pushes out the oldest idle connection that `pick` selects.
    fn push_out(&mut self, pick: impl Fn(&Entry) -> bool) -> bool {
        let oldest = self
            .open
            .iter()
            .filter(|(_, e)| pick(e) && !e.busy.load(Ordering::SeqCst))
            .min_by_key(|(_, e)| e.opened)
            .map(|(id, _)| *id);
        match oldest.and_then(|id| self.open.remove(&id)) {
            Some(e) => {
                e.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A socket that notes the time of its last byte either way.
struct Watched<T> {
    inner: T,
    last: Arc<AtomicU64>,
    start: Instant,
}

impl<T> Watched<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once nothing moved for `idle`.
async fn idle_watch(last: Arc<AtomicU64>, start: Instant, idle: Duration) {
    loop {
        let last_ms = last.load(Ordering::Relaxed);
        let since = start
            .elapsed()
            .saturating_sub(Duration::from_millis(last_ms));
        if since >= idle {
            return;
        }
        tokio::time::sleep(idle - since).await;
    }
}

/// Serves `router` on `listener` under `limits`, through TLS when `tls` is given, until
/// the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    limits: Limits,
) {
    let registry = Arc::new(Mutex::new(Registry::default()));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to close.
                eprintln!("tandem-web: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admitted = registry
            .lock()
            .ok()
            .and_then(|mut r| r.admit(peer.ip(), &limits));
        let Some((id, busy, close)) = admitted else {
            drop(tcp);
            continue;
        };
        let (tls, router, registry) = (tls.clone(), router.clone(), Arc::clone(&registry));
        tokio::spawn(async move {
            connection(tcp, peer, tls, router, limits, busy, close).await;
            if let Ok(mut r) = registry.lock() {
                r.open.remove(&id);
            }
        });
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    limits: Limits,
    busy: Arc<AtomicBool>,
    close: Arc<Notify>,
) {
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let io = Watched {
        inner: tcp,
        last: Arc::clone(&last),
        start,
    };
    let svc = router.layer(Extension(Peer(peer.ip())));
    let svc = tower::ServiceBuilder::new()
        .layer_fn(move |inner| Busy {
            inner,
            busy: Arc::clone(&busy),
        })
        .service(svc);
    let work = async move {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read);
        match tls {
            Some(acceptor) => {
                let Ok(Ok(stream)) =
                    tokio::time::timeout(limits.handshake, acceptor.accept(io)).await
                else {
                    return;
                };
                let _ = http
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            }
            None => {
                let _ = http
                    .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc))
                    .await;
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = close.notified() => {}
        () = idle_watch(last, start, limits.idle) => {}
    }
}

/// Marks its connection busy while a request is being answered.
#[derive(Clone)]
struct Busy<S> {
    inner: S,
    busy: Arc<AtomicBool>,
}

impl<S, B> tower::Service<axum::http::Request<B>> for Busy<S>
where
    S: tower::Service<axum::http::Request<B>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        self.busy.store(true, Ordering::SeqCst);
        let busy = Arc::clone(&self.busy);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            busy.store(false, Ordering::SeqCst);
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn idle_connections_make_room_busy_ones_do_not() {
        let limits = Limits {
            total: 4,
            per_address: 2,
            ..Limits::default()
        };
        let mut r = Registry::default();
        let a = r.admit(ip(1), &limits).unwrap();
        let _b = r.admit(ip(1), &limits).unwrap();
        // A third from the same address pushes out the oldest idle one.
        let _c = r.admit(ip(1), &limits).unwrap();
        assert!(!r.open.contains_key(&a.0));
        assert_eq!(r.open.len(), 2);
        // Busy connections are kept: no room then.
        for e in r.open.values() {
            e.busy.store(true, Ordering::SeqCst);
        }
        assert!(r.admit(ip(1), &limits).is_none());
        // Another address still gets in, up to the total ...
        let d = r.admit(ip(2), &limits).unwrap();
        let e = r.admit(ip(3), &limits).unwrap();
        assert_eq!(r.open.len(), 4);
        // ... beyond which an idle one goes (the busy ones of address 1 stay).
        let _f = r.admit(ip(4), &limits).unwrap();
        assert_eq!(r.open.len(), 4);
        assert_eq!(r.open.values().filter(|e| e.addr == ip(1)).count(), 2);
        let gone = !r.open.contains_key(&d.0) || !r.open.contains_key(&e.0);
        assert!(gone);
    }

    fn hello() -> Router {
        Router::new().route("/", axum::routing::get(|| async { "hello" }))
    }

    async fn get(addr: SocketAddr) -> String {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
        .await
        .unwrap()
    }

    /// Opens `n` connections to `addr` that send nothing, from addresses `from(i)`
    /// (any address of 127/8 works as a source on Linux).
    fn idle_connections(
        addr: SocketAddr,
        n: usize,
        from: &(dyn Fn(usize) -> IpAddr + Send + Sync),
    ) -> Vec<std::net::TcpStream> {
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket,
        };
        use std::os::fd::AsRawFd;
        let (IpAddr::V4(to), SocketAddr::V4(to_sa)) = (addr.ip(), addr) else {
            return Vec::new();
        };
        let _ = to;
        (0..n)
            .filter_map(|i| {
                let IpAddr::V4(src) = from(i) else {
                    return None;
                };
                let fd = socket(
                    AddressFamily::Inet,
                    SockType::Stream,
                    SockFlag::empty(),
                    None,
                )
                .ok()?;
                bind(
                    fd.as_raw_fd(),
                    &SockaddrIn::from(std::net::SocketAddrV4::new(src, 0)),
                )
                .ok()?;
                connect(fd.as_raw_fd(), &SockaddrIn::from(to_sa)).ok()?;
                Some(std::net::TcpStream::from(fd))
            })
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn five_hundred_idle_connections_do_not_shut_out_a_request() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, None, hello(), Limits::default()));
        // From the administrator's own address, and from 250 others.
        type From = Box<dyn Fn(usize) -> IpAddr + Send + Sync>;
        let one: From = Box::new(|_| ip(1));
        let many: From =
            Box::new(|i| IpAddr::from([127, 0, 1, u8::try_from(i % 250).unwrap() + 1]));
        for from in [one, many] {
            let idle = tokio::task::spawn_blocking(move || idle_connections(addr, 500, &*from))
                .await
                .unwrap();
            assert_eq!(idle.len(), 500);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let t0 = Instant::now();
            let answer = get(addr).await;
            assert!(answer.ends_with("hello"), "{answer}");
            assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
            // The console held no more than its limit: the others were closed.
            let closed = tokio::task::spawn_blocking(move || {
                idle.iter()
                    .filter(|s| {
                        s.set_nonblocking(true).unwrap();
                        // End of stream or a reset: closed; WouldBlock: still open.
                        match (&**s).read(&mut [0u8; 1]) {
                            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                            Ok(n) => n == 0,
                        }
                    })
                    .count()
            })
            .await
            .unwrap();
            let held = 500 - closed;
            assert!(
                held <= Limits::default().total,
                "{held} idle connections held"
            );
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_silent_connection_is_closed_after_the_header_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            header_read: Duration::from_millis(300),
            idle: Duration::from_secs(30),
            ..Limits::default()
        };
        tokio::spawn(serve(listener, None, hello(), limits));
        let closed = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // Half a request line, then silence.
            s.write_all(b"GET / HT").unwrap();
            let t0 = Instant::now();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
            t0.elapsed()
        })
        .await
        .unwrap();
        assert!(closed < Duration::from_secs(5), "{closed:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_without_traffic_is_closed_after_the_idle_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            handshake: Duration::from_secs(30),
            idle: Duration::from_millis(300),
            ..Limits::default()
        };
        // Through TLS: the silent client never starts its handshake.
        let tls = crate::tls::tests_acceptor();
        tokio::spawn(serve(listener, Some(tls), hello(), limits));
        let closed = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let t0 = Instant::now();
            let mut buf = [0u8; 16];
            let _ = s.read(&mut buf);
            t0.elapsed()
        })
        .await
        .unwrap();
        assert!(closed < Duration::from_secs(5), "{closed:?}");
    }
}
