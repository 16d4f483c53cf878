//! How a fleet is started: [`ManagerConfig`] and the groups of settings it
//! is made of. Every setting of a group has a documented default
//! (`Default`), and no two settings can contradict each other: a choice
//! that excludes another is one enum, not two setters.

use crate::{
    error::ConfigError, event::FleetEvent, intensity::RestartPolicy, session_store::SessionStore,
};
use actix::{Recipient, dev::ArbiterHandle};
use discore_gateway::{
    EventFilter, GatewayEvent, IdentifyQueue, Intents, ShardConfig, ShardLifecycle, Token,
};
use discore_http::{BotConnectionInfo, DISCORD_API_URL};
use std::{ops::Range, sync::Arc, time::Duration};

/// Which shards this manager runs, out of how many.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub enum ShardCount {
    /// Every shard, as many as `GET /gateway/bot` recommends, or as many as
    /// a complete set of fresh saved sessions has (so a deploy resumes
    /// instead of re-sharding).
    #[default]
    Auto,
    /// Every shard of exactly this many.
    Fixed(u32),
    /// Only shards `ids` out of `total`: one process of a bot that runs in
    /// several. Re-sharding is a decision for every process together, so
    /// such a manager needs [`ReshardMode::Disabled`]
    /// ([`ConfigError::RangeReshards`] otherwise).
    Range {
        /// The shard ids this process runs.
        ids: Range<u32>,
        /// The bot's total shard count.
        total: u32,
    },
    /// No shard at start, out of `total`: shards join and leave at run time
    /// with [`AdoptShard`](crate::AdoptShard) and
    /// [`ReleaseShard`](crate::ReleaseShard) (a cluster node that follows
    /// its leases). Part of a bot, like [`ShardCount::Range`], so it needs
    /// [`ReshardMode::Disabled`].
    Adopted {
        /// The bot's total shard count.
        total: u32,
    },
}

impl ShardCount {
    /// The shard ids and total of a [`ShardCount::Range`].
    pub(crate) fn range(&self) -> Option<(Range<u32>, u32)> {
        match self {
            Self::Range { ids, total } => Some((ids.clone(), *total)),
            Self::Adopted { total } => Some((0..0, *total)),
            Self::Auto | Self::Fixed(_) => None,
        }
    }
}

/// What the manager does when the gateway says the shard count is wrong
/// (close code 4011 Sharding Required or 4010 Invalid Shard).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum ReshardMode {
    /// Start a fleet with the new count while the old one keeps serving,
    /// switch delivery when the new one is fully ready, stop the old one.
    #[default]
    ZeroDowntime,
    /// Stop every shard, then start the new fleet: simpler, but the bot is
    /// offline in between and events of that time are lost.
    StopTheWorld,
    /// Do not re-shard by itself: the failed shard stops and a
    /// [`FleetEvent::ReshardingRequired`] tells the operator, who may send
    /// [`Reshard`](crate::Reshard) (unless the manager runs a
    /// [`ShardCount::Range`]).
    Disabled,
}

/// Where the manager learns the gateway URL, the recommended shard count and
/// the identify limits: Discord's REST API (`GET /gateway/bot`), at start and
/// again when re-sharding.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// The REST API base URL, with its version. Default
    /// `https://discord.com/api/v10`; the emulator's is
    /// `http://127.0.0.1:PORT/api/v10`.
    pub rest_url: String,
    /// Requests per REST call when Discord answers 429 or 5xx. Default 3;
    /// 0 counts as 1.
    pub rest_attempts: u32,
    /// The answer of `GET /gateway/bot` to start with instead of asking
    /// (re-sharding still asks). Default `None`: ask.
    pub gateway_bot: Option<BotConnectionInfo>,
    /// The gateway URL shards connect to, instead of the one `GET
    /// /gateway/bot` answers (at start or when re-sharding). Default
    /// `None`.
    pub gateway_url: Option<String>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            rest_url: DISCORD_API_URL.to_owned(),
            rest_attempts: 3,
            gateway_bot: None,
            gateway_url: None,
        }
    }
}

impl DiscoveryConfig {
    /// Discovery through the REST API at `rest_url` (such as the
    /// emulator's), every other setting at its default.
    pub fn at(rest_url: impl Into<String>) -> Self {
        Self {
            rest_url: rest_url.into(),
            ..Self::default()
        }
    }
}

