//! What a benchmark handler does with each event: it touches the typed
//! message (adds up the content length), counts it, and, for the latency
//! case, reads the send time out of the content.

use crate::emulator::{parse_latency_stamp, unix_nanos};
use std::time::Duration;
use tokio::sync::oneshot;

/// What a handler saw during one armed run.
#[derive(Debug, Default)]
pub struct Outcome {
    /// MESSAGE_CREATEs handled.
    pub seen: u64,
    /// Their content bytes (proof the typed event was touched).
    pub content_bytes: u64,
    /// Emulator-send-to-handler latencies, in latency runs.
    pub latencies: Vec<Duration>,
}

/// Counts events until an armed target is reached, then reports.
#[derive(Debug, Default)]
pub struct Tally {
    target: u64,
    latency: bool,
    outcome: Outcome,
    done: Option<oneshot::Sender<Outcome>>,
}

impl Tally {
    /// Starts counting `count` events from zero; `done` gets the outcome.
    pub fn arm(&mut self, count: u64, latency: bool, done: oneshot::Sender<Outcome>) {
        self.target = count;
        self.latency = latency;
        self.outcome = Outcome {
            latencies: Vec::with_capacity(if latency {
                usize::try_from(count).unwrap_or(0)
            } else {
                0
            }),
            ..Outcome::default()
        };
        self.done = Some(done);
        if count == 0 {
            self.finish();
        }
    }

    /// One MESSAGE_CREATE with this content.
    pub fn record(&mut self, content: &str) {
        if self.done.is_none() {
            return;
        }
        self.outcome.seen += 1;
        self.outcome.content_bytes += content.len() as u64;
        if self.latency
            && let Some(sent) = parse_latency_stamp(content)
        {
            let nanos = unix_nanos().saturating_sub(sent);
            self.outcome.latencies.push(Duration::from_nanos(
                u64::try_from(nanos).unwrap_or(u64::MAX),
            ));
        }
        if self.outcome.seen >= self.target {
            self.finish();
        }
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(std::mem::take(&mut self.outcome));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tally;
    use tokio::sync::oneshot;

    #[test]
    fn reports_once_at_the_target() {
        let mut tally = Tally::default();
        tally.record("before arming is ignored");
        let (done, mut outcome) = oneshot::channel();
        tally.arm(2, false, done);
        tally.record("abc");
        assert!(outcome.try_recv().is_err());
        tally.record("de");
        let outcome = outcome.try_recv().expect("reported");
        assert_eq!((outcome.seen, outcome.content_bytes), (2, 5));
        tally.record("after");
    }
}
