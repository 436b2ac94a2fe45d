//! The accept loop of the codec server: a cap on open connections, the TLS handshake and the
//! request headers under `codec.limits.header_read_timeout`, HTTP/1.1 by hyper.
//!
//! Why not `axum::serve`: it has no connection cap and no header read timeout (hyper's needs a
//! timer, which `axum::serve` does not set), so a client sending headers one byte at a time, or
//! nothing at all, kept its connection (and its memory) for as long as it liked.
//!
//! Guarantees: at most `max_connections` connections are served at once; beyond that the loop
//! stops accepting, and new connections wait in the kernel's listen backlog (the server holds
//! nothing for them) until a slot frees. A connection that does not complete its TLS handshake,
//! or a request's headers, within `header_read_timeout` (idle keep-alive connections included)
//! is closed. Bodies are bounded by the handlers (`server::read_body`). On SIGTERM/SIGINT the
//! loop stops accepting, open connections finish their current request, and the server waits at
//! most [`SHUTDOWN_GRACE`] for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
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
    shutdown: impl std::future::Future<Output = ()>,
) {
    let max = st.limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                st.metrics.connection_limit_waits.inc();
                tracing::warn!(
                    max_connections = max,
                    "codec server: every connection slot is taken (codec.limits.max_connections); new connections wait"
                );
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        // The semaphore is never closed; if it were, stop serving.
                        Err(_) => break,
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
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
        };
        tokio::spawn(connection(
            tcp,
            peer,
            tls.clone(),
            app.clone(),
            st.clone(),
            permit,
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
    _permit: OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
) {
    st.metrics.connections.inc();
    let _open = Open(&st);
    let _ = tcp.set_nodelay(true);
    match tls {
        None => http(tcp, peer, app, &st, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(st.limits.header_read_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => http(stream, peer, app, &st, stop).await,
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
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(st.limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { drop(stop.wait_for(|stopping| *stopping).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    let Err(e) = result else { return };
    if e.is_timeout() {
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
