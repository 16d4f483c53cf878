//! How a fleet is started: [`ManagerConfig`].

use crate::{event::FleetEvent, intensity::RestartPolicy, session_store::SessionStore};
use actix::{Recipient, dev::ArbiterHandle};
use discore_gateway::{
    EventFilter, GatewayEvent, Intents, ShardConfig, ShardLifecycle, Token, identify::IdentifyQueue,
};
use discore_http::{BotConnectionInfo, DISCORD_API_URL};
use std::{fmt, ops::Range, sync::Arc, time::Duration};

/// How many shards the whole bot runs.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum ShardCount {
    /// The count `GET /gateway/bot` recommends, or the count of a complete
    /// set of fresh saved sessions (so a deploy resumes instead of
    /// re-sharding).
    #[default]
    Auto,
    /// Exactly this many.
    Fixed(u32),
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
    /// Do not re-shard: the failed shard stops and a
    /// [`FleetEvent::ReshardingRequired`] tells the operator. Managers that
    /// run a range of shard ids always behave this way, since re-sharding is
    /// a decision for all processes together.
    Disabled,
}

/// Where shard actors run.
#[derive(Clone, Debug)]
pub(crate) enum Placement {
    /// One arbiter per core (or this many), owned by the manager.
    Owned(Option<usize>),
    /// These arbiters, owned by the caller.
    Given(Vec<ArbiterHandle>),
}

/// Everything a [`ShardManager`](crate::ShardManager) needs. Every setter
/// documents its default.
///
/// ```
/// use discore_manager::{ManagerConfig, ShardCount};
/// use discore_protocol::{Intents, Token};
/// use std::time::Duration;
///
/// let token = Token::new("token").expect("valid");
/// let config = ManagerConfig::new(token, Intents::GUILDS | Intents::GUILD_MESSAGES)
///     .shard_count(ShardCount::Fixed(4))
///     .rest_url("http://127.0.0.1:3000/api/v10")
///     .identify_window(Duration::from_millis(100));
/// # drop(config);
/// ```
#[derive(Clone)]
#[must_use]
pub struct ManagerConfig {
    pub(crate) token: Token,
    pub(crate) intents: Intents,
    pub(crate) shard_count: ShardCount,
    pub(crate) range: Option<(Range<u32>, u32)>,
    pub(crate) rest_url: String,
    pub(crate) rest_attempts: u32,
    pub(crate) gateway_info: Option<BotConnectionInfo>,
    pub(crate) gateway_url: Option<String>,
    pub(crate) max_concurrency: Option<u32>,
    pub(crate) identify_window: Duration,
    pub(crate) identify_reserve: Option<u32>,
    pub(crate) identify_queue: Option<Arc<dyn IdentifyQueue>>,
    pub(crate) identify_order_timeout: Duration,
    pub(crate) shard_config: ShardConfig,
    pub(crate) placement: Placement,
    pub(crate) restart: RestartPolicy,
    pub(crate) session_store: Option<Arc<dyn SessionStore>>,
    pub(crate) session_max_age: Duration,
    pub(crate) checkpoint_interval: Option<Duration>,
    pub(crate) resharding: ReshardMode,
    pub(crate) reshard_history: usize,
    pub(crate) alignment_window: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) reshard_attempts: u32,
    pub(crate) reshard_retry_delay: Duration,
    pub(crate) status_interval: Duration,
    pub(crate) guild_load_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) subscribers: Vec<(Recipient<GatewayEvent>, EventFilter)>,
    pub(crate) lifecycle_subscribers: Vec<Recipient<ShardLifecycle>>,
    pub(crate) fleet_subscribers: Vec<Recipient<FleetEvent>>,
}

