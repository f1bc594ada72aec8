//! Connection limits and the accept loop: what keeps idle, slow or numerous clients from
//! taking the server's file descriptors, and what drains the server on SIGTERM.
//!
//! * Every connection is HTTP/1.1 (what every Alibaba SDK speaks), registered with its last
//!   activity and whether a request is being handled.
//! * Header read timeout: a request head whose first byte arrived more than
//!   `header_read_timeout` ago and that is still not complete closes the connection. Idle
//!   timeout: a connection with no request in flight and no byte of the next head for
//!   `idle_timeout` (a quiet keep-alive connection) is closed. (hyper's own header timer is
//!   not used: it also runs while a keep-alive connection waits quietly.) Request timeout: the body must
//!   arrive within `request_timeout` of the head ([`RequestDeadline`], read by the handler).
//! * Connection cap: when `max_connections` are open, accepting one more first sheds the
//!   connection idle the longest. A new connection is always accepted; if every connection
//!   is busy the new one is closed at once instead (the cap holds).
//! * `accept` failing for lack of descriptors (EMFILE/ENFILE) sheds the oldest idle
//!   connection and backs off (10 ms doubling to 1 s); the loop never stops.
//! * Shutdown: stop accepting, close idle connections, let in-flight requests finish
//!   (their connections close after the response), up to `drain_timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The limits of `vpnroute serve` (flags `--max-connections`, `--header-read-timeout`,
/// `--idle-timeout`, `--request-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub drain_timeout: Duration,
}

/// How long a connection asked to close must have been without a request before it is
/// dropped outright (time for hyper to flush the last response).
const FLUSH_GRACE: Duration = Duration::from_millis(100);

/// Descriptors kept free for the store, logs and the runtime when the cap is derived from
/// the process's open-file limit.
const RESERVED_FDS: u64 = 64;

/// The connection cap for `--max-connections 0` (automatic): three quarters of the soft
/// open-file limit, less what the rest of the server needs; at least 16.
pub fn automatic_max_connections() -> usize {
    let soft = open_file_limit().unwrap_or(1024);
    (soft.saturating_sub(RESERVED_FDS) * 3 / 4).clamp(16, 65_536) as usize
}

fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given and nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    // `rlim_t` is u64 here but not on every platform.
    #[allow(clippy::unnecessary_cast)]
    (rc == 0).then_some(lim.rlim_cur as u64)
}

/// When the body of a request must have arrived; set by the connection layer on every
/// request (absent in tests that call the router directly).
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline(pub tokio::time::Instant);

/// One open connection as the accept loop sees it.
struct Conn {
    opened: Instant,
    /// Milliseconds since `opened` of the last request start or end.
    last_active_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// 1 + milliseconds since `opened` when the first byte of the next request head
    /// arrived; 0 while none has.
    head_started_ms: AtomicU64,
    /// Set to ask the connection to go (shed or shutdown); `wake` tells its task.
    closing: AtomicBool,
    wake: Notify,
}