/// How shards are admitted to identify: the identify queue and the order in
/// which a launch asks it.
#[derive(Clone, Debug)]
pub struct IdentifyConfig {
    /// The queue. Default: an in-memory one with [`IdentifyLimits`]'
    /// defaults.
    pub queue: IdentifyQueueChoice,
    /// How long shards that reached the identify step wait for an earlier
    /// shard of the same launch that has not, before going ahead of it
    /// (shards ask the queue in id order). Default 5 s.
    pub order_timeout: Duration,
    /// How many shards per bucket a launch connects ahead of the one
    /// identifying. A launch keeps at most `max_concurrency × (1 +
    /// connect_ahead)` of its identifying shards connected and not yet
    /// READY, and starts the next one, in id order, as one becomes READY;
    /// shards that resume a saved session start at once. Default 1: a
    /// shard connects while the one before it in its bucket identifies,
    /// about a window before its slot. `u32::MAX` opens every connection
    /// at the start.
    pub connect_ahead: u32,
}

impl Default for IdentifyConfig {
    fn default() -> Self {
        Self::in_memory(IdentifyLimits::default())
    }
}

impl IdentifyConfig {
    /// An in-memory queue with these limits, the other settings at their
    /// defaults.
    pub fn in_memory(limits: IdentifyLimits) -> Self {
        Self {
            queue: IdentifyQueueChoice::InMemory(limits),
            order_timeout: Duration::from_secs(5),
            connect_ahead: 1,
        }
    }

    /// This queue (a distributed one shared by several processes, a metered
    /// one), the other settings at their defaults.
    pub fn queue(queue: Arc<dyn IdentifyQueue>) -> Self {
        Self {
            queue: IdentifyQueueChoice::Given(queue),
            order_timeout: Duration::from_secs(5),
            connect_ahead: 1,
        }
    }
}

/// The identify queue a manager uses.
#[derive(Clone, Debug)]
pub enum IdentifyQueueChoice {
    /// An in-memory queue for this process, sized from `GET /gateway/bot`
    /// (`max_concurrency` buckets, the daily budget with its reserve)
    /// unless the limits say otherwise.
    InMemory(IdentifyLimits),
    /// This queue; it alone decides when shards identify.
    Given(Arc<dyn IdentifyQueue>),
}

/// The limits of the in-memory identify queue.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct IdentifyLimits {
    /// The identify concurrency (buckets). Default `None`:
    /// `max_concurrency` from `GET /gateway/bot`. 0 counts as 1.
    pub max_concurrency: Option<u32>,
    /// One identify per bucket per this window. Default Discord's 5 s;
    /// tests against the emulator scale it down.
    pub window: Duration,
    /// Identifies of the daily budget the queue never spends (running out
    /// resets the bot's token). Default `None`: 5 % of the daily total, at
    /// least 1.
    pub reserve: Option<u32>,
}

impl Default for IdentifyLimits {
    fn default() -> Self {
        Self {
            max_concurrency: None,
            window: discore_protocol::limits::IDENTIFY_WINDOW,
            reserve: None,
        }
    }
}

/// Where shard actors run.
#[derive(Clone, Debug, Default)]
pub enum Placement {
    /// One arbiter (thread) per core, which the manager creates and stops.
    #[default]
    PerCore,
    /// This many arbiters, which the manager creates and stops. 0 counts as
    /// 1.
    Arbiters(usize),
    /// These arbiters, which the caller owns. Shard `n` goes to arbiter
    /// `n % len`; when one has stopped, its shards restart on the others.
    /// An empty list counts as [`Placement::PerCore`].
    Given(Vec<ArbiterHandle>),
}

/// How the manager watches its shards: restarts, progress, shutdown.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SupervisionConfig {
    /// How crashed shards are restarted. Default
    /// [`RestartPolicy::default`].
    pub restart: RestartPolicy,
    /// How often shard statuses are collected while a fleet is starting
    /// (for progress and readiness). Default 500 ms; at least 1 ms.
    pub status_interval: Duration,
    /// A shard counts as loaded this long after READY even if some guilds
    /// never arrived (they stayed unavailable). Default 60 s.
    pub guild_load_timeout: Duration,
    /// After a shutdown, how long the manager's own arbiters keep running
    /// so the shards' close frames reach the gateway. Default 500 ms.
    pub shutdown_grace: Duration,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        Self {
            restart: RestartPolicy::default(),
            status_interval: Duration::from_millis(500),
            guild_load_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_millis(500),
        }
    }
}

