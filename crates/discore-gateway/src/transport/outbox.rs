//! The queue from a shard to its connection's writer task.
//!
//! A tokio channel allocates a block of 32 message slots when it is
//! created, and an idle connection would keep that block (about 1.3 KiB)
//! for its whole life to send one heartbeat every ~41 s. This queue holds
//! memory only while messages wait: its room is let go once it is drained.

use crate::identify::{IdentifyPermit, WrittenIdentify};
use actix_http::ws::Message;
use futures_util::task::AtomicWaker;
use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::{Arc, Mutex, PoisonError},
    task::Poll,
    time::Instant,
};

struct Shared {
    state: Mutex<State>,
    /// The writer task, when it waits for a message.
    writer: AtomicWaker,
}

/// A frame for the writer, with the identify permit it uses, if any.
pub(super) struct Outgoing {
    pub(super) message: Message,
    pub(super) permit: Option<IdentifyPermit>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Outgoing>,
    /// The sending side is gone: the writer ends once the queue is empty.
    sender_gone: bool,
    /// The writer is gone: nothing sent is ever written.
    receiver_gone: bool,
    /// The Identify written on this connection, until the gateway answers.
    /// Dropped with the connection, it reports the send at that moment.
    written_identify: Option<WrittenIdentify>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves a valid queue behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new, empty outbox: its sending and receiving ends.
pub(super) fn outbox() -> (OutboxSender, OutboxReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        writer: AtomicWaker::new(),
    });
    (OutboxSender(Arc::clone(&shared)), OutboxReceiver(shared))
}

/// Queues messages for the writer.
pub(super) struct OutboxSender(Arc<Shared>);

impl OutboxSender {
    /// Queues `message`; `false` when the writer has ended.
    pub(super) fn send(&self, message: Message) -> bool {
        self.push(Outgoing {
            message,
            permit: None,
        })
    }

    /// Queues Identify with its permit; `false` (the permit dropped, so
    /// given back) when the writer has ended.
    pub(super) fn send_identify(&self, message: Message, permit: IdentifyPermit) -> bool {
        self.push(Outgoing {
            message,
            permit: Some(permit),
        })
    }

    /// The gateway answered this connection's Identify at `at`: its
    /// permit is reported sent then. Nothing happens when no Identify was
    /// written (the permit is then reported when the connection ends).
    pub(super) fn identify_answered(&self, at: Instant) {
        let written = self.0.state().written_identify.take();
        if let Some(written) = written {
            written.answered(at);
        }
    }

    fn push(&self, outgoing: Outgoing) -> bool {
        {
            let mut state = self.0.state();
            if state.receiver_gone {
                return false;
            }
            state.queue.push_back(outgoing);
        }
        self.0.writer.wake();
        true
    }
}

impl Drop for OutboxSender {
    fn drop(&mut self) {
        self.0.state().sender_gone = true;
        self.0.writer.wake();
    }
}

impl std::fmt::Debug for OutboxSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboxSender")
    }
}

/// The writer's end.
pub(super) struct OutboxReceiver(Arc<Shared>);

impl OutboxReceiver {
    /// The next message, in order; `None` once the sender is gone and
    /// every message it queued has been taken.
    pub(super) async fn recv(&mut self) -> Option<Outgoing> {
        poll_fn(|cx| {
            let mut state = self.0.state();
            if let Some(message) = state.queue.pop_front() {
                return Poll::Ready(Some(message));
            }
            if state.sender_gone {
                return Poll::Ready(None);
            }
            if state.queue.capacity() > 0 {
                state.queue = VecDeque::new();
            }
            // Registered under the lock: a message queued after it wakes us.
            self.0.writer.register(cx.waker());
            Poll::Pending
        })
        .await
    }
}

impl OutboxReceiver {
    /// Keeps the permit of the Identify just written until the gateway
    /// answers (or the connection ends).
    pub(super) fn identify_written(&self, permit: IdentifyPermit) {
        let previous = self.0.state().written_identify.replace(permit.written());
        // A second Identify on one connection: the first one's answer
        // cannot come later than now.
        drop(previous);
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.receiver_gone = true;
        state.queue = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::outbox;
    use crate::identify::{IdentifyPermit, PermitReport};
    use actix_http::ws::Message;
    use discore_protocol::ShardId;
    use futures_util::FutureExt as _;
    use std::time::{Duration, Instant};

    #[actix_rt::test]
    async fn messages_arrive_in_order_then_the_end() {
        let (sender, mut receiver) = outbox();
        assert!(receiver.recv().now_or_never().is_none(), "nothing yet");
        assert!(sender.send(Message::Text("one".into())));
        assert!(sender.send(Message::Text("two".into())));
        let next = |o: Option<super::Outgoing>| o.map(|o| o.message);
        assert!(matches!(next(receiver.recv().await), Some(Message::Text(t)) if t == "one"));
        assert!(matches!(next(receiver.recv().await), Some(Message::Text(t)) if t == "two"));
        assert!(sender.send(Message::Text("three".into())));
        drop(sender);
        assert!(matches!(next(receiver.recv().await), Some(Message::Text(t)) if t == "three"));
        assert!(receiver.recv().await.is_none());
    }

    #[actix_rt::test]
    async fn a_waiting_writer_is_woken_and_a_gone_writer_refuses() {
        let (sender, mut receiver) = outbox();
        let waiting = actix_rt::spawn(async move {
            let first = receiver.recv().await.map(|o| o.message);
            (first, receiver)
        });
        actix_rt::task::yield_now().await;
        assert!(sender.send(Message::Ping("p".into())));
        let (first, receiver) = waiting.await.expect("the writer ran");
        assert!(matches!(first, Some(Message::Ping(_))));
        drop(receiver);
        assert!(!sender.send(Message::Text("late".into())));
    }

    /// Records what a permit reported.
    struct Recorder(std::sync::mpsc::Sender<Option<Instant>>);

    impl PermitReport for Recorder {
        fn sent(self: Box<Self>, at: Instant) {
            let _ = self.0.send(Some(at));
        }
        fn unused(self: Box<Self>) {
            let _ = self.0.send(None);
        }
    }

    fn recorded_permit() -> (IdentifyPermit, std::sync::mpsc::Receiver<Option<Instant>>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let permit = IdentifyPermit::new(
            ShardId::new(0, 1),
            Instant::now() + Duration::from_secs(60),
            Box::new(Recorder(tx)),
        );
        (permit, rx)
    }

    #[test]
    fn a_written_identify_counts_as_sent_when_answered() {
        let (sender, receiver) = outbox();
        let (permit, reports) = recorded_permit();
        receiver.identify_written(permit);
        assert!(reports.try_recv().is_err(), "nothing before the answer");
        let answer = Instant::now() + Duration::from_millis(250);
        sender.identify_answered(answer);
        assert_eq!(reports.try_recv().ok(), Some(Some(answer)));
        // A second answer (READY after an earlier one) reports nothing.
        sender.identify_answered(Instant::now());
        assert!(reports.try_recv().is_err());
    }

    #[test]
    fn an_unanswered_identify_counts_as_sent_when_the_connection_ends() {
        let (sender, receiver) = outbox();
        let (permit, reports) = recorded_permit();
        receiver.identify_written(permit);
        let before_end = Instant::now();
        drop(receiver);
        assert!(reports.try_recv().is_err(), "the shard still holds it");
        drop(sender);
        let reported = reports.try_recv().expect("reported at the end");
        assert!(
            matches!(reported, Some(at) if at >= before_end),
            "{reported:?}"
        );
    }
}
