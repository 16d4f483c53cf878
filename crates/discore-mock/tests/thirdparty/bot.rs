//! A bot under test and what it reported: JSON lines, from a process's
//! stdout (discord.py, discord.js, @discordjs/ws) or from a task in this
//! process (twilight).

use super::TIMEOUT;
use serde_json::Value;
use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Instant,
};
use tokio::sync::mpsc;

/// A bot and the lines it reported so far.
pub struct Bot {
    lines: mpsc::UnboundedReceiver<Value>,
    /// Every line received, in order.
    pub seen: Vec<Value>,
    child: Option<Child>,
    /// Where its stderr (or, in process, its errors) go.
    pub log: PathBuf,
}

impl Bot {
    /// Spawns `command`; its stdout lines are the reports, its stderr goes
    /// to `log`.
    pub fn spawn(mut command: Command, log: PathBuf) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("the bot's log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => {
                        if tx.send(value).is_err() {
                            break;
                        }
                    }
                    // Libraries may print lines of their own.
                    Err(_) => eprintln!("bot: {line}"),
                }
            }
        });
        Self {
            lines,
            seen: Vec::new(),
            child: Some(child),
            log,
        }
    }

    /// A bot running in this process, reporting through `lines`.
    pub fn in_process(lines: mpsc::UnboundedReceiver<Value>, log: PathBuf) -> Self {
        Self {
            lines,
            seen: Vec::new(),
            child: None,
            log,
        }
    }

    /// Lines reported so far that match.
    pub fn count(&self, matches: impl Fn(&Value) -> bool) -> usize {
        self.seen.iter().filter(|line| matches(line)).count()
    }

    /// Waits, at most [`TIMEOUT`], until the bot has reported a line that
    /// matches (possibly already), and returns it.
    pub async fn wait_for(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_count(what, 1, matches).await
    }

    /// Waits until `count` matching lines were reported; returns the last.
    pub async fn wait_for_count(
        &mut self,
        what: &str,
        count: usize,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let found: Vec<&Value> = self.seen.iter().filter(|line| matches(line)).collect();
            if found.len() >= count
                && let Some(last) = found.last()
            {
                return (*last).clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) => panic!(
                    "the bot ended before {what}; it reported {:?}; its log: {}",
                    self.seen,
                    self.log.display()
                ),
                Err(_) => panic!(
                    "the bot never reported {what}; it reported {:?}; its log: {}",
                    self.seen,
                    self.log.display()
                ),
            }
        }
    }

    /// Stops the bot process by its PID.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.stop();
    }
}