/// Where sessions are kept between two processes, so a deploy resumes
/// instead of identifying. Without one (the default) every start
/// identifies.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Where sessions are saved on a hand-off and loaded at start.
    pub store: Arc<dyn SessionStore>,
    /// Saved sessions older than this are not resumed (Discord would refuse
    /// them). Default 5 minutes.
    pub max_age: Duration,
    /// Also saves every session to the store this often, so a process that
    /// dies without a hand-off can still be resumed (it replays the events
    /// after the saved sequence). Default `None`: only on hand-off.
    pub checkpoint_interval: Option<Duration>,
}

impl SessionConfig {
    /// Sessions kept in `store`, the other settings at their defaults.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            max_age: Duration::from_secs(5 * 60),
            checkpoint_interval: None,
        }
    }
}

/// What the manager does when the gateway says the shard count is wrong
/// (close code 4011 Sharding Required or 4010 Invalid Shard), and how a
/// zero-downtime re-sharding goes.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ReshardConfig {
    /// Default [`ReshardMode::ZeroDowntime`]; a [`ShardCount::Range`] needs
    /// [`ReshardMode::Disabled`].
    pub mode: ReshardMode,
    /// Events each shard of the old fleet remembers during a zero-downtime
    /// re-sharding, to recognise them when the new fleet receives them too.
    /// Default 100,000 (at least 1); when it overflows, some events may be
    /// delivered twice.
    pub history: usize,
    /// After the switch, how long the new fleet keeps checking its events
    /// against what the old fleet delivered. Default 60 s.
    pub alignment_window: Duration,
    /// At the switch, how long an old shard may take to catch up with the
    /// new fleet (to deliver what was sent before the new sessions began)
    /// before delivery switches anyway. Default 10 s.
    pub drain_timeout: Duration,
    /// Re-sharding attempts in a row (a new fleet that fails, or a count
    /// that did not change) before giving up with a notification. Default
    /// 5; 0 counts as 1.
    pub attempts: u32,
    /// The wait between two attempts. Default 30 s.
    pub retry_delay: Duration,
}

impl Default for ReshardConfig {
    fn default() -> Self {
        Self::from(ReshardMode::default())
    }
}

impl From<ReshardMode> for ReshardConfig {
    /// Re-sharding in `mode`, the other settings at their defaults.
    fn from(mode: ReshardMode) -> Self {
        Self {
            mode,
            history: 100_000,
            alignment_window: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
            attempts: 5,
            retry_delay: Duration::from_secs(30),
        }
    }
}

/// Everything a [`ShardManager`](crate::ShardManager) needs: the bot, then
/// one group of settings per concern, each with its defaults.
///
/// ```
/// use discore_manager::{DiscoveryConfig, IdentifyConfig, IdentifyLimits, ManagerConfig, ShardCount};
/// use discore_protocol::{Intents, Token};
/// use std::time::Duration;
///
/// let token = Token::new("token").expect("valid");
/// let config = ManagerConfig::new(token, Intents::GUILDS | Intents::GUILD_MESSAGES)
///     .shard_count(ShardCount::Fixed(4))
///     .discovery(DiscoveryConfig::at("http://127.0.0.1:3000/api/v10"))
///     .identify(IdentifyConfig::in_memory(IdentifyLimits {
///         window: Duration::from_millis(100),
///         ..IdentifyLimits::default()
///     }));
/// # drop(config);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ManagerConfig {
    pub(crate) token: Token,
    pub(crate) intents: Intents,
    pub(crate) shard_count: ShardCount,
    pub(crate) discovery: DiscoveryConfig,
    pub(crate) identify: IdentifyConfig,
    pub(crate) shard_config: ShardConfig,
    pub(crate) placement: Placement,
    pub(crate) supervision: SupervisionConfig,
    pub(crate) sessions: Option<SessionConfig>,
    pub(crate) resharding: ReshardConfig,
    pub(crate) subscribers: Subscribers,
}

/// The recipients a configuration starts the fleet with.
#[derive(Clone, Default)]
pub(crate) struct Subscribers {
    pub(crate) events: Vec<(Recipient<GatewayEvent>, EventFilter)>,
    pub(crate) lifecycle: Vec<Recipient<ShardLifecycle>>,
    pub(crate) fleet: Vec<Recipient<FleetEvent>>,
}

impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribers")
            .field("events", &self.events.len())
            .field("lifecycle", &self.lifecycle.len())
            .field("fleet", &self.fleet.len())
            .finish()
    }
}

impl ManagerConfig {
    /// A fleet of this bot with these intents and every other setting at
    /// its default.
    pub fn new(token: Token, intents: Intents) -> Self {
        Self {
            shard_config: ShardConfig::new(intents),
            token,
            intents,
            shard_count: ShardCount::Auto,
            discovery: DiscoveryConfig::default(),
            identify: IdentifyConfig::default(),
            placement: Placement::PerCore,
            supervision: SupervisionConfig::default(),
            sessions: None,
            resharding: ReshardConfig::default(),
            subscribers: Subscribers::default(),
        }
    }

    /// Which shards this manager runs. Default [`ShardCount::Auto`].
    pub fn shard_count(mut self, count: ShardCount) -> Self {
        self.shard_count = count;
        self
    }

    /// Where the gateway is discovered. Default
    /// [`DiscoveryConfig::default`]: Discord's REST API.
    pub fn discovery(mut self, discovery: DiscoveryConfig) -> Self {
        self.discovery = discovery;
        self
    }

    /// The identify queue and its order. Default
    /// [`IdentifyConfig::default`]: an in-memory queue sized from `GET
    /// /gateway/bot`.
    pub fn identify(mut self, identify: IdentifyConfig) -> Self {
        self.identify = identify;
        self
    }

    /// The template every shard's configuration starts from: compression,
    /// timeouts, rate limits, backoff, presence. The manager sets the
    /// intents, gateway URL, identify queue and session itself. Default
    /// `ShardConfig::new(intents)`.
    pub fn shard_config(mut self, template: ShardConfig) -> Self {
        self.shard_config = template;
        self
    }

    /// Where shard actors run. Default [`Placement::PerCore`].
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Restarts, progress collection and shutdown. Default
    /// [`SupervisionConfig::default`].
    pub fn supervision(mut self, supervision: SupervisionConfig) -> Self {
        self.supervision = supervision;
        self
    }

    /// Keeps sessions in a store across processes. Default: none, every
    /// start identifies.
    pub fn sessions(mut self, sessions: SessionConfig) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// What a 4011 or 4010 close leads to: a [`ReshardMode`] (the other
    /// settings at their defaults) or a whole [`ReshardConfig`]. Default
    /// [`ReshardMode::ZeroDowntime`].
    pub fn resharding(mut self, resharding: impl Into<ReshardConfig>) -> Self {
        self.resharding = resharding.into();
        self
    }

    /// Delivers the events `filter` selects to `recipient`. More can be
    /// added and removed at run time with `Subscribe` and `Unsubscribe`.
    pub fn subscribe(mut self, recipient: Recipient<GatewayEvent>, filter: EventFilter) -> Self {
        self.subscribers.events.push((recipient, filter));
        self
    }

    /// Tells `recipient` about every shard's lifecycle.
    pub fn subscribe_lifecycle(mut self, recipient: Recipient<ShardLifecycle>) -> Self {
        self.subscribers.lifecycle.push(recipient);
        self
    }

    /// Tells `recipient` about the fleet: progress, readiness, restarts,
    /// failures, re-sharding.
    pub fn subscribe_fleet(mut self, recipient: Recipient<FleetEvent>) -> Self {
        self.subscribers.fleet.push(recipient);
        self
    }

    /// The bot's token, for a caller that builds on this configuration (a
    /// cluster node asks `GET /gateway/bot` once for all its shards).
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// Where the gateway is discovered.
    pub fn discovery_settings(&self) -> &DiscoveryConfig {
        &self.discovery
    }

    /// The identify queue and its order (a cluster node builds its shared
    /// queue with these limits).
    pub fn identify_settings(&self) -> &IdentifyConfig {
        &self.identify
    }

    /// The session settings, if sessions are kept.
    pub fn session_settings(&self) -> Option<&SessionConfig> {
        self.sessions.as_ref()
    }

