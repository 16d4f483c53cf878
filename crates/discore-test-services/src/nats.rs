//! A private `nats-server -js`.

use crate::{
    error::ServiceError,
    process::{Kind, Server, exchange},
};
use std::path::Path;

/// A `nats-server` with JetStream of one test, on a free loopback port,
/// its streams stored in a temporary directory (so a restart keeps them).
/// Stopped by its PID when dropped.
///
/// ```no_run
/// let nats = discore_test_services::NatsServer::start().expect("nats-server starts");
/// println!("connect to {}", nats.url());
/// ```
pub struct NatsServer(Server);

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("port", &self.0.port())
            .field("pid", &self.0.pid())
            .finish()
    }
}

impl NatsServer {
    /// Starts one and waits until it greets clients with JetStream on.
    ///
    /// # Errors
    ///
    /// When `nats-server` is missing or does not come up.
    pub fn start() -> Result<Self, ServiceError> {
        Server::start(Kind {
            binary: "nats-server",
            args,
            ready,
        })
        .map(Self)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.0.port())
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.0.port()
    }

    /// Its PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.0.pid()
    }

    /// Its data directory (and log, `nats-server.log`).
    pub fn dir(&self) -> &Path {
        self.0.dir()
    }

    /// Stops it cleanly (SIGTERM); [`NatsServer::restart`] starts it again.
    pub fn stop(&mut self) {
        self.0.stop();
    }

    /// Stops it if it runs, then starts it on the same port with the same
    /// streams, and waits until it answers.
    ///
    /// # Errors
    ///
    /// When it does not come up again.
    pub fn restart(&mut self) -> Result<(), ServiceError> {
        self.0.restart()
    }
}

fn args(port: u16, dir: &Path) -> Vec<String> {
    vec![
        "-a".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        port.to_string(),
        "-js".to_owned(),
        "-sd".to_owned(),
        dir.join("jetstream").display().to_string(),
    ]
}

/// The server's INFO greeting says whether JetStream is on; it is sent once
/// the server accepts clients, after JetStream started.
fn ready(port: u16) -> bool {
    exchange(port, b"", "\"jetstream\":true")
}
