//! The accept loop of the codec server: a cap on open connections, the TLS handshake and the
//! request headers under `codec.limits.header_read_timeout`, HTTP/1.1 by hyper.
//!
//! Why not `axum::serve`: it has no connection cap and no header read timeout (hyper's needs a
//! timer, which `axum::serve` does not set), so a client sending headers one byte at a time, or
//! nothing at all, kept its connection (and its memory) for as long as it liked.
//!
//! Guarantees: at most `max_connections` connections are served at once. When every slot is
//! taken, the connection that has waited longest without a request in progress (an idle
//! keep-alive connection, a TLS handshake or request head that has not arrived: what a
//! slowloris client holds) is closed to make room, so slow or silent clients cannot lock others
//! out; connections inside a request are never closed for this. When every slot is inside a
//! request, the loop stops accepting and new connections wait in the kernel's listen backlog
//! (the server holds nothing for them) until a slot frees. A connection that does not complete its TLS handshake,
//! or a request's headers, within `header_read_timeout` (idle keep-alive connections included)
//! is closed, and so is one whose client stops reading the answer for `write_timeout`. Bodies
//! are bounded by the handlers (`server::read_body`). On SIGTERM/SIGINT the
//! loop stops accepting, open connections finish their current request, and the server waits at
//! most [`SHUTDOWN_GRACE`] for them.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::server::{CodecState, record_parse_error};

