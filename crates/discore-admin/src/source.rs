//! Where the admin server gets its data: a [`StatusSource`].
//!
//! [`ManagerSource`] asks a `ShardManager`, [`ShardSource`] asks shards that
//! run on their own, and any `Fn() -> impl Future<Output = Result<FleetSnapshot,
//! SourceError>>` is a source too (a cluster view, a test fixture).

use crate::{error::SourceError, identify::IdentifyMeter, snapshot::FleetSnapshot};
use actix::{Actor, Addr, Context, Handler};
use discore_gateway::{GetShardStatus, Lifecycle, Shard, ShardLifecycle, SubscribeLifecycle};
use discore_manager::{GetFleetStatus, ShardManager};
use futures_util::future::join_all;
use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

/// What a [`StatusSource`] returns.
pub type SnapshotFuture = Pin<Box<dyn Future<Output = Result<FleetSnapshot, SourceError>> + Send>>;

/// Gives the admin server a fresh [`FleetSnapshot`] when it asks (on every
/// scrape or page refresh, at most every `AdminConfig::min_refresh`).
pub trait StatusSource: Send + Sync + 'static {
    /// The current state of the shards.
    fn snapshot(&self) -> SnapshotFuture;
}

impl<F, Fut> StatusSource for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<FleetSnapshot, SourceError>> + Send + 'static,
{
    fn snapshot(&self) -> SnapshotFuture {
        Box::pin(self())
    }
}

/// Reconnects by kind, per shard `(id, total)`, counted from lifecycle
/// notifications: exact, and monotonic across shard restarts.
#[derive(Clone, Debug, Default)]
struct ReconnectCounts(Arc<Mutex<Counts>>);

/// Per shard `(id, total)`: reconnects that resumed, and that started a new
/// session.
type Counts = HashMap<(u32, u32), (u64, u64)>;

impl ReconnectCounts {
    /// Puts the counts into the snapshot's shards.
    fn apply(&self, snapshot: &mut FleetSnapshot) {
        let Ok(counts) = self.0.lock() else {
            return;
        };
        for shard in &mut snapshot.shards {
            let (resumed, new_session) = counts
                .get(&(shard.id, shard.total))
                .copied()
                .unwrap_or_default();
            shard.reconnects_resumed = resumed;
            shard.reconnects_new_session = new_session;
        }
    }
}

/// Counts `Lifecycle::Reconnected` per shard and kind.
struct LifecycleTap(ReconnectCounts);

impl Actor for LifecycleTap {
    type Context = Context<Self>;
}

impl Handler<ShardLifecycle> for LifecycleTap {
    type Result = ();

    /// Counts a reconnect.
    fn handle(&mut self, message: ShardLifecycle, _: &mut Context<Self>) {
        let Lifecycle::Reconnected { resumed } = message.event else {
            return;
        };
        if let Ok(mut counts) = (self.0).0.lock() {
            let entry = counts
                .entry((message.shard.number(), message.shard.total()))
                .or_default();
            if resumed {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
    }
}

/// Subscribes a tap to lifecycles with `subscribe` and returns its counts.
fn tap(subscribe: impl FnOnce(actix::Recipient<ShardLifecycle>)) -> ReconnectCounts {
    let counts = ReconnectCounts::default();
    let tap = LifecycleTap(counts.clone()).start();
    subscribe(tap.recipient());
    counts
}

/// The fleet of a `ShardManager`, asked with `GetFleetStatus`.
///
/// Creating it subscribes to the manager's shard lifecycles (to count
/// reconnects by kind), so it must be created inside an actix system.
#[derive(Clone, Debug)]
pub struct ManagerSource {
    manager: Addr<ShardManager>,
    identify: Option<Arc<IdentifyMeter>>,
    reconnects: ReconnectCounts,
}

impl ManagerSource {
    /// The fleet of `manager`.
    pub fn new(manager: Addr<ShardManager>) -> Self {
        let reconnects = tap(|recipient| manager.do_send(SubscribeLifecycle(recipient)));
        Self {
            manager,
            identify: None,
            reconnects,
        }
    }

    /// Also publishes the identify queue's numbers, from the meter of the
    /// [`MeteredIdentifyQueue`](crate::MeteredIdentifyQueue) the manager
    /// uses. Default: none.
    #[must_use]
    pub fn identify_meter(mut self, meter: Arc<IdentifyMeter>) -> Self {
        self.identify = Some(meter);
        self
    }
}

impl StatusSource for ManagerSource {
    fn snapshot(&self) -> SnapshotFuture {
        let request = self.manager.send(GetFleetStatus);
        let identify = self.identify.clone();
        let reconnects = self.reconnects.clone();
        Box::pin(async move {
            let status = request.await.map_err(|_| SourceError::Gone)?;
            let mut snapshot = FleetSnapshot::from_fleet(&status);
            snapshot.identify = identify.map(|meter| meter.snapshot());
            reconnects.apply(&mut snapshot);
            Ok(snapshot)
        })
    }
}

/// Shards that run on their own (without a manager), asked with
/// `GetShardStatus`. Shards that stopped are left out.
///
/// Creating it subscribes to the shards' lifecycles (to count reconnects by
/// kind), so it must be created inside an actix system.
#[derive(Clone, Debug)]
pub struct ShardSource {
    shards: Vec<Addr<Shard>>,
    reconnects: ReconnectCounts,
}

impl ShardSource {
    /// These shards.
    pub fn new(shards: Vec<Addr<Shard>>) -> Self {
        let reconnects = tap(|recipient| {
            for shard in &shards {
                shard.do_send(SubscribeLifecycle(recipient.clone()));
            }
        });
        Self { shards, reconnects }
    }
}

impl StatusSource for ShardSource {
    fn snapshot(&self) -> SnapshotFuture {
        let requests = join_all(self.shards.iter().map(|s| s.send(GetShardStatus)));
        let reconnects = self.reconnects.clone();
        Box::pin(async move {
            let statuses: Vec<_> = requests.await.into_iter().flatten().collect();
            let mut snapshot = FleetSnapshot::from_shards(&statuses);
            reconnects.apply(&mut snapshot);
            Ok(snapshot)
        })
    }
}

/// A fixed snapshot: for tests and previews of the page.
impl StatusSource for FleetSnapshot {
    fn snapshot(&self) -> SnapshotFuture {
        let snapshot = self.clone();
        Box::pin(async move { Ok(snapshot) })
    }
}