impl Conn {
    fn touch(&self) {
        self.last_active_ms
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// Bytes arrived: between requests, they start the next head's clock.
    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.head_started_ms.load(Ordering::Relaxed) == 0 {
            self.head_started_ms.store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    /// How long the current request head has been arriving, if one is.
    fn head_for(&self) -> Option<Duration> {
        match self.head_started_ms.load(Ordering::Relaxed) {
            0 => None,
            started => Some(Duration::from_millis(self.now_ms().saturating_sub(started - 1))),
        }
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        Some(self.opened.elapsed().saturating_sub(since))
    }

    fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// Woken when a connection ends (for the drain).
    ended: Notify,
}

impl Registry {
    fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Ask the connection idle the longest to close; `false` if none is idle.
    fn shed_oldest_idle(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = conns
            .values()
            .filter(|c| !c.closing.load(Ordering::Acquire))
            .filter_map(|c| c.idle_for().map(|idle| (idle, c)))
            .max_by_key(|(idle, _)| *idle);
        match oldest {
            Some((_, c)) => {
                c.close();
                true
            }
            None => false,
        }
    }

    fn close_all(&self) {
        for c in self.conns.lock().unwrap_or_else(|p| p.into_inner()).values() {
            c.close();
        }
    }
}

/// Whether an accept error means the process (or system) is out of descriptors.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// Serve `router` on `listener` under `limits` until `shutdown` resolves, then drain.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::default());
    let mut backoff = Duration::from_millis(10);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                if registry.len() >= limits.max_connections && !registry.shed_oldest_idle() {
                    tracing::warn!(%peer, max = limits.max_connections, "connection cap reached and no connection idle: refused");
                    drop(stream);
                    continue;
                }
                spawn_connection(&registry, stream, peer, router.clone(), limits);
            }
            Err(e) if out_of_descriptors(&e) => {
                let shed = registry.shed_oldest_idle();
                tracing::warn!(error = %e, shed, open = registry.len(), "accept: out of descriptors; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                // Per-connection failures (ECONNABORTED…): the next accept is unaffected.
                tracing::debug!(error = %e, "accept failed");
            }
        }
    }
    drop(listener);
    registry.close_all();
    let deadline = tokio::time::Instant::now() + limits.drain_timeout;
    while registry.len() > 0 {
        let ended = registry.ended.notified();
        if registry.len() == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, ended).await.is_err() {
            tracing::warn!(
                open = registry.len(),
                "drain timeout: closing the remaining connections"
            );
            break;
        }
    }
    Ok(())
}

fn spawn_connection(
    registry: &Arc<Registry>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
) {
    let _ = stream.set_nodelay(true);
    let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
    let conn = Arc::new(Conn {
        opened: Instant::now(),
        last_active_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
        head_started_ms: AtomicU64::new(0),
        closing: AtomicBool::new(false),
        wake: Notify::new(),
    });
    registry
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, conn.clone());
    let registry = registry.clone();
    tokio::spawn(async move {
        run_connection(stream, peer, router, limits, &conn).await;
        registry.conns.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        registry.ended.notify_waiters();
        tracing::trace!(%peer, "connection closed");
    });
}

/// Counts a request as in flight from its head to its response.
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn run_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    conn: &Arc<Conn>,
) {
    let tracked = conn.clone();
    let service = hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        tracked.in_flight.fetch_add(1, Ordering::AcqRel);
        tracked.head_started_ms.store(0, Ordering::Relaxed);
        tracked.touch();
        let guard = InFlight(tracked.clone());
        req.extensions_mut()
            .insert(RequestDeadline(tokio::time::Instant::now() + limits.request_timeout));
        // The client's address, for RAM's `acs:SourceIp` condition key.
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        let mut router = router.clone();
        async move {
            let resp = tower::Service::call(&mut router, req).await;
            drop(guard);
            resp
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let io = TrackedIo {
        inner: stream,
        conn: conn.clone(),
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let tick = (limits.idle_timeout.min(limits.header_read_timeout) / 4).clamp(FLUSH_GRACE, Duration::from_secs(1));
    let mut draining = false;
    loop {
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = conn.wake.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
        let idle = conn.idle_for();
        if idle.is_some() {
            // No request in flight: dropping the connection closes the socket.
            match conn.head_for() {
                Some(head) if head >= limits.header_read_timeout => return,
                None if idle.is_some_and(|d| d >= limits.idle_timeout) => return,
                _ => {}
            }
        }
        if conn.closing.load(Ordering::Acquire) {
            if !draining {
                // Let hyper finish (and flush) a request in flight, then close.
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            // No request for a moment (its response is flushed): nothing left to finish.
            if idle.is_some_and(|d| d >= FLUSH_GRACE) {
                return;
            }
        }
    }
}

/// The connection's socket, telling its [`Conn`] when bytes arrive.
struct TrackedIo {
    inner: tokio::net::TcpStream,
    conn: Arc<Conn>,
}

impl tokio::io::AsyncRead for TrackedIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.bytes_arrived();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "no SIGTERM handler");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown requested: draining in-flight requests");
}
