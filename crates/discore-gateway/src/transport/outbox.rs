//! The queue from a shard to its connection's writer task.
//!
//! A tokio channel allocates a block of 32 message slots when it is
//! created, and an idle connection would keep that block (about 1.3 KiB)
//! for its whole life to send one heartbeat every ~41 s. This queue holds
//! memory only while messages wait: its room is let go once it is drained.

use crate::identify::IdentifyPermit;
use actix_http::ws::Message;
use futures_util::task::AtomicWaker;
use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::{Arc, Mutex, PoisonError},
    task::Poll,
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
    use actix_http::ws::Message;
    use futures_util::FutureExt as _;

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
}
