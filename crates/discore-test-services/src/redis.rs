//! A private `redis-server`.

use crate::{
    error::ServiceError,
    process::{Kind, Server, exchange},
};
use std::path::Path;

/// A `redis-server` of one test, on a free loopback port, with its data in
/// a temporary directory: append-only file on, so a restart keeps what was
/// written (as a production Redis with persistence does). Stopped by its
/// PID when dropped.
///
/// ```no_run
/// let redis = discore_test_services::RedisServer::start().expect("redis-server starts");
/// println!("connect to {}", redis.url());
/// ```
pub struct RedisServer(Server);

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.0.port())
            .field("pid", &self.0.pid())
            .finish()
    }
}

impl RedisServer {
    /// Starts one and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// When `redis-server` is missing or does not come up.
    pub fn start() -> Result<Self, ServiceError> {
        Server::start(Kind {
            binary: "redis-server",
            args,
            ready,
        })
        .map(Self)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.0.port())
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.0.port()
    }

    /// Its PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.0.pid()
    }

    /// Its data directory (and log, `redis-server.log`).
    pub fn dir(&self) -> &Path {
        self.0.dir()
    }

    /// Stops it cleanly (SIGTERM); [`RedisServer::restart`] starts it again.
    pub fn stop(&mut self) {
        self.0.stop();
    }

    /// Stops it if it runs, then starts it on the same port with the same
    /// data, and waits until it answers.
    ///
    /// # Errors
    ///
    /// When it does not come up again.
    pub fn restart(&mut self) -> Result<(), ServiceError> {
        self.0.restart()
    }
}

fn args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--daemonize",
        "no",
        "--logfile",
        "",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

fn ready(port: u16) -> bool {
    exchange(port, b"PING\r\n", "+PONG")
}
