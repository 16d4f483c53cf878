//! The soak's emulator, in a process of its own: this test binary run again
//! with [`CHILD_ENV`] set, driven over the emulator's `/_mock` HTTP API.
//!
//! In one process the emulator's records (one per connection, identify,
//! resume and heartbeat, by design) and its compression state would count in
//! the RSS the soak bounds. Apart, the soak's RSS is the client's alone, and
//! the emulator's is reported beside it.

use discore_mock::{Fault, MockConfig, MockServer, Observed, Target, TrafficConfig};
use serde_json::json;
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::SocketAddr,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// Set in the child's environment: run the emulator, not the soak.
pub const CHILD_ENV: &str = "DISCORE_CHAOS_EMULATOR_PROCESS";
/// The test (in `main.rs`) that is the child's body.
pub const CHILD_TEST: &str = "emulator_process";
/// The line the child prints once it listens.
const ADDR_PREFIX: &str = "chaos-emulator-addr ";

/// The identify window of the emulator and of the fleet alike.
pub const IDENTIFY_WINDOW: Duration = Duration::from_millis(20);

/// The emulator the soak runs against. Its clock and limits are scaled
/// down: 100 ms heartbeats, a 20 ms identify window
/// ([`IDENTIFY_WINDOW`]), 120 sends per 6 s.
pub fn config(token: &str, guilds: u64) -> MockConfig {
    MockConfig::new()
        .token(token)
        .guilds(guilds)
        .max_guilds_per_shard(3)
        .heartbeat_interval(Duration::from_millis(100))
        .identify_window(IDENTIFY_WINDOW)
        .send_limit(120, Duration::from_secs(6))
        .session_keep_alive(Duration::from_secs(60))
        // At this fault rate a shard starts a new session about every
        // 2.5 s: the long run spends ~1,000 identifies in 10 minutes.
        // Discord's daily budget of 1,000 would make the queue pause
        // identifies at its reserve (as it must, or the token is reset)
        // and leave the shards waiting for the daily reset.
        .session_start_limit(1_000_000, 1_000_000, Duration::from_secs(24 * 60 * 60))
        .rest_rate_limit(None)
        // Tens of thousands of connections in the long run: a short record
        // of each one's payloads keeps the final snapshot small.
        .max_recorded_payloads(8)
}

/// The child's body: serve until the parent closes our stdin (which it
/// also does by dying), then stop.
pub fn serve(token: &str, guilds: u64) {
    let system = actix_rt::System::new();
    system.block_on(async {
        let mock = MockServer::start(config(token, guilds))
            .await
            .expect("the chaos emulator starts");
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{ADDR_PREFIX}{}", mock.addr()).expect("stdout");
        stdout.flush().expect("stdout");
        let _ = actix_rt::task::spawn_blocking(|| {
            let mut rest = Vec::new();
            std::io::stdin().read_to_end(&mut rest)
        })
        .await;
        mock.stop().await;
    });
}

/// The running child and an HTTP client for its control API.
pub struct EmulatorProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    http: awc::Client,
}

impl EmulatorProcess {
    /// Starts the child and waits (at most 60 s) for its address.
    pub fn spawn() -> Self {
        let exe = std::env::current_exe().expect("this test binary's path");
        let mut child = Command::new(exe)
            .args(["--exact", CHILD_TEST, "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the emulator process starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("the child's stdout");
        // The harness may print its own words before or around ours on the
        // same line, so the prefix is searched for, not expected first.
        let (found, address) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().take(1000).map_while(Result::ok) {
                if let Some(at) = line.find(ADDR_PREFIX) {
                    let _ = found.send(line[at + ADDR_PREFIX.len()..].trim().to_owned());
                    break;
                }
            }
            // Drain the rest so the child never blocks on a full pipe.
            for _ in lines.map_while(Result::ok) {}
        });
        let addr = match address.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr.parse().expect("the child prints a socket address"),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the emulator process did not say where it listens: {error}");
            }
        };
        let http = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        Self {
            child,
            stdin,
            addr,
            http,
        }
    }

    /// The REST base a manager is pointed at.
    pub fn rest_url(&self) -> String {
        format!("http://{}/api/v10", self.addr)
    }

    /// The child's RSS in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        super::rss_kib_of(&format!("/proc/{}/status", self.child.id()))
    }

    fn control_url(&self, path: &str) -> String {
        format!("http://{}/_mock/{path}", self.addr)
    }

    async fn post(&self, path: &str, body: serde_json::Value) {
        let response = self
            .http
            .post(self.control_url(path))
            .send_json(&body)
            .await
            .unwrap_or_else(|error| panic!("POST /_mock/{path}: {error}"));
        assert!(
            response.status().is_success(),
            "POST /_mock/{path}: {}",
            response.status()
        );
    }

    /// Injects `fault` into the connections of `target`.
    pub async fn fault(&self, target: &Target, fault: &Fault) {
        self.post("fault", json!({ "target": target, "fault": fault }))
            .await;
    }

    /// Refuses upgrades for `duration`.
    pub async fn outage(&self, duration: Duration) {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.post("outage", json!({ "millis": millis })).await;
    }

    /// Starts the traffic generator.
    pub async fn start_traffic(&self, config: TrafficConfig) {
        self.post("traffic", json!(config)).await;
    }

    /// Stops the traffic generator.
    pub async fn stop_traffic(&self) {
        let response = self
            .http
            .delete(self.control_url("traffic"))
            .send()
            .await
            .expect("DELETE /_mock/traffic");
        assert!(response.status().is_success(), "DELETE /_mock/traffic");
    }

    /// Everything the emulator saw.
    pub async fn observed(&self) -> Observed {
        let mut response = self
            .http
            .get(self.control_url("observed"))
            .send()
            .await
            .expect("GET /_mock/observed");
        // The long run's records are tens of megabytes of JSON.
        let body = response
            .body()
            .limit(1 << 30)
            .await
            .expect("the observed records");
        serde_json::from_slice(&body).expect("the observed records parse")
    }

    /// Closes the child's stdin and waits (at most 20 s) for it to stop;
    /// kills it by its PID otherwise.
    pub fn stop(mut self) {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("the emulator process did not stop: killing it");
    }
}

impl Drop for EmulatorProcess {
    /// A failed soak must not leave its emulator behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