impl fmt::Debug for ManagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerConfig")
            .field("token", &self.token)
            .field("intents", &self.intents)
            .field("shard_count", &self.shard_count)
            .field("range", &self.range)
            .field("rest_url", &self.rest_url)
            .field("gateway_url", &self.gateway_url)
            .field("max_concurrency", &self.max_concurrency)
            .field("identify_window", &self.identify_window)
            .field("placement", &self.placement)
            .field("restart", &self.restart)
            .field("session_store", &self.session_store)
            .field("resharding", &self.resharding)
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
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
            range: None,
            rest_url: DISCORD_API_URL.to_owned(),
            rest_attempts: 3,
            gateway_info: None,
            gateway_url: None,
            max_concurrency: None,
            identify_window: discore_protocol::limits::IDENTIFY_WINDOW,
            identify_reserve: None,
            identify_queue: None,
            identify_order_timeout: Duration::from_secs(5),
            placement: Placement::Owned(None),
            restart: RestartPolicy::default(),
            session_store: None,
            session_max_age: Duration::from_secs(5 * 60),
            checkpoint_interval: None,
            resharding: ReshardMode::ZeroDowntime,
            reshard_history: 100_000,
            alignment_window: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
            reshard_attempts: 5,
            reshard_retry_delay: Duration::from_secs(30),
            status_interval: Duration::from_millis(500),
            guild_load_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_millis(500),
            subscribers: Vec::new(),
            lifecycle_subscribers: Vec::new(),
            fleet_subscribers: Vec::new(),
        }
    }

    /// The shard count. Default [`ShardCount::Auto`].
    pub fn shard_count(mut self, count: ShardCount) -> Self {
        self.shard_count = count;
        self
    }

    /// Runs only shards `ids` out of `total`, for running a bot in several
    /// processes. Overrides [`ManagerConfig::shard_count`]; such a manager
    /// does not re-shard by itself. Default: every shard.
    pub fn shard_range(mut self, ids: Range<u32>, total: u32) -> Self {
        self.range = Some((ids, total));
        self
    }

    /// The REST API base URL, with its version. Default
    /// `https://discord.com/api/v10`; the emulator's is
    /// `http://127.0.0.1:PORT/api/v10`.
    pub fn rest_url(mut self, url: impl Into<String>) -> Self {
        self.rest_url = url.into();
        self
    }

    /// Requests per REST call when Discord answers 429 or 5xx. Default 3.
    pub fn rest_attempts(mut self, attempts: u32) -> Self {
        self.rest_attempts = attempts.max(1);
        self
    }

    /// Uses this instead of calling `GET /gateway/bot` at start (re-sharding
    /// still calls it). Default: call it.
    pub fn gateway_info(mut self, info: BotConnectionInfo) -> Self {
        self.gateway_info = Some(info);
        self
    }

    /// The gateway URL shards connect to. Default: the one `GET
    /// /gateway/bot` answers.
    pub fn gateway_url(mut self, url: impl Into<String>) -> Self {
        self.gateway_url = Some(url.into());
        self
    }

    /// The identify concurrency. Default: `max_concurrency` from `GET
    /// /gateway/bot`. Ignored when an identify queue is given.
    pub fn max_concurrency(mut self, max: u32) -> Self {
        self.max_concurrency = Some(max.max(1));
        self
    }

    /// One identify per bucket per this window. Default Discord's 5 s; tests
    /// against the emulator scale it down. Ignored when an identify queue is
    /// given.
    pub fn identify_window(mut self, window: Duration) -> Self {
        self.identify_window = window;
        self
    }

    /// Identifies of the daily budget the queue never spends (running out
    /// resets the bot's token). Default 5 % of the daily total, at least 1.
    /// Ignored when an identify queue is given.
    pub fn identify_reserve(mut self, reserve: u32) -> Self {
        self.identify_reserve = Some(reserve);
        self
    }

    /// The identify queue, such as a distributed one shared by several
    /// processes. Default: an in-memory queue sized from `GET /gateway/bot`
    /// (`max_concurrency` buckets, the daily budget with its reserve).
    pub fn identify_queue(mut self, queue: Arc<dyn IdentifyQueue>) -> Self {
        self.identify_queue = Some(queue);
        self
    }

    /// How long shards that reached the identify step wait for an earlier
    /// shard of the same launch that has not, before going ahead of it
    /// (shards ask the queue in id order). Default 5 s.
    pub fn identify_order_timeout(mut self, timeout: Duration) -> Self {
        self.identify_order_timeout = timeout;
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

    /// Runs the shards on this many arbiters (threads), which the manager
    /// creates and stops. Default: one per core.
    pub fn arbiters(mut self, count: usize) -> Self {
        self.placement = Placement::Owned(Some(count.max(1)));
        self
    }

    /// Runs the shards on these arbiters, which the caller owns. Shard `n`
    /// goes to arbiter `n % len`; when one has stopped, its shards restart
    /// on the others. Default: the manager's own, one per core.
    pub fn arbiter_handles(mut self, handles: Vec<ArbiterHandle>) -> Self {
        self.placement = if handles.is_empty() {
            Placement::Owned(None)
        } else {
            Placement::Given(handles)
        };
        self
    }

    /// How crashed shards are restarted. Default [`RestartPolicy::default`].
    pub fn restart_policy(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// Where sessions are saved on a hand-off and loaded at start. Default
    /// none: every start identifies.
    pub fn session_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.session_store = Some(store);
        self
    }

    /// Saved sessions older than this are not resumed (Discord would refuse
    /// them). Default 5 minutes.
    pub fn session_max_age(mut self, age: Duration) -> Self {
        self.session_max_age = age;
        self
    }

    /// Also saves every session to the store this often, so a process that
    /// dies without a hand-off can still be resumed (it replays the events
    /// after the saved sequence). Default: only on hand-off.
    pub fn checkpoint_interval(mut self, interval: Option<Duration>) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// What a 4011 or 4010 close leads to. Default
    /// [`ReshardMode::ZeroDowntime`].
    pub fn resharding(mut self, mode: ReshardMode) -> Self {
        self.resharding = mode;
        self
    }

    /// Events each shard of the old fleet remembers during a zero-downtime
    /// re-sharding, to recognise them when the new fleet receives them too.
    /// Default 100,000; when it overflows, some events may be delivered
    /// twice.
    pub fn reshard_history(mut self, events: usize) -> Self {
        self.reshard_history = events.max(1);
        self
    }

    /// After the switch, how long the new fleet keeps checking its events
    /// against what the old fleet delivered. Default 60 s.
    pub fn alignment_window(mut self, window: Duration) -> Self {
        self.alignment_window = window;
        self
    }

    /// At the switch, how long an old shard may take to catch up with the
    /// new fleet (to deliver what was sent before the new sessions began)
    /// before delivery switches anyway. Default 10 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Re-sharding attempts in a row (a new fleet that fails, or a count
    /// that did not change) before giving up with a notification, and the
    /// wait between them. Default 5 attempts, 30 s apart.
    pub fn reshard_retries(mut self, attempts: u32, delay: Duration) -> Self {
        self.reshard_attempts = attempts.max(1);
        self.reshard_retry_delay = delay;
        self
    }

    /// How often shard statuses are collected while a fleet is starting
    /// (for progress and readiness). Default 500 ms.
    pub fn status_interval(mut self, interval: Duration) -> Self {
        self.status_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// A shard counts as loaded this long after READY even if some guilds
    /// never arrived (they stayed unavailable). Default 60 s.
    pub fn guild_load_timeout(mut self, timeout: Duration) -> Self {
        self.guild_load_timeout = timeout;
        self
    }

    /// After a shutdown, how long the manager's own arbiters keep running so
    /// the shards' close frames reach the gateway. Default 500 ms.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Delivers the events `filter` selects to `recipient`. More can be
    /// added and removed at run time with `Subscribe` and `Unsubscribe`.
    pub fn subscribe(mut self, recipient: Recipient<GatewayEvent>, filter: EventFilter) -> Self {
        self.subscribers.push((recipient, filter));
        self
    }

    /// Tells `recipient` about every shard's lifecycle.
    pub fn subscribe_lifecycle(mut self, recipient: Recipient<ShardLifecycle>) -> Self {
        self.lifecycle_subscribers.push(recipient);
        self
    }

    /// Tells `recipient` about the fleet: progress, readiness, restarts,
    /// failures, re-sharding.
    pub fn subscribe_fleet(mut self, recipient: Recipient<FleetEvent>) -> Self {
        self.fleet_subscribers.push(recipient);
        self
    }
}
