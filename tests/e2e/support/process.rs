//! The real `tessera` binary as a child process: a clean environment, one-shot commands, and a
//! serving process whose JSON log lines (and raw stderr) the test can read.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::tessera_bin;

/// A command with a clean environment: no `TESSERA_*` from the caller leaks in.
pub fn tessera(cwd: &Path) -> Command {
    let mut c = Command::new(tessera_bin());
    c.current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("TESSERA_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs a command to its end: (exit code, stdout, stderr).
pub fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().expect("run tessera");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub struct Running {
    pub child: Child,
    /// The bound address, from the "tessera is serving" line.
    pub addr: String,
    /// Every stderr line that parsed as JSON, after the "serving" line.
    pub lines: Receiver<Value>,
    /// Every stderr line, verbatim, JSON or not.
    raw: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Running {
    /// Everything the process wrote to stderr. Call after it exited to get all of it.
    pub fn stderr(&mut self) -> String {
        if let Some(r) = self.reader.take() {
            r.join().expect("stderr reader");
        }
        self.raw.lock().unwrap().clone()
    }
}

/// Starts `tessera` with JSON logs and waits for its "serving" line, which carries the bound address.
pub fn spawn_serving(cwd: &Path, args: &[&str]) -> Running {
    spawn_serving_with(cwd, args, &[])
}

/// `spawn_serving` with extra environment variables.
pub fn spawn_serving_with(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut cmd = tessera(cwd);
    cmd.args(args).env("TESSERA_LISTEN", "127.0.0.1:0").env("TESSERA_LOG_FORMAT", "json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn tessera");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let raw = Arc::new(Mutex::new(String::new()));
    let sink = raw.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            {
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && line["fields"]["message"] == "tessera is serving"
        {
            let addr = line["fields"]["listen"].as_str().unwrap().to_owned();
            return Running { child, addr, lines: rx, raw, reader: Some(reader) };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tessera exited early: {status}\n{}", raw.lock().unwrap().as_str());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("tessera did not start");
}

pub fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
}
