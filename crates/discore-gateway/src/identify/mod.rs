//! The identify queue (`docs/protocol.md`, "Identify rate limits"): one
//! Identify per bucket `shard_id % max_concurrency` per window, and the daily
//! session budget.
//!
//! Discord judges the window by when each Identify *arrives*, so a queue
//! spaces Identifies by when they were *sent*, not by when it let a shard
//! go: a shard's connection set-up, a busy process or a slow socket would
//! otherwise push one Identify late and bring it within a window of the
//! next. A grant is therefore an [`IdentifyPermit`] that the shard reports
//! back on: sent (at what time), or unused (its connection closed first),
//! which gives the slot back. A permit is good for a bounded time
//! ([`PERMIT_ANSWER_TIMEOUT`] by default); a queue that hears nothing by
//! then treats it as sent at its expiry.

mod in_memory;
mod permit;
mod shared;

pub use in_memory::{InMemoryIdentifyQueue, SessionStartLimit};
pub use permit::{IdentifyPermit, PermitReport};
pub use shared::default_queue_for;

use discore_protocol::ShardId;
use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

/// Added to the window between two Identifies of a bucket, as sent. It
/// absorbs what lies between the shard's record of a send and Discord's
/// receipt: the socket write, the loopback or network hop, and the
/// scheduling of the reading side. `docs/performance.md` ("Cold start")
/// has the measurement behind it.
pub const IDENTIFY_MARGIN: Duration = Duration::from_millis(2);

/// How long a shard may hold a permit before sending Identify. Past it the
/// shard does not send (it asks again) and the queue treats the permit as
/// sent at its expiry, so a lost report costs time, never an overrun.
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
}

impl<Q: IdentifyQueue + ?Sized> IdentifyQueue for Arc<Q> {
    fn acquire(&self, shard: ShardId) -> IdentifyFuture {
        (**self).acquire(shard)
    }
}