/// Longest wait for open connections after a stop request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Largest request head (request line and headers) in bytes; larger heads get 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    st: Arc<CodecState>,
    shutdown: impl Future<Output = ()>,
) {
    let max = st.limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let open = Arc::new(OpenConnections::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut last_warning: Option<Instant> = None;
    loop {
        // A connection accepted while every slot was taken, waiting for the slot shed for it.
        let mut early: Option<(TcpStream, SocketAddr)> = None;
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Every slot is taken: wait for a slot or for a new client, whichever comes
                // first. Only a client actually waiting makes an idle connection go.
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        // The semaphore is never closed; if it were, stop serving.
                        Err(_) => break,
                    },
                    r = listener.accept() => {
                        match r {
                            Ok(x) => early = Some(x),
                            Err(e) => {
                                tracing::warn!(error = %e, "codec server: accept failed");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        }
                        if open.shed_one() {
                            st.metrics.connection_error("shed");
                        } else {
                            st.metrics.connection_limit_waits.inc();
                            // Once a minute at most: under a flood this would otherwise be one
                            // line per connection (the counter has the full story).
                            if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                                last_warning = Some(Instant::now());
                                tracing::warn!(
                                    max_connections = max,
                                    "codec server: every connection slot is inside a request (codec.limits.max_connections); new connections wait"
                                );
                            }
                        }
                        tokio::select! {
                            p = slots.clone().acquire_owned() => match p {
                                Ok(p) => p,
                                Err(_) => break,
                            },
                            _ = &mut shutdown => break,
                        }
                    }
                    _ = &mut shutdown => break,
                }
            }
        };
        let (tcp, peer) = match early {
            Some(x) => x,
            None => tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "codec server: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            },
        };
        let slot = Slot {
            _permit: permit,
            registered: Registered(open.register()),
        };
        tokio::spawn(connection(
            tcp,
            peer,
            tls.clone(),
            app.clone(),
            st.clone(),
            slot,
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "codec server: connections still open after {}s; stopping anyway",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}

/// The open connections and, for each, whether a request is in progress and since when it has
/// been waiting without one: the candidates to close when every slot is taken.
#[derive(Default)]
struct OpenConnections {
    next_id: AtomicU64,
    started: std::sync::OnceLock<Instant>,
    by_id: Mutex<BTreeMap<u64, Arc<Tracked>>>,
}

struct Tracked {
    id: u64,
    /// A request is being served (its head arrived and the answer is not written yet).
    busy: AtomicBool,
    /// Milliseconds (since the server started) at which the connection last became idle.
    idle_since_ms: AtomicU64,
    shed: Notify,
    registry: std::sync::Weak<OpenConnections>,
}

impl OpenConnections {
    fn now_ms(&self) -> u64 {
        let start = self.started.get_or_init(Instant::now);
        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn register(self: &Arc<Self>) -> Arc<Tracked> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let t = Arc::new(Tracked {
            id,
            busy: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            shed: Notify::new(),
            registry: Arc::downgrade(self),
        });
        self.lock().insert(id, t.clone());
        t
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Tracked>>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the connection idle the longest, if any is idle. True when one was told to close
    /// (its slot frees as soon as its task ends).
    fn shed_one(&self) -> bool {
        let victim = {
            let mut map = self.lock();
            let oldest = map
                .values()
                .filter(|t| !t.busy.load(Ordering::Acquire))
                .min_by_key(|t| t.idle_since_ms.load(Ordering::Relaxed))
                .map(|t| t.id);
            oldest.and_then(|id| map.remove(&id))
        };
        match victim {
            Some(t) => {
                t.shed.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Tracked {
    fn request_started(&self) {
        self.busy.store(true, Ordering::Release);
    }

    fn request_finished(&self) {
        if let Some(r) = self.registry.upgrade() {
            self.idle_since_ms.store(r.now_ms(), Ordering::Relaxed);
        }
        self.busy.store(false, Ordering::Release);
    }
}

/// An answer's body that marks its connection idle once hyper has written (and dropped) it.
struct FinishOnDrop {
    body: axum::body::Body,
    tracked: Arc<Tracked>,
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.tracked.request_finished();
    }
}

impl hyper::body::Body for FinishOnDrop {
    type Data = <axum::body::Body as hyper::body::Body>::Data;
    type Error = <axum::body::Body as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// What a connection holds while it lives: its place under the cap and in the registry.
struct Slot {
    _permit: OwnedSemaphorePermit,
    registered: Registered,
}

/// Removes a connection from [`OpenConnections`] however it ends.
struct Registered(Arc<Tracked>);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(r) = self.0.registry.upgrade() {
            r.lock().remove(&self.0.id);
        }
    }
}

/// Decrements the open-connection gauge however the connection ends.
struct Open<'a>(&'a CodecState);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.metrics.connections.dec();
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    st: Arc<CodecState>,
    slot: Slot,
    stop: watch::Receiver<bool>,
) {
    st.metrics.connections.inc();
    let _open = Open(&st);
    let tracked = slot.registered.0.clone();
    let _ = tcp.set_nodelay(true);
    // Closed to make room (see `OpenConnections::shed_one`): only ever while idle.
    let shed = async { tracked.shed.notified().await };
    tokio::select! {
        _ = serve_one(tcp, peer, tls, app, &st, stop, tracked.clone()) => {}
        _ = shed => {
            tracing::debug!(%peer, "codec server: idle connection closed to make room for a new one");
        }
    }
}

async fn serve_one(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    st: &CodecState,
    stop: watch::Receiver<bool>,
    tracked: Arc<Tracked>,
) {
    match tls {
        None => http(tcp, peer, app, st, stop, tracked).await,
        Some(acceptor) => {
            match tokio::time::timeout(st.limits.header_read_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => http(stream, peer, app, st, stop, tracked).await,
                Ok(Err(e)) => {
                    st.metrics.connection_error("tls_handshake");
                    tracing::debug!(%peer, error = %e, "codec server: TLS handshake failed");
                }
                Err(_) => {
                    st.metrics.connection_error("tls_handshake");
                    tracing::debug!(%peer, "codec server: TLS handshake timed out");
                }
            }
        }
    }
}

async fn http<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    st: &CodecState,
    mut stop: watch::Receiver<bool>,
    tracked: Arc<Tracked>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(st.limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let io = WriteStall::new(io, st.limits.write_timeout);
    let inner = TowerToHyperService::new(app);
    // Busy (never shed) from the moment a request head has arrived until its answer's body has
    // been written (hyper drops the body then).
    let service = hyper::service::service_fn(move |req| {
        tracked.request_started();
        let answer = hyper::service::Service::call(&inner, req);
        let tracked = tracked.clone();
        async move {
            match answer.await {
                Ok(resp) => Ok(resp.map(|body| FinishOnDrop { body, tracked })),
                Err(e) => {
                    tracked.request_finished();
                    Err(e)
                }
            }
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { drop(stop.wait_for(|stopping| *stopping).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    let Err(e) = result else { return };
    if is_write_stall(&e) {
        st.metrics.connection_error("write_timeout");
        tracing::debug!(%peer, "codec server: the client stopped reading the answer; connection closed");
    } else if e.is_timeout() {
        st.metrics.connection_error("header_timeout");
        tracing::debug!(%peer, "codec server: request headers not received in time; connection closed");
    } else if e.is_parse_too_large() {
        record_parse_error(
            st,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers larger than {MAX_HEAD_BYTES} bytes"),
        );
    } else if e.is_parse() {
        record_parse_error(
            st,
            StatusCode::BAD_REQUEST,
            format!("malformed HTTP request: {e}"),
        );
    } else {
        tracing::debug!(%peer, error = %e, "codec server: connection ended with an error");
    }
}

/// The error inside the `io::Error` that [`WriteStall`] returns.
#[derive(Debug, thiserror::Error)]
#[error("the client stopped reading the answer (codec.limits.write_timeout)")]
struct WriteStalled;

fn is_write_stall(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        // `io::Error::source` skips its own payload: look inside with `get_ref`.
        if let Some(io) = s.downcast_ref::<io::Error>()
            && io.get_ref().is_some_and(|inner| inner.is::<WriteStalled>())
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Fails a write (or flush, or shutdown) that has made no progress for `limit`: a client that
/// sends requests but never reads the answers would otherwise hold its connection slot forever.
struct WriteStall<I> {
    io: I,
    limit: Duration,
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> WriteStall<I> {
    fn new(io: I, limit: Duration) -> Self {
        Self {
            io,
            limit,
            stalled_since: None,
        }
    }

    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled_since = None;
            return r;
        }
        let limit = self.limit;
        let timer = self
            .stalled_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            self.stalled_since = None;
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, WriteStalled)));
        }
        Poll::Pending
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteStall<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteStall<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, r)
    }
}
