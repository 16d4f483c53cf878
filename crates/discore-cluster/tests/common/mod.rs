//! Shared pieces of the cluster tests: a private Redis and NATS JetStream
//! per test (real servers on free loopback ports with temporary data,
//! stopped by PID; a test fails, never skips, when one cannot start), unique
//! namespaces, the emulator, and cluster processes started as real OS
//! processes.

#![allow(dead_code)]

pub mod fleet;

use discore_cluster::{ClusterRedis, EventBus};
use discore_mock::{MockConfig, MockServer, Observed};
use discore_test_services::{NatsServer, RedisServer};
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Generous: only a broken cluster waits this long.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A namespace no other test (or run) uses.
pub fn namespace(test: &str) -> String {
    format!("t-{test}-{:08x}", fastrand::u32(..))
}

/// A private `redis-server` for one test.
pub fn redis_server() -> RedisServer {
    RedisServer::start().unwrap_or_else(|error| panic!("{}", report(&error)))
}

/// A private `nats-server -js` for one test.
pub fn nats_server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|error| panic!("{}", report(&error)))
}

/// The test's Redis for `namespace`.
pub async fn redis(server: &RedisServer, namespace: &str) -> ClusterRedis {
    match ClusterRedis::connect(&server.url(), namespace).await {
        Ok(redis) => redis,
        Err(error) => panic!(
            "the test's redis-server at {} does not answer: {}",
            server.url(),
            report(&error)
        ),
    }
}

/// The test's NATS with JetStream for `namespace`, its stream created.
pub async fn bus(server: &NatsServer, namespace: &str) -> EventBus {
    let bus = match EventBus::connect(&server.url(), namespace).await {
        Ok(bus) => bus,
        Err(error) => panic!(
            "the test's nats-server at {} does not answer: {}",
            server.url(),
            report(&error)
        ),
    };
    if let Err(error) = bus.ensure_stream(Default::default()).await {
        panic!("JetStream refused the test stream: {}", report(&error));
    }
    bus
}

/// An error with its sources.
pub fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The identify window of the emulator and of the cluster's queue alike.
pub const IDENTIFY_WINDOW: Duration = Duration::from_millis(50);

/// The emulator, scaled: heartbeats every second, identify window
/// [`IDENTIFY_WINDOW`].
pub async fn mock(guilds: u64, max_concurrency: u32) -> MockServer {
    MockServer::start(
        MockConfig::new()
            .guilds(guilds)
            .max_concurrency(max_concurrency)
            .heartbeat_interval(Duration::from_millis(1000))
            .identify_window(IDENTIFY_WINDOW)
            .send_limit(120, Duration::from_secs(6))
            .rest_rate_limit(None),
    )
    .await
    .expect("the emulator starts")
}

/// Waits (bounded) until `check` holds on the emulator's observations.
pub async fn wait_mock(mock: &MockServer, what: &str, check: impl Fn(&Observed) -> bool) {
    if mock.wait_until(TIMEOUT, check).await.is_err() {
        panic!("timed out waiting until {what}");
    }
}

/// Sessions the emulator holds attached to a live connection, by shard id.
pub fn live_shards(seen: &Observed, total: u32) -> BTreeMap<u32, usize> {
    let mut shards = BTreeMap::new();
    for connection in seen.connections.iter().filter(|c| c.is_open()) {
        if let Some([id, t]) = connection.shard
            && t == total
            && connection.session_id.is_some()
        {
            *shards.entry(id).or_default() += 1;
        }
    }
    shards
}

/// Asserts that no two connections of one shard were ever authenticated
/// (identified or resumed) at the same time, and that the emulator never had
/// to close a connection because another resumed its session.
pub fn assert_never_two_owners(seen: &Observed) {
    let mut by_shard: BTreeMap<[u32; 2], Vec<(Duration, Duration, u64)>> = BTreeMap::new();
    for connection in &seen.connections {
        let Some(shard) = connection.shard else {
            continue;
        };
        let Some(start) = connection
            .received
            .iter()
            .find(|p| matches!(p.op, Some(2 | 6)))
            .map(|p| p.at)
        else {
            continue;
        };
        let end = connection.closed_at.unwrap_or(Duration::MAX);
        by_shard
            .entry(shard)
            .or_default()
            .push((start, end, connection.id.0));
    }
    for (shard, mut spans) in by_shard {
        spans.sort();
        for pair in spans.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(
                a.1 <= b.0,
                "shard {shard:?} ran on connections {} and {} at once: {a:?} and {b:?}",
                a.2,
                b.2
            );
        }
    }
    let taken_over: Vec<_> = seen
        .connections
        .iter()
        .filter(|c| c.close_sent == Some(4000))
        .map(|c| c.id)
        .collect();
    assert!(
        taken_over.is_empty(),
        "the emulator closed {taken_over:?} with 4000: a session was resumed while attached elsewhere"
    );
}

/// One cluster process started by a test.
pub struct Process {
    pub name: String,
    child: Child,
    reader: Option<std::thread::JoinHandle<()>>,
    lines: Arc<Mutex<Vec<String>>>,
    pub log: PathBuf,
}

impl Process {
    /// Starts `discore-cluster-node <mode> <args>`; its stderr goes to a
    /// log file in the target directory, its stdout lines are collected.
    pub fn start(name: &str, mode: &str, args: &[(&str, String)]) -> Self {
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{name}-{:08x}.log", fastrand::u32(..)));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_discore-cluster-node"));
        command.arg(mode);
        for (flag, value) in args {
            command.arg(format!("--{flag}")).arg(value);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the cluster node binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Self {
            name: name.to_owned(),
            child,
            reader: Some(reader),
            lines,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// A crash: SIGKILL to this process's own PID.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to this process's own PID.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A clean stop: SIGTERM to this process's own PID, then wait (bounded)
    /// for it to exit.
    pub async fn terminate(&mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "{} exited with {status}; see {}",
                    self.name,
                    self.log.display()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within {TIMEOUT:?}; see {}",
                self.name,
                self.log.display()
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether it printed `line`.
    pub fn printed(&self, line: &str) -> bool {
        self.lines.lock().expect("lines").iter().any(|l| l == line)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Never leave a child behind a failed test.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits (bounded, polling) until `check` returns `Some`.
pub async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}
