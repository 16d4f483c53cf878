//! The `discore-mock` binary in a process of its own, driven over its
//! `/_mock` HTTP endpoints and Discord's REST routes, stopped by its PID.

use super::TIMEOUT;
use discore_mock::Observed;
use serde_json::{Value, json};
use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const TOKEN: &str = "mock-token";

/// A running emulator process.
pub struct Emulator {
    child: Child,
    /// `ws://127.0.0.1:PORT` (what `/gateway` hands out).
    pub gateway: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Where its log goes.
    pub log: PathBuf,
    http: awc::Client,
}

/// A file under target/thirdparty for the logs of one case.
pub fn log_path(case: &str, what: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("thirdparty");
    std::fs::create_dir_all(&dir).expect("the log directory");
    dir.join(format!("{case}-{what}.log"))
}

impl Emulator {
    /// Starts the binary on free ports with `guilds` guilds, a short
    /// heartbeat interval and identify buckets for `shards` shards at once.
    pub fn start(case: &str, guilds: u32, shards: u32) -> Self {
        let log = log_path(case, "emulator");
        let mut child = Command::new(env!("CARGO_BIN_EXE_discore-mock"))
            .args(["--port", "0", "--token", TOKEN])
            .args(["--guilds", &guilds.to_string()])
            .args(["--max-concurrency", &shards.to_string()])
            // Libraries' own identify pacing is 5 s per bucket; the
            // emulator's window is the same (equal limits).
            .args(["--identify-window-ms", "5000"])
            .args(["--heartbeat-interval-ms", "1000"])
            .args(["--reconnect-close-after-ms", "3000"])
            .env("RUST_LOG", "discore_mock=debug")
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("the emulator's log"))
            .spawn()
            .expect("the discore-mock binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Read the address lines, then keep draining.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut gateway = None;
        let mut rest = None;
        let deadline = Instant::now() + TIMEOUT;
        while gateway.is_none() || rest.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("discore-mock printed no URLs; see {}", log.display()));
            if let Some(url) = line.strip_prefix("gateway:") {
                gateway = Some(url.trim().to_owned());
            } else if let Some(url) = line.strip_prefix("rest:") {
                rest = Some(url.trim().to_owned());
            }
        }
        let rest = rest.unwrap_or_default();
        let base = rest.trim_end_matches("/api/v10").to_owned();
        Self {
            child,
            gateway: gateway.unwrap_or_default(),
            base,
            log,
            http: awc::Client::builder().timeout(TIMEOUT).finish(),
        }
    }

    /// `http://127.0.0.1:PORT/api` (libraries add the version).
    pub fn api_root(&self) -> String {
        format!("{}/api", self.base)
    }

    /// `http://127.0.0.1:PORT/api/v10`.
    pub fn rest(&self) -> String {
        format!("{}/api/v10", self.base)
    }

    async fn request(
        &self,
        method: awc::http::Method,
        path: &str,
        body: Option<&Value>,
        bot: bool,
    ) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if bot {
            request = request.insert_header(("Authorization", format!("Bot {TOKEN}")));
        }
        let mut response = match body {
            Some(body) => request.send_json(body).await,
            None => request.send().await,
        }
        .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status();
        let bytes = response.body().limit(64 << 20).await.expect("a body");
        assert!(
            status.is_success(),
            "{path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON answer")
        }
    }

    /// `POST /_mock/...`.
    pub async fn control(&self, path: &str, body: &Value) -> Value {
        self.request(
            awc::http::Method::POST,
            &format!("/_mock{path}"),
            Some(body),
            false,
        )
        .await
    }

    /// `GET /_mock/world`.
    pub async fn world(&self) -> Value {
        self.request(awc::http::Method::GET, "/_mock/world", None, false)
            .await
    }

    /// Everything the emulator observed.
    pub async fn observed(&self) -> Observed {
        let value = self
            .request(awc::http::Method::GET, "/_mock/observed", None, false)
            .await;
        serde_json::from_value(value).expect("Observed deserializes")
    }

    /// Waits until `condition` holds for the observations, at most
    /// [`TIMEOUT`].
    pub async fn wait_until(
        &self,
        what: &str,
        mut condition: impl FnMut(&Observed) -> bool,
    ) -> Observed {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let seen = self.observed().await;
            if condition(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "the emulator never saw {what}; its log: {}",
                self.log.display()
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates a message through Discord's REST route, as the bot.
    pub async fn create_message(&self, channel: &str, content: &str) -> Value {
        self.request(
            awc::http::Method::POST,
            &format!("/api/v10/channels/{channel}/messages"),
            Some(&json!({ "content": content })),
            true,
        )
        .await
    }

    /// Stops the process by its PID.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
