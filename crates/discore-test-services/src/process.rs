//! One server process: a free port, a temporary directory, started, stopped
//! and restarted by its own PID.

use crate::error::ServiceError;
use std::{
    fs::{self, OpenOptions},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// How long a server may take to answer on its port: generous, for a busy
/// machine; a server that is up answers in milliseconds.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping server may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh ports tried when the first start finds its port taken meanwhile.
const PORT_ATTEMPTS: u32 = 5;

/// What differs between the servers.
pub(crate) struct Kind {
    pub(crate) binary: &'static str,
    /// The command-line arguments for a port and a data directory.
    pub(crate) args: fn(u16, &Path) -> Vec<String>,
    /// Whether the server on this port answers as it should once ready.
    pub(crate) ready: fn(u16) -> bool,
}

/// A server process owned by a test.
pub(crate) struct Server {
    kind: Kind,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Starts `kind` on a free loopback port with a new data directory.
    pub(crate) fn start(kind: Kind) -> Result<Self, ServiceError> {
        let dir = std::env::temp_dir().join(format!(
            "discore-{}-{}-{:08x}",
            kind.binary,
            std::process::id(),
            fastrand::u32(..)
        ));
        fs::create_dir_all(&dir).map_err(|source| ServiceError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let mut server = Self {
            kind,
            port: 0,
            dir,
            child: None,
        };
        let mut attempt = 1;
        loop {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                // Another process took the port between our probe and the
                // server's bind: try another.
                Err(ServiceError::NotReady { .. }) if attempt < PORT_ATTEMPTS => attempt += 1,
                Err(error) => return Err(error),
            }
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process on `self.port` and waits until it answers.
    fn spawn(&mut self) -> Result<(), ServiceError> {
        let log = self.log_path();
        let output = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| ServiceError::Io {
                what: format!("opening {}", log.display()),
                source,
            })?;
        let errors = output.try_clone().map_err(|source| ServiceError::Io {
            what: "duplicating the log file".to_owned(),
            source,
        })?;
        let child = Command::new(self.kind.binary)
            .args((self.kind.args)(self.port, &self.dir))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .map_err(|source| ServiceError::NotInstalled {
                binary: self.kind.binary,
                source,
            })?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if (self.kind.ready)(self.port) {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        Err(ServiceError::NotReady {
            binary: self.kind.binary,
            port: self.port,
            waited: started.elapsed(),
            log,
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.kind.binary))
    }

    /// Sends `signal` (a `kill` signal name) to the server's PID.
    pub(crate) fn signal(&self, signal: &str) -> Result<(), ServiceError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .map_err(|source| ServiceError::Io {
                what: format!("kill -{signal} {pid}"),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(ServiceError::Io {
                what: format!("kill -{signal} {pid}"),
                source: std::io::Error::other(status.to_string()),
            })
        }
    }

    /// Stops the server cleanly (SIGTERM to its PID, so it writes what it
    /// keeps), killing it if it does not exit in time.
    pub(crate) fn stop(&mut self) {
        if self.signal("CONT").is_err() || self.signal("TERM").is_err() {
            self.kill();
            return;
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while let Some(child) = &mut self.child {
            if !matches!(child.try_wait(), Ok(None)) || Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// SIGKILL to the server's PID, and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts it again on the same port
    /// with the same data directory.
    pub(crate) fn restart(&mut self) -> Result<(), ServiceError> {
        self.stop();
        self.spawn()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            // Keep the data and the log of a failing test.
            eprintln!(
                "{} data and log kept in {}",
                self.kind.binary,
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> Result<u16, ServiceError> {
    let probe = TcpListener::bind("127.0.0.1:0").map_err(|source| ServiceError::Io {
        what: "binding a probe on 127.0.0.1:0".to_owned(),
        source,
    })?;
    probe
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|source| ServiceError::Io {
            what: "reading the probe's port".to_owned(),
            source,
        })
}

/// Connects to the port and exchanges one request and answer, bounded.
pub(crate) fn exchange(port: u16, request: &[u8], answer_has: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    if !request.is_empty() && stream.write_all(request).is_err() {
        return false;
    }
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    // A few reads at most: the answer is one short line.
    for _ in 0..8 {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.extend_from_slice(&buffer[..n]);
                if String::from_utf8_lossy(&seen).contains(answer_has) {
                    return true;
                }
            }
        }
    }
    false
}
