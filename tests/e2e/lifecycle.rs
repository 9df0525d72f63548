//! Request lifecycle at the socket level: a request in flight when shutdown begins still completes,
//! and body limits hold whether or not the client declares the length.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera::Server;
use tessera::clock::SystemClock;
use tessera::config::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::both_stores;
use crate::support::{StoreKind, TestAs, TestDb, write_config};

/// Reads one HTTP/1.1 response (the server closes or we stop at the end of the declared body).
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok());
            if len.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

async fn a_request_in_flight_at_shutdown_completes(store: StoreKind) {
    let db = TestDb::new(store).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let toml = format!(
        "issuer = \"http://{addr}\"\ndatabase_url = \"{}\"\n[registration]\nmode = \"open\"\n[http]\nshutdown_grace_secs = 20\n",
        db.url
    );
    let cfg = write_config(db.dir(), "lifecycle.toml", &toml);
    let settings = Settings::load_with_env(Some(&cfg), std::iter::empty()).unwrap();
    let server = Server::build(settings, Arc::new(SystemClock)).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));

    // A registration whose body arrives in two halves, with shutdown starting in between.
    let body = br#"{"client_name":"in flight","grant_types":["client_credentials"]}"#;
    let (first, rest) = body.split_at(20);
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /register HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // No new connections are accepted once shutdown has begun …
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the listener is closed during shutdown");

    // … but the request in flight finishes normally.
    conn.write_all(rest).await.unwrap();
    let (status, body) = read_response(&mut conn).await;
    assert_eq!(status, 201, "{body}");
    let reg: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reg["client_name"], "in flight");
    drop(conn);
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("server stops").unwrap().unwrap();
    db.drop_now().await;
}

async fn body_limits_hold_with_and_without_a_declared_length(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = TestAs::start_with(
        &db,
        crate::support::Options { extra_toml: "[registration]\nmode = \"open\"\n", ..Default::default() },
    )
    .await;

    // The token endpoint takes up to 256 KiB (pushed SAML assertions); this request reaches client
    // authentication, which refuses it for what it is, not for its size.
    let mut big_form = String::from("grant_type=client_credentials&pad=");
    big_form.push_str(&"a".repeat(200 * 1024));
    let res = t
        .http
        .post(t.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big_form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let mut too_big = String::from("grant_type=client_credentials&pad=");
    too_big.push_str(&"a".repeat(256 * 1024));
    let res = t.http.post(t.url("/token")).body(too_big).send().await.unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");

    // Chunked, so no Content-Length announces the size: the limit is enforced while reading.
    let addr = t.base.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /register HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 16 * 1024];
    for _ in 0..5 {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if conn.write_all(&framed).await.is_err() {
            break; // the server may answer and close before the last chunk
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let (status, body) = read_response(&mut conn).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "invalid_request");
    t.stop().await;
    db.drop_now().await;
}

both_stores!(a_request_in_flight_at_shutdown_completes, body_limits_hold_with_and_without_a_declared_length);
