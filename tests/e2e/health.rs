//! Liveness and readiness, including the store going away and coming back (threats D7).

use std::net::SocketAddr;
use std::time::Duration;

use crate::both_stores;
use crate::support::proxy::Relay;
use crate::support::{StoreKind, TestAs, TestDb, postgres_url};

async fn healthz_and_readyz_answer_while_the_store_is_up(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = TestAs::start(&db).await;
    let (status, _, body) = t.get_json("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    let (status, headers, body) = t.get_json("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
    assert_eq!(headers["cache-control"], "no-store");
    t.stop().await;
    db.drop_now().await;
}

both_stores!(healthz_and_readyz_answer_while_the_store_is_up);

/// PostgreSQL only: a network store is the one that can vanish under a running node. The server talks
/// to PostgreSQL through a relay that the test cuts and restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_red_while_postgres_is_unreachable_and_recovers() {
    let Some(base) = postgres_url() else { return };
    let mut db = TestDb::new(StoreKind::Postgres).await;
    let target: SocketAddr = {
        let u = url::Url::parse(&base).expect("postgres url");
        let host = u.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = u.port().unwrap_or(5432);
        tokio::net::lookup_host((host.as_str(), port)).await.unwrap().next().unwrap()
    };
    let mut relay = Relay::start(target).await;
    let mut via_relay = url::Url::parse(&db.url).unwrap();
    via_relay.set_host(Some("127.0.0.1")).unwrap();
    via_relay.set_port(Some(relay.addr.port())).unwrap();
    let direct = std::mem::replace(&mut db.url, via_relay.to_string());
    // Short acquire timeout so readiness answers within the test's patience.
    let t = TestAs::start_with(
        &db,
        crate::support::Options { extra_toml: "database_connect_timeout_secs = 1\n", ..Default::default() },
    )
    .await;
    assert_eq!(t.get_json("/readyz").await.0, 200);

    relay.cut();
    let (status, headers, body) = t.get_json("/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(headers["retry-after"], "5");
    let text = body.to_string();
    assert!(!text.contains("postgres") && !text.contains("127.0.0.1"), "internals leaked: {text}");
    // Liveness is about the process, not its dependencies.
    assert_eq!(t.get_json("/healthz").await.0, 200);

    relay.restore().await;
    let mut status = 0;
    for _ in 0..30 {
        status = t.get_json("/readyz").await.0.as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200, "service resumes by itself when the store returns");
    t.stop().await;
    db.url = direct;
    db.drop_now().await;
}
