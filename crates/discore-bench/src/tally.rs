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
    /// From the stamp in each probe (taken as the emulator built it) to
    /// the handler, in latency runs.
    pub latencies: Vec<Duration>,
    /// Where and when each probe reached the handler, in latency runs of a
    /// handler that knows the shard and the sequence: matched afterwards
    /// with the emulator's send times.
    pub receipts: Vec<Receipt>,
}

/// A latency probe as the handler saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The shard whose session carried it.
    pub shard: u32,
    /// Its sequence number in that session.
    pub sequence: u64,
    /// The wall clock when the handler saw it, in ns since the Unix epoch.
    pub at_nanos: u128,
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
        let expected = if latency {
            usize::try_from(count).unwrap_or(0)
        } else {
            0
        };
        self.outcome = Outcome {
            latencies: Vec::with_capacity(expected),
            receipts: Vec::with_capacity(expected),
            ..Outcome::default()
        };
        self.done = Some(done);
        if count == 0 {
            self.finish();
        }
    }

    /// One MESSAGE_CREATE with this content.
    pub fn record(&mut self, content: &str) {
        self.record_event(content, None);
    }

    /// One MESSAGE_CREATE with this content, dispatch `sequence` of
    /// `shard`'s session.
    pub fn record_dispatch(&mut self, content: &str, shard: u32, sequence: u64) {
        self.record_event(content, Some((shard, sequence)));
    }

    fn record_event(&mut self, content: &str, dispatch: Option<(u32, u64)>) {
        if self.done.is_none() {
            return;
        }
        self.outcome.seen += 1;
        self.outcome.content_bytes += content.len() as u64;
        if self.latency
            && let Some(sent) = parse_latency_stamp(content)
        {
            let now = unix_nanos();
            self.outcome.latencies.push(Duration::from_nanos(
                u64::try_from(now.saturating_sub(sent)).unwrap_or(u64::MAX),
            ));
            if let Some((shard, sequence)) = dispatch {
                self.outcome.receipts.push(Receipt {
                    shard,
                    sequence,
                    at_nanos: now,
                });
            }
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

    #[test]
    fn a_latency_run_notes_where_and_when_each_probe_arrived() {
        let mut tally = Tally::default();
        let (done, mut outcome) = oneshot::channel();
        tally.arm(2, true, done);
        let before = crate::emulator::unix_nanos();
        tally.record_dispatch(&crate::emulator::latency_stamp(before), 7, 41);
        tally.record_dispatch("not a probe", 7, 42);
        let outcome = outcome.try_recv().expect("reported");
        assert_eq!(outcome.latencies.len(), 1);
        let receipts: Vec<(u32, u64)> = outcome
            .receipts
            .iter()
            .map(|r| (r.shard, r.sequence))
            .collect();
        assert_eq!(receipts, [(7, 41)]);
        assert!(outcome.receipts[0].at_nanos >= before);
    }
}
