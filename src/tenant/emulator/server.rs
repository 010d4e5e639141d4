//! Accept loop and connections: plain HTTP/1.1 or HTTPS, one hyper connection per client with
//! its peer address, an aborted connection for the `drop` fault, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::api;
use super::state::Shared;

/// How long open connections get to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(2);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve until `stop` turns true or its sender is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    conns.spawn(connection(stream, peer, tls.clone(), shared.clone(), stop.clone()));
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "emulator: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::debug!("emulator: aborting connections still open after the drain period");
        conns.abort_all();
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_io(TokioIo::new(stream), peer, shared, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => serve_io(TokioIo::new(tls_stream), peer, shared, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "emulator: TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "emulator: TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<I>(io: I, peer: SocketAddr, shared: Arc<Shared>, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service =
        service_fn(move |req: hyper::Request<Incoming>| api::handle(shared.clone(), peer, req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .auto_date_header(false)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        res = conn.as_mut() => res,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Includes the deliberate aborts of the `drop` fault.
        tracing::debug!(%peer, error = %e, "emulator: connection ended with an error");
    }
}

/// Resolves once shutdown is asked for (or the `Emulator` was dropped).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
