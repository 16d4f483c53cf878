//! Leave to open a connection that will identify.

use std::{fmt, future::Future, pin::Pin};

/// A future the identify queue returns for a connect turn.
pub type ConnectTurnFuture = Pin<Box<dyn Future<Output = ConnectTurn> + Send + 'static>>;

/// Leave to open a connection on which a shard will identify, held until
/// the gateway answers that Identify or the connection ends; dropping it
/// lets the next shard of the bucket connect.
///
/// A shard waits for its identify slot on an open connection. Queues hand
/// out turns so that only the shards close to their slot hold one (see
/// [`IdentifyQueue::connect_turn`](super::IdentifyQueue::connect_turn)).
#[must_use = "dropping a turn lets the next shard connect"]
pub struct ConnectTurn {
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl ConnectTurn {
    /// A turn that runs `release` when it is given back.
    pub fn new(release: impl FnOnce() + Send + 'static) -> Self {
        Self {
            release: Some(Box::new(release)),
        }
    }

    /// A turn that nothing counts: the shard connects at once.
    pub fn unlimited() -> Self {
        Self { release: None }
    }
}

impl fmt::Debug for ConnectTurn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectTurn")
            .field("counted", &self.release.is_some())
            .finish()
    }
}

impl Drop for ConnectTurn {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}
