//! A headless Chromium for the console's browser tests (Debian's `chromium` and `chromium-driver`,
//! driven over WebDriver), at a desktop size or as a phone, and screenshots written as test
//! artifacts under `target/test-artifacts/console/`. The same set-up as `browser.rs`; without the
//! browser the tests say so and stop, except under CI (`CI=true`), where that fails the run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// How big the window is.
#[derive(Debug, Clone, Copy)]
pub enum Screen {
    /// A desktop window, tall enough for a whole dashboard in one screenshot.
    Desktop,
    /// A phone: 390 CSS pixels wide (an iPhone 12–15), touch, a mobile user agent.
    Phone,
}

/// chromedriver plus one browser session; both end when this is dropped or closed.
pub struct Browser {
    pub c: Client,
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a browser session, or explains why it cannot (None
    /// outside CI).
    pub async fn start(screen: Screen) -> Option<Browser> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
            let why = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "browser tests must run in CI: {why}");
            eprintln!("skipped: {why}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut options = json!({ "binary": CHROMIUM });
        match screen {
            Screen::Desktop => args.push("--window-size=1280,2000".to_owned()),
            Screen::Phone => {
                options["mobileEmulation"] = json!({
                    "deviceMetrics": { "width": 390, "height": 1600, "pixelRatio": 2.0, "touch": true },
                    "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                                  Chrome/126.0 Mobile Safari/537.36",
                });
            }
        }
        options["args"] = json!(args);
        let caps = json!({ "goog:chromeOptions": options }).as_object().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let c = loop {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            match builder.capabilities(caps.clone()).connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(c) => break c,
                // chromedriver may still be starting.
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => panic!("cannot start a browser session: {e}"),
            }
        };
        Some(Browser { c, child, _profile: profile })
    }

    pub async fn close(self) {
        let _ = self.c.clone().close().await;
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no `{css}`: {e}")).text().await.unwrap()
    }

    pub async fn type_into(&self, id: &str, text: &str) {
        self.c.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("no #{id}: {e}")).send_keys(text).await.unwrap();
    }

    /// Clicks the first element matching `css` and waits for the next page to load.
    pub async fn click(&self, css: &str) {
        let before = self.c.current_url().await.unwrap();
        let el = self.c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no `{css}`: {e}"));
        el.click().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        // Every console form answers with a redirect or a new page; wait until the old one is gone.
        loop {
            let gone = el.text().await.is_err();
            if gone || self.c.current_url().await.unwrap() != before {
                break;
            }
            assert!(Instant::now() < deadline, "clicking `{css}` led nowhere");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.c.wait().for_element(Locator::Css("body")).await.unwrap();
    }

    /// Writes a PNG of the window to `target/test-artifacts/console/<name>.png`; returns the path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/console");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.c.screenshot().await.unwrap()).unwrap();
        path
    }
}
