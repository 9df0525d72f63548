//! Headless Chromium for the browser tests: Debian's `chromium` and `chromium-driver` (`.ci/run`
//! installs them), driven over WebDriver by chromedriver, at the window size a test asks for or as a
//! phone, and screenshots written as test artifacts under `target/test-artifacts/<folder>/`. Without
//! the browser a test says so and stops, except under CI (`CI=true`), where that fails the run.
//!
//! [`Driver`] is chromedriver alone, for a test that checks for the browser first and opens a session
//! later; [`Browser`] is both at once, with helpers for the console's pages.

use std::path::{Path, PathBuf};
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
    /// Chromium's own headless window size.
    Default,
    /// A window of `width` × `height` pixels.
    Window { width: u32, height: u32 },
    /// A desktop window, tall enough for a whole dashboard in one screenshot; no scrollbars.
    Desktop,
    /// A phone: 390 CSS pixels wide (an iPhone 12–15), touch, a mobile user agent; no scrollbars.
    Phone,
}

/// chromedriver on a free port; it ends when this is dropped.
pub struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver on a free port, or explains why it cannot (None outside CI).
    pub fn start() -> Option<Driver> {
        if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
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
        Some(Driver { child, port, profile: tempfile::tempdir().unwrap() })
    }

    /// A browser session with a window of `screen`'s size.
    pub async fn session(&self, screen: Screen) -> Client {
        // The flags this machine needs: no sandbox as root, and no background calls to a network that
        // is closed here.
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ]
        .map(String::from)
        .into();
        let mut options = json!({ "binary": CHROMIUM });
        match screen {
            Screen::Default => {}
            Screen::Window { width, height } => args.push(format!("--window-size={width},{height}")),
            Screen::Desktop => args.extend(["--hide-scrollbars".to_owned(), "--window-size=1280,2000".to_owned()]),
            Screen::Phone => {
                args.push("--hide-scrollbars".to_owned());
                options["mobileEmulation"] = json!({
                    "deviceMetrics": { "width": 390, "height": 1600, "pixelRatio": 2.0, "touch": true },
                    "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                                  Chrome/126.0 Mobile Safari/537.36",
                });
            }
        }
        args.push(format!("--user-data-dir={}", self.profile.path().display()));
        options["args"] = json!(args);
        let caps = json!({ "goog:chromeOptions": options }).as_object().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            match builder.capabilities(caps.clone()).connect(&format!("http://127.0.0.1:{}", self.port)).await {
                Ok(c) => return c,
                // chromedriver may still be starting.
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => panic!("cannot start a browser session: {e}"),
            }
        }
    }
}

/// `target/test-artifacts/<folder>/` (under `CARGO_TARGET_DIR` when that is set), created.
pub fn artifacts(folder: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts").join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a PNG of `c`'s window to `target/test-artifacts/<folder>/<name>.png`; returns the path.
pub async fn screenshot(c: &Client, folder: &str, name: &str) -> PathBuf {
    let png = c.screenshot().await.unwrap();
    let path = artifacts(folder).join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

/// chromedriver plus one browser session; both end when this is dropped or closed.
pub struct Browser {
    pub c: Client,
    _driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a browser session, or explains why it cannot (None outside CI).
    pub async fn start(screen: Screen) -> Option<Browser> {
        let driver = Driver::start()?;
        let c = driver.session(screen).await;
        Some(Browser { c, _driver: driver })
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

    /// Writes a PNG of the window to `target/test-artifacts/<folder>/<name>.png`; returns the path.
    pub async fn screenshot(&self, folder: &str, name: &str) -> PathBuf {
        screenshot(&self.c, folder, name).await
    }
}
