//! The HTTP edge: accepts connections up to `web.max_connections` (more wait
//! in the listen backlog), closes a connection that has not sent a request's
//! headers within `web.header_read_timeout_secs` (a slowloris client holds a
//! slot no longer), serves the router with the peer's address as
//! [`ConnectInfo`], and on shutdown stops accepting and lets requests in
//! flight finish. `axum::serve` has neither limit.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::WebConfig;

/// How long accepting pauses after the listener fails (out of file
/// descriptors), rather than spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The limits of the edge.
#[derive(Debug, Clone, Copy)]
pub struct Edge {
    max_connections: usize,
    header_read_timeout: Duration,
}

impl Edge {
    /// The edge `web` configures.
    pub fn new(web: &WebConfig) -> Edge {
        Edge {
            max_connections: web.max_connections.clamp(1, Semaphore::MAX_PERMITS),
            header_read_timeout: Duration::from_secs(web.header_read_timeout_secs.max(1)),
        }
    }

    /// Serves `router` on `listener` until `shutdown` ends, then waits for
    /// the connections open to finish their requests (the caller bounds how
    /// long).
    pub async fn serve(
        self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()>,
    ) {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let graceful = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot.expect("the connection slots are never closed"),
                () = &mut shutdown => break,
            };
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Events are small writes that must leave at once, not wait for
            // the previous one's ACK.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY: {e}");
            }
            let service = WithPeer {
                router: router.clone(),
                peer,
            };
            let connection = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::trace!(%peer, "connection ended: {e}");
                }
                drop(slot);
            });
        }
        drop(listener);
        graceful.shutdown().await;
    }
}

/// The router, told which peer the connection is from.
#[derive(Clone)]
struct WithPeer {
    router: Router,
    peer: SocketAddr,
}

impl hyper::service::Service<http::Request<Incoming>> for WithPeer {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = <Router as tower_service::Service<http::Request<Body>>>::Future;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        // A Router is always ready.
        tower_service::Service::call(&mut self.router.clone(), request.map(Body::new))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn edge(max_connections: usize, header_read_timeout_secs: u64) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let web = WebConfig {
            max_connections,
            header_read_timeout_secs,
            ..WebConfig::default()
        };
        let router = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        tokio::spawn(Edge::new(&web).serve(listener, router, std::future::pending()));
        addr
    }

    /// Sends a whole request; the response's body once the server closes.
    async fn get(conn: &mut TcpStream) -> String {
        conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn a_client_that_trickles_its_headers_is_cut_off() {
        let addr = edge(16, 1).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let started = Instant::now();
        let closed = async {
            loop {
                if slow.write_all(b"x-trickle: 1\r\n").await.is_err() {
                    return;
                }
                let mut buf = [0; 64];
                let read = tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf));
                if let Ok(Ok(0) | Err(_)) = read.await {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .expect("a trickling client is still connected after 5 s");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        // Others are served meanwhile and after, with the peer's address.
        let mut ok = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut ok).await.ends_with("127.0.0.1"));
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_for_a_slot() {
        let addr = edge(2, 30).await;
        let first = TcpStream::connect(addr).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(300), get(&mut third)).await;
        assert!(
            waiting.is_err(),
            "a third connection was served: {waiting:?}"
        );
        drop(first);
        let served = tokio::time::timeout(Duration::from_secs(5), get(&mut third))
            .await
            .expect("the freed slot went to the waiting connection");
        assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    }
}
