//! Backpressure between a shard and its subscribers.
//!
//! Every delivered message copy holds one credit; the credit returns when the
//! subscriber drops the message. When a shard's credits run out it stops
//! reading its socket (TCP then slows the server) instead of buffering
//! without bound, and resumes reading as soon as a credit returns. Heartbeats
//! run on a timer and keep going while reading is paused. See
//! `docs/architecture.md` for the policy.

use futures_util::{Stream, task::AtomicWaker};
use std::{
    fmt,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

/// The credit pool of one shard.
#[derive(Debug)]
pub(crate) struct Credits {
    outstanding: AtomicUsize,
    limit: usize,
    reader: AtomicWaker,
    /// The reader waited for credits since this flag was last taken.
    waited: AtomicBool,
}

impl Credits {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            outstanding: AtomicUsize::new(0),
            limit: limit.max(1),
            reader: AtomicWaker::new(),
            waited: AtomicBool::new(false),
        })
    }

    /// Message copies delivered and not yet dropped.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Acquire)
    }

    /// Whether the reader must wait.
    pub(crate) fn exhausted(&self) -> bool {
        self.outstanding() >= self.limit
    }

    /// Whether the reader is waiting now or waited since the last call: a
    /// heartbeat ACK may then still sit unread behind the events.
    pub(crate) fn take_waited(&self) -> bool {
        self.waited.swap(false, Ordering::AcqRel) || self.exhausted()
    }

    pub(crate) fn take(self: &Arc<Self>) -> Credit {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        Credit(Arc::clone(self))
    }
}

/// One outstanding message copy.
pub(crate) struct Credit(Arc<Credits>);

impl Clone for Credit {
    fn clone(&self) -> Self {
        self.0.take()
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        let before = self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
        if before == self.0.limit {
            self.0.reader.wake();
        }
    }
}

impl fmt::Debug for Credit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credit")
    }
}

/// A stream that yields nothing while the credits are exhausted.
pub(crate) struct Gated<S> {
    inner: S,
    credits: Arc<Credits>,
}

impl<S> Gated<S> {
    pub(crate) fn new(inner: S, credits: Arc<Credits>) -> Self {
        Self { inner, credits }
    }
}

impl<S: Stream + Unpin> Stream for Gated<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.credits.exhausted() {
            self.credits.reader.register(cx.waker());
            // A credit may have returned between the check and the register.
            if self.credits.exhausted() {
                self.credits.waited.store(true, Ordering::Release);
                return Poll::Pending;
            }
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{Credits, Gated};
    use futures_util::{StreamExt, stream};
    use std::task::Poll;

    #[test]
    fn credits_count_copies_and_return_on_drop() {
        let credits = Credits::new(2);
        let first = credits.take();
        let copy = first.clone();
        assert_eq!(credits.outstanding(), 2);
        assert!(credits.exhausted());
        drop(first);
        assert!(!credits.exhausted());
        drop(copy);
        assert_eq!(credits.outstanding(), 0);
    }

    #[test]
    fn gate_pauses_until_a_credit_returns() {
        let credits = Credits::new(1);
        let mut gated = Gated::new(stream::iter([1, 2, 3]), credits.clone());
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert_eq!(gated.poll_next_unpin(&mut cx), Poll::Ready(Some(1)));
        let held = credits.take();
        assert_eq!(gated.poll_next_unpin(&mut cx), Poll::Pending);
        drop(held);
        assert_eq!(gated.poll_next_unpin(&mut cx), Poll::Ready(Some(2)));
        assert!(credits.take_waited(), "the wait is remembered until taken");
        assert!(!credits.take_waited());
    }
}