    /// The configuration with every "counts as" of the documentation
    /// applied, so the manager uses the values as they are.
    pub(crate) fn normalized(mut self) -> Self {
        self.discovery.rest_attempts = self.discovery.rest_attempts.max(1);
        if let IdentifyQueueChoice::InMemory(limits) = &mut self.identify.queue {
            limits.max_concurrency = limits.max_concurrency.map(|max| max.max(1));
        }
        self.placement = match self.placement {
            Placement::Arbiters(count) => Placement::Arbiters(count.max(1)),
            Placement::Given(handles) if handles.is_empty() => Placement::PerCore,
            placement => placement,
        };
        let supervision = &mut self.supervision;
        supervision.status_interval = supervision.status_interval.max(Duration::from_millis(1));
        self.resharding.history = self.resharding.history.max(1);
        self.resharding.attempts = self.resharding.attempts.max(1);
        self
    }

    /// Rejects a configuration that cannot work.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match &self.shard_count {
            ShardCount::Fixed(0) | ShardCount::Adopted { total: 0 } => {
                return Err(ConfigError::NoShards);
            }
            ShardCount::Adopted { total } => {
                if self.resharding.mode != ReshardMode::Disabled {
                    return Err(ConfigError::RangeReshards {
                        ids: 0..0,
                        total: *total,
                        mode: self.resharding.mode,
                    });
                }
            }
            ShardCount::Range { ids, total } => {
                if *total == 0 || ids.is_empty() || ids.end > *total {
                    return Err(ConfigError::RangeOutsideTotal {
                        ids: ids.clone(),
                        total: *total,
                    });
                }
                if self.resharding.mode != ReshardMode::Disabled {
                    return Err(ConfigError::RangeReshards {
                        ids: ids.clone(),
                        total: *total,
                        mode: self.resharding.mode,
                    });
                }
            }
            ShardCount::Auto | ShardCount::Fixed(_) => {}
        }
        if let Some(url) = &self.discovery.gateway_url {
            let host = url
                .strip_prefix("wss://")
                .or_else(|| url.strip_prefix("ws://"))
                .map(|rest| rest.split(['/', '?']).next().unwrap_or_default());
            if host.is_none_or(str::is_empty) {
                return Err(ConfigError::GatewayUrl(url.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{ManagerConfig, ReshardMode, ShardCount};
    use crate::error::ConfigError;
    use discore_gateway::{Intents, Token};

    fn config() -> ManagerConfig {
        ManagerConfig::new(Token::new("token").expect("valid"), Intents::GUILDS)
    }

    #[test]
    fn a_range_must_not_reshard_by_itself() {
        let range = ShardCount::Range {
            ids: 0..2,
            total: 4,
        };
        let error = config()
            .shard_count(range.clone())
            .validate()
            .expect_err("a range re-sharding by itself is refused");
        assert!(matches!(
            error,
            ConfigError::RangeReshards {
                mode: ReshardMode::ZeroDowntime,
                ..
            }
        ));
        config()
            .shard_count(range)
            .resharding(ReshardMode::Disabled)
            .validate()
            .expect("a range that does not re-shard is fine");
    }

    #[test]
    fn impossible_counts_and_urls_are_refused() {
        let range_of = |ids: std::ops::Range<u32>, total| {
            config()
                .shard_count(ShardCount::Range {
                    ids: ids.clone(),
                    total,
                })
                .resharding(ReshardMode::Disabled)
                .validate()
                .err()
        };
        assert_eq!(
            range_of(3..3, 4),
            Some(ConfigError::RangeOutsideTotal {
                ids: 3..3,
                total: 4
            })
        );
        assert_eq!(
            range_of(2..6, 4),
            Some(ConfigError::RangeOutsideTotal {
                ids: 2..6,
                total: 4
            })
        );
        assert_eq!(
            range_of(0..4, 0),
            Some(ConfigError::RangeOutsideTotal {
                ids: 0..4,
                total: 0
            })
        );
        assert_eq!(range_of(2..4, 4), None);
        assert_eq!(
            config().shard_count(ShardCount::Fixed(0)).validate(),
            Err(ConfigError::NoShards)
        );
        let url = config().discovery(super::DiscoveryConfig {
            gateway_url: Some("http://not-a-websocket".into()),
            ..super::DiscoveryConfig::default()
        });
        assert_eq!(
            url.validate(),
            Err(ConfigError::GatewayUrl("http://not-a-websocket".into()))
        );
    }
}
