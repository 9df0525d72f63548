//! A client's own web server on loopback, publishing its JWK Set (or something that is not one) at
//! `/jwks` (and a redirect to it at `/redirect`), for `jwks_uri` registrations. Counts the fetches.
//! `ConnCounter` counts bare TCP connections, to prove an address was never even dialled.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct JwksServer {
    /// `http://127.0.0.1:PORT/jwks`
    pub url: String,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl JwksServer {
    /// Serves `body` as `application/json`.
    pub async fn json(body: &serde_json::Value) -> JwksServer {
        Self::raw("application/json", body.to_string()).await
    }

    /// Serves `body` with the given content type.
    pub async fn raw(content_type: &'static str, body: String) -> JwksServer {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = Router::new()
            .route(
                "/jwks",
                get(move || {
                    let body = body.clone();
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        ([(CONTENT_TYPE, content_type)], body)
                    }
                }),
            )
            .route("/redirect", get(|| async { (StatusCode::FOUND, [(LOCATION, "/jwks")]) }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind jwks");
        let addr = listener.local_addr().expect("jwks addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer { url: format!("http://{addr}/jwks"), hits, task }
    }

    /// Another path on the same server, e.g. `/redirect`.
    pub fn url_of(&self, path: &str) -> String {
        self.url.replace("/jwks", path)
    }

    /// How many times `/jwks` was fetched.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port that accepts and counts TCP connections, then drops them.
pub struct ConnCounter {
    pub port: u16,
    count: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl ConnCounter {
    pub async fn start() -> ConnCounter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        ConnCounter { port, count, task }
    }

    pub fn connections(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for ConnCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
