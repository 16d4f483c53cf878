//! The grant of an identify queue, and the report it owes the queue.

use discore_protocol::ShardId;
use std::{fmt, time::Instant};

/// What the queue that granted a permit is told about it. Called once,
/// from whichever thread used or dropped the permit; it must not block.
pub trait PermitReport: Send + 'static {
    /// Identify was sent at `at`: the moment the gateway's answer arrived,
    /// after which Discord cannot have stamped it. It may come after the
    /// permit expired.
    fn sent(self: Box<Self>, at: Instant);
    /// The permit was not used (the connection closed first, or the permit
    /// expired): the slot goes back to the queue.
    fn unused(self: Box<Self>);
}

/// Leave to send one Identify, until [`IdentifyPermit::expires_at`].
///
/// Report the send with [`IdentifyPermit::sent`]; dropping the permit
/// unsent gives the slot back to the queue.
#[must_use = "a permit dropped unsent gives its slot back"]
pub struct IdentifyPermit {
    shard: ShardId,
    expires_at: Instant,
    report: Option<Box<dyn PermitReport>>,
}

impl fmt::Debug for IdentifyPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentifyPermit")
            .field("shard", &self.shard)
            .field("expires_at", &self.expires_at)
            .field("reported", &self.report.is_none())
            .finish()
    }
}

impl IdentifyPermit {
    /// A permit for `shard`, good until `expires_at`, that reports to
    /// `report`.
    pub fn new(shard: ShardId, expires_at: Instant, report: Box<dyn PermitReport>) -> Self {
        Self {
            shard,
            expires_at,
            report: Some(report),
        }
    }

    /// A permit nobody needs to hear about (a queue that spaces nothing,
    /// such as a test's or a benchmark's unlimited one).
    pub fn unreported(shard: ShardId, expires_at: Instant) -> Self {
        Self {
            shard,
            expires_at,
            report: None,
        }
    }

    /// The shard it was granted to.
    pub const fn shard(&self) -> ShardId {
        self.shard
    }

    /// After this the permit must not be used.
    pub const fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Whether Identify may still go out at `now`.
    pub fn is_usable(&self, now: Instant) -> bool {
        now < self.expires_at
    }

    /// Reports that Identify was sent at `at`: the latest moment the
    /// gateway can have received it.
    pub fn sent(mut self, at: Instant) {
        if let Some(report) = self.report.take() {
            report.sent(at);
        }
    }

    /// The Identify went out on a socket; the permit waits for the
    /// gateway's answer (see [`WrittenIdentify`]).
    pub(crate) const fn written(self) -> WrittenIdentify {
        WrittenIdentify { permit: Some(self) }
    }
}

impl Drop for IdentifyPermit {
    fn drop(&mut self) {
        if let Some(report) = self.report.take() {
            report.unused();
        }
    }
}

/// The permit of an Identify that was written to the socket, until the
/// gateway answers it.
///
/// A written frame can wait in socket buffers, on the network and in the
/// gateway's own queue before Discord stamps it, and that wait cannot be
/// seen from here. Its answer (READY, an Invalid Session, or the end of the
/// connection) can only come after the stamp, so the time the answer
/// arrives is reported as the send: the next Identify of the bucket then
/// follows the stamp by at least the window, whatever the wait was.
/// Dropped unanswered (the connection went away), it reports the drop's
/// time, which is also after any stamp the gateway can still make.
pub(crate) struct WrittenIdentify {
    permit: Option<IdentifyPermit>,
}

impl WrittenIdentify {
    /// The gateway answered at `at`.
    pub(crate) fn answered(mut self, at: Instant) {
        if let Some(permit) = self.permit.take() {
            permit.sent(at);
        }
    }
}

impl Drop for WrittenIdentify {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            permit.sent(Instant::now());
        }
    }
}
