//! The identify queue (`docs/protocol.md`, "Identify rate limits"): one
//! Identify per bucket `shard_id % max_concurrency` per window, and the daily
//! session budget.
//!
//! Discord judges the window by when it *receives* each Identify, so a
//! queue spaces Identifies by when they were *sent*, not by when it let a
//! shard go: a shard's connection set-up, a busy process or a slow socket
//! would otherwise push one Identify late and bring it within a window of
//! the next. Even the moment of writing is too early: a written frame can
//! wait in buffers, on the network and in the gateway's own queue before
//! it is stamped. A shard therefore reports an Identify sent when the
//! gateway *answers* it (READY, an Invalid Session, or the connection's
//! end), the latest moment the stamp can have been made.
//!
//! A shard that will identify first takes a [`ConnectTurn`]: a queue lets
//! only a few shards per bucket (those next in line) hold a connection
//! open while they wait, rather than every shard of a fleet start.
//!
//! A grant is an [`IdentifyPermit`] that the shard reports back on: sent
//! (at what time), or unused (its connection closed before the write),
//! which gives the slot back. A permit is good for a bounded time
//! ([`PERMIT_ANSWER_TIMEOUT`] by default); a queue that hears nothing by
//! then treats it as sent at its expiry, and still honours a later report.

mod in_memory;
mod permit;
mod shared;
mod turn;

pub use in_memory::{InMemoryIdentifyQueue, SessionStartLimit};
pub(crate) use permit::WrittenIdentify;
pub use permit::{IdentifyPermit, PermitReport};
pub use shared::default_queue_for;
pub use turn::{ConnectTurn, ConnectTurnFuture};

use discore_protocol::ShardId;
use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

/// Added to the window between the answer to one Identify of a bucket and
/// the next Identify. The answer already follows Discord's stamp, so the
/// margin only absorbs a gateway clock that counts whole milliseconds and
/// rounds its stamps (one stamp rounded down, the next up): one millisecond.
/// Every millisecond here is paid once per window of a fleet start (63
/// times for 1,000 shards at max_concurrency 16).
pub const IDENTIFY_MARGIN: Duration = Duration::from_millis(1);

/// How long a shard may hold a permit before sending Identify. Past it the
/// shard does not send (it asks again) and the queue treats the permit as
/// sent at its expiry, so a lost report costs time, never an overrun; a
/// report that comes later (a slow answer) still pushes the bucket's next
/// slot back.
pub const PERMIT_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// A future the identify queue returns.
pub type IdentifyFuture = Pin<Box<dyn Future<Output = IdentifyPermit> + Send + 'static>>;

/// Decides when a shard may identify. Shared by every shard of a bot (and,
/// with a distributed implementation, by every process).
///
/// Resumes never go through the queue. Implementations pass the
/// conformance suite in `discore_manager::identify::conformance`.
pub trait IdentifyQueue: Send + Sync + fmt::Debug + 'static {
    /// Resolves when `shard` may send Identify, with the permit to report
    /// on. A request's place in its bucket's line is taken when `acquire`
    /// is called, not when the future is first polled. Callers that no
    /// longer need the slot drop the future (or the permit).
    fn acquire(&self, shard: ShardId) -> IdentifyFuture;

    /// Resolves when `shard` may open a connection on which it will
    /// identify. The shard holds the [`ConnectTurn`] until the gateway
    /// answers its Identify or the connection ends. A queue paces
    /// connections with it, so that of the shards waiting for a slot only
    /// those close to it hold a connection open; the default lets every
    /// shard connect at once.
    fn connect_turn(&self, shard: ShardId) -> ConnectTurnFuture {
        let _ = shard;
        Box::pin(std::future::ready(ConnectTurn::unlimited()))
    }
}

impl<Q: IdentifyQueue + ?Sized> IdentifyQueue for Arc<Q> {
    fn acquire(&self, shard: ShardId) -> IdentifyFuture {
        (**self).acquire(shard)
    }
}
