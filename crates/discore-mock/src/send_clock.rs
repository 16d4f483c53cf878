//! When each dispatch was taken by its connection's socket writer (actix's
//! HTTP/1 dispatcher, which writes what it takes to the socket in the same
//! turn), so that a latency measurement can start at the emulator's send
//! instead of at the moment an event was made: what lies between (queueing
//! in the session's outbox, the per-session compression, the wait for the
//! writer's turn on a busy worker) is the emulator's own time, which a bot
//! talking to Discord never sees.
//!
//! Off until asked for; while on, each frame with dispatches costs one
//! clock read and one short lock.

use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::SystemTime,
};

/// Send times kept at most between two takes; past it new ones are counted
/// as lost, so a clock left on stays bounded.
pub const MAX_SEND_TIMES: usize = 10_000_000;

/// One dispatch taken by a connection's socket writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentDispatch {
    /// The shard id of the session it belongs to.
    pub shard: u32,
    /// Its sequence number in that session.
    pub sequence: u64,
    /// The wall clock when the writer took it (`CLOCK_REALTIME`, which another
    /// process on the same machine reads alike).
    pub at: SystemTime,
}

/// The send times noted since the last take.
#[derive(Debug, Default)]
pub struct SendTimes {
    /// In the order the writers took them.
    pub sent: Vec<SentDispatch>,
    /// Dispatches not noted because [`MAX_SEND_TIMES`] were waiting.
    pub lost: u64,
}

#[derive(Default)]
pub(crate) struct SendClock {
    on: AtomicBool,
    noted: Mutex<SendTimes>,
}

impl SendClock {
    pub(crate) fn set(&self, on: bool) {
        self.on.store(on, Ordering::Release);
    }

    /// Notes that the socket writer took the dispatches `first..=last` of
    /// `shard`'s session now.
    pub(crate) fn note(&self, shard: u32, (first, last): (u64, u64)) {
        if !self.on.load(Ordering::Acquire) || first == 0 {
            return;
        }
        let at = SystemTime::now();
        let mut noted = self.noted.lock().unwrap_or_else(PoisonError::into_inner);
        for sequence in first..=last {
            if noted.sent.len() < MAX_SEND_TIMES {
                noted.sent.push(SentDispatch {
                    shard,
                    sequence,
                    at,
                });
            } else {
                noted.lost += 1;
            }
        }
    }

    pub(crate) fn take(&self) -> SendTimes {
        std::mem::take(&mut *self.noted.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::SendClock;

    #[test]
    fn notes_nothing_until_switched_on_and_every_sequence_of_a_chunk_after() {
        let clock = SendClock::default();
        clock.note(3, (1, 2));
        assert!(clock.take().sent.is_empty());
        clock.set(true);
        clock.note(3, (4, 6));
        clock.note(5, (0, 0));
        let taken = clock.take();
        let noted: Vec<(u32, u64)> = taken.sent.iter().map(|s| (s.shard, s.sequence)).collect();
        assert_eq!(noted, [(3, 4), (3, 5), (3, 6)]);
        assert_eq!(taken.lost, 0);
        assert!(clock.take().sent.is_empty(), "a take empties the clock");
    }
}
