//! How a [`ClusterNode`](crate::ClusterNode) runs: the bot's manager
//! configuration, and what only a cluster node has (leases, checkpoints,
//! status, the event bus).

use crate::bus::EventBus;
use discore_manager::ManagerConfig;
use std::{fmt, ops::Range, time::Duration};

/// Which shards a node runs.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ShardAssignment {
    /// Exactly these shard ids (a Kubernetes StatefulSet pod's ordinal picks
    /// its range). The node waits for a lease another process still holds.
    Range(Range<u32>),
    /// A fair share of all shards among the live nodes: `total / nodes`,
    /// one more for the first `total % nodes` nodes by id. Nodes that join
    /// or leave make the others hand shards over (resumed, not identified).
    FairShare,
}

/// How a [`ClusterNode`](crate::ClusterNode) runs. Every setter documents
/// its default.
///
/// The node runs one [`ShardManager`](discore_manager::ShardManager) with
/// `manager`, the bot's configuration as a single process would have it:
/// token, intents, shard template, placement, supervision, subscribers, the
/// identify limits and the discovery settings. The node sets the rest,
/// which belongs to the cluster: the shard count
/// ([`ShardCount::Adopted`](discore_manager::ShardCount::Adopted): shards
/// come and go with the leases), re-sharding (the cluster's decision, so
/// the manager's own is disabled), the identify queue (the Redis queue
/// every process shares, built with the configured limits; a queue given
/// with `IdentifyConfig::queue` is used as it is), the session store (Redis,
/// fenced by the leases) and the event bus publisher.
///
/// ```
/// use discore_cluster::{NodeConfig, ShardAssignment};
/// use discore_gateway::{Intents, Token};
/// use discore_manager::ManagerConfig;
/// use std::time::Duration;
///
/// let token = Token::new("token").expect("valid");
/// let config = NodeConfig::new(ManagerConfig::new(token, Intents::GUILDS), 24)
///     .node_id("gateway-0")
///     .assignment(ShardAssignment::Range(0..8))
///     .lease_ttl(Duration::from_secs(10));
/// # drop(config);
/// ```
#[derive(Clone)]
#[must_use]
pub struct NodeConfig {
    pub(crate) manager: ManagerConfig,
    pub(crate) total: u32,
    pub(crate) assignment: ShardAssignment,
    pub(crate) node_id: String,
    pub(crate) lease_ttl: Duration,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) status_interval: Duration,
    pub(crate) bus: Option<EventBus>,
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("manager", &self.manager)
            .field("total", &self.total)
            .field("assignment", &self.assignment)
            .field("node_id", &self.node_id)
            .field("lease_ttl", &self.lease_ttl)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl NodeConfig {
    /// A node of the bot `manager` describes, whose fleet has `total`
    /// shards; it takes a fair share of them.
    pub fn new(manager: ManagerConfig, total: u32) -> Self {
        Self {
            manager,
            total: total.max(1),
            assignment: ShardAssignment::FairShare,
            node_id: default_node_id(),
            lease_ttl: Duration::from_secs(10),
            checkpoint_interval: Duration::from_secs(1),
            status_interval: Duration::from_secs(2),
            bus: None,
        }
    }

    /// Which shards. Default [`ShardAssignment::FairShare`].
    pub fn assignment(mut self, assignment: ShardAssignment) -> Self {
        self.assignment = assignment;
        self
    }

    /// The node's id: unique among the live nodes, stable names (a pod
    /// name) read best in the status. Default `HOSTNAME-PID-RANDOM`.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// The lease TTL: a dead node's shards are taken over this long after
    /// its last renewal. Leases are renewed every third of it, and a node
    /// that could not renew stops its shards when four fifths of it have
    /// passed. Default 10 s.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(100));
        self
    }

    /// How often sessions are checkpointed (all shards of the node in one
    /// Redis write). A take-over resumes from the last checkpoint and has
    /// the rest replayed. Default 1 s.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How often the node publishes its shards' status. Default 2 s.
    pub fn status_interval(mut self, interval: Duration) -> Self {
        self.status_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Publishes every event to `bus` and serves commands for the shards
    /// this node runs. Default: no bus.
    pub fn event_bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }
}

fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".to_owned());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}
