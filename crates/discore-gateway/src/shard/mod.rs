//! The `Shard` actor: one Gateway connection.
//!
//! The actor does IO and plumbing only; every protocol decision is made by
//! the [`Machine`]. `io.rs` reads and writes the socket, `messages.rs` holds
//! what other actors can ask of a shard.

mod io;
mod messages;

pub use messages::{
    GetShardStatus, ShardStatus, Shutdown, Subscribe, SubscribeLifecycle, Unsubscribe,
};

use crate::{
    config::ShardConfig,
    delivery::Credits,
    error::ShardStartError,
    event::{EventFilter, GatewayEvent, ShardLifecycle},
    identify::IdentifyQueue,
    inflate::Inflater,
    machine::{Lifecycle, Machine, MachineConfig},
    ratelimit::CommandRateLimiter,
    transport::{self, Connection},
};
use actix::{Actor, Addr, Context, Recipient, SpawnHandle};
use discore_protocol::{
    ShardId, Token,
    commands::{self, EncodeError},
};
use std::{collections::VecDeque, fmt, sync::Arc, time::Instant};
use tokio::sync::oneshot;
use twilight_model::gateway::payload::outgoing::update_presence::UpdatePresencePayload;

/// Discord's usual heartbeat interval, assumed until Hello tells the real one.
const TYPICAL_HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(41_250);

/// One Discord Gateway connection.
///
/// `docs/shards.md` is its guide, with a table from Discore's (C#) names to
/// these.
///
/// ```no_run
/// use discore_gateway::{Shard, ShardConfig};
/// use discore_protocol::{Intents, ShardId, Token};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let token = Token::new(std::env::var("DISCORD_TOKEN")?)?;
/// let shard = Shard::new(token, ShardId::new(0, 1), ShardConfig::new(Intents::GUILDS));
/// let addr = shard.start().await?; // completes at the first READY
/// # drop(addr);
/// # Ok(())
/// # }
/// ```
pub struct Shard {
    id: ShardId,
    token: Token,
    config: ShardConfig,
    machine: Machine,
    queue: Arc<dyn IdentifyQueue>,
    /// The current connection, if open.
    connection: Option<Connection>,
    /// Counts connections, so frames of a closed one are recognised.
    generation: u64,
    reader: Option<SpawnHandle>,
    inflater: Option<Inflater>,
    /// A message arriving in continuation frames.
    fragments: Option<Vec<u8>>,
    /// The armed timer and its deadline.
    timer: Option<(Instant, SpawnHandle)>,
    connect_task: Option<SpawnHandle>,
    /// Leave from the identify queue to hold a connection that identifies,
    /// until the gateway answers the Identify or the connection ends.
    connect_turn: Option<crate::identify::ConnectTurn>,
    identify_task: Option<SpawnHandle>,
    flush_timer: Option<SpawnHandle>,
    subscribers: Vec<Subscriber>,
    lifecycle: Vec<Recipient<ShardLifecycle>>,
    credits: Arc<Credits>,
    commands: VecDeque<crate::command::EncodedCommand>,
    limiter: CommandRateLimiter,
    /// The presence Identify sends: configured, then the last one set.
    presence: Option<UpdatePresencePayload>,
    start_waiter: Option<oneshot::Sender<Result<(), ShardStartError>>>,
    stats: Stats,
    /// Told when the actor is gone, however it ended.
    exit: Option<Recipient<ShardExited>>,
    /// Why the actor is stopping, when it chose to.
    exit_cause: Option<ExitCause>,
}

/// A shard actor is gone: it was shut down, gave up starting, or was dropped
/// after a panic. Carries the session so a supervisor can resume it.
#[derive(Clone, Debug, actix::Message)]
#[rtype(result = "()")]
pub struct ShardExited {
    /// The shard.
    pub shard: ShardId,
    /// Its resumable session at the time, if any.
    pub session: Option<discore_protocol::Session>,
    /// Why it ended.
    pub cause: ExitCause,
}

/// Why a shard actor ended.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ExitCause {
    /// A [`Shutdown`] message stopped it.
    Shutdown,
    /// `start()` failed.
    StartFailed(ShardStartError),
    /// It stopped without deciding to: a panic in the actor, or its arbiter
    /// went away.
    Crashed,
}

struct Subscriber {
    recipient: Recipient<GatewayEvent>,
    filter: EventFilter,
}

/// Counters behind [`ShardStatus`].
#[derive(Clone, Debug, Default)]
struct Stats {
    events: u64,
    reconnects: u64,
    new_sessions: u64,
    resumes: u64,
    identifies: u64,
    last_close_code: Option<u16>,
    close_codes: std::collections::BTreeMap<u16, u64>,
    guilds_expected: usize,
    guilds_loaded: usize,
    /// Guilds of the last READY not yet settled (arrived, or reported
    /// unavailable); emptied as they settle.
    guilds_pending: std::collections::HashSet<Box<str>>,
    inbound_bytes: u64,
    inflated_bytes: u64,
    /// Dispatches by event name; a name allocates once, on first sight.
    events_by_type: std::collections::HashMap<Box<str>, u64, foldhash::fast::RandomState>,
    rate_limit_waits: u64,
}

impl fmt::Debug for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shard")
            .field("id", &self.id)
            .field("state", &self.machine.state())
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

impl Shard {
    /// A shard of a bot: `id` out of `id.total()` shards.
    pub fn new(token: Token, id: ShardId, config: ShardConfig) -> Self {
        let seed = config.seed.unwrap_or_else(|| fastrand::u64(..));
        let machine = Machine::new(
            MachineConfig {
                intents: config.intents,
                ..config.machine.clone()
            },
            config.session.clone(),
            seed,
        );
        let limiter = CommandRateLimiter::new(
            config.send_limit,
            config.send_window,
            // Hello will tell the real interval; until then assume Discord's usual.
            CommandRateLimiter::reserve_for(TYPICAL_HEARTBEAT_INTERVAL, config.send_window),
            config.presence_limit,
            config.presence_window,
        );
        Self {
            id,
            queue: config.identify_queue_or_default(&token),
            token,
            credits: Credits::new(config.event_credits),
            presence: config.presence.clone(),
            config,
            machine,
            connection: None,
            generation: 0,
            reader: None,
            inflater: None,
            fragments: None,
            timer: None,
            connect_task: None,
            connect_turn: None,
            identify_task: None,
            flush_timer: None,
            subscribers: Vec::new(),
            lifecycle: Vec::new(),
            commands: VecDeque::new(),
            limiter,
            start_waiter: None,
            stats: Stats::default(),
            exit: None,
            exit_cause: None,
        }
    }

    /// This shard's id.
    pub const fn id(&self) -> ShardId {
        self.id
    }

    /// Delivers the dispatches `filter` selects to `recipient`.
    #[must_use]
    pub fn subscribe(mut self, recipient: Recipient<GatewayEvent>, filter: EventFilter) -> Self {
        self.subscribers.push(Subscriber { recipient, filter });
        self
    }

    /// Tells `recipient` about connections, sessions, disconnects and failures.
    #[must_use]
    pub fn subscribe_lifecycle(mut self, recipient: Recipient<ShardLifecycle>) -> Self {
        self.lifecycle.push(recipient);
        self
    }

    /// Tells `recipient` when the actor is gone, however it ended (a
    /// supervisor uses it to restart a crashed shard from its session).
    #[must_use]
    pub fn on_exit(mut self, recipient: Recipient<ShardExited>) -> Self {
        self.exit = Some(recipient);
        self
    }

    /// Starts the shard on the current arbiter and waits for its first
    /// handshake (READY, or RESUMED when started from a saved session).
    /// After that the shard reconnects and resumes
    /// by itself; `Actor::start` starts it without waiting.
    ///
    /// # Errors
    ///
    /// [`ShardStartError`] when the gateway refuses the shard (with its
    /// [`ShardFailureReason`](discore_protocol::ShardFailureReason)), the URL
    /// is invalid, or every connection attempt failed.
    pub async fn start(mut self) -> Result<Addr<Self>, ShardStartError> {
        transport::gateway_url(
            &self.config.gateway_url,
            self.config.api_version,
            self.config.compression,
        )
        .map_err(ShardStartError::InvalidGatewayUrl)?;
        if let Err(EncodeError::TooLarge { size }) = self.identify(self.presence.as_ref()) {
            return Err(ShardStartError::IdentifyTooLarge { size });
        }
        let (sender, receiver) = oneshot::channel();
        self.start_waiter = Some(sender);
        let addr = Actor::start(self);
        match receiver.await {
            Ok(Ok(())) => Ok(addr),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(ShardStartError::Stopped),
        }
    }

    /// The Identify this shard sends, with `presence`.
    fn identify(&self, presence: Option<&UpdatePresencePayload>) -> Result<String, EncodeError> {
        commands::Identify {
            token: &self.token,
            shard: self.id,
            intents: self.config.intents,
            large_threshold: self.config.large_threshold,
            properties: &self.config.properties,
            presence,
        }
        .encode()
    }

    fn notify(&mut self, event: Lifecycle, ctx: &mut Context<Self>) {
        match &event {
            Lifecycle::Connected => log::debug!(
                shard = self.id.number(), total = self.id.total();
                "shard {}: connected", self.id
            ),
            Lifecycle::Ready { session_id } => {
                log::info!(
                    shard = self.id.number(), total = self.id.total(), session = session_id.as_str();
                    "shard {}: ready", self.id
                );
                self.resolve_start(Ok(()));
            }
            Lifecycle::Resumed => {
                self.stats.resumes += 1;
                log::info!(
                    shard = self.id.number(), total = self.id.total(),
                    session = self.machine.session().map(|s| s.id.as_str());
                    "shard {}: resumed", self.id
                );
                self.resolve_start(Ok(()));
            }
            Lifecycle::Reconnected { resumed } => {
                self.stats.reconnects += 1;
                if !resumed {
                    self.stats.new_sessions += 1;
                }
                log::info!(
                    shard = self.id.number(), total = self.id.total(), resumed = *resumed;
                    "shard {}: reconnected (resumed: {resumed})", self.id
                );
            }
            Lifecycle::Disconnected { code, by_client } => {
                if !by_client {
                    self.stats.last_close_code = *code;
                    if let Some(code) = code {
                        *self.stats.close_codes.entry(*code).or_default() += 1;
                    }
                }
                let by = if *by_client { "discore" } else { "the gateway" };
                log::info!(
                    shard = self.id.number(), total = self.id.total(), close_code = *code, by;
                    "shard {}: disconnected (close code {code:?}, by {by})", self.id
                );
            }
            Lifecycle::Failed(reason) => {
                log::error!(
                    shard = self.id.number(), total = self.id.total(),
                    close_code = reason.close_code().code(), reason:% = reason;
                    "shard {}: failed: {reason}", self.id
                );
                if self.start_waiter.is_some() {
                    self.resolve_start(Err(ShardStartError::Failed(*reason)));
                    actix::ActorContext::stop(ctx);
                }
            }
        }
        let message = ShardLifecycle {
            shard: self.id,
            event,
        };
        self.lifecycle.retain(|recipient| recipient.connected());
        for recipient in &self.lifecycle {
            recipient.do_send(message.clone());
        }
    }

    fn resolve_start(&mut self, result: Result<(), ShardStartError>) {
        if let Err(error) = &result {
            self.exit_cause
                .get_or_insert_with(|| ExitCause::StartFailed(error.clone()));
        }
        if let Some(waiter) = self.start_waiter.take() {
            let _ = waiter.send(result);
        }
    }
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        log::debug!(shard = self.id.number(), total = self.id.total(); "shard {}: starting", self.id);
        self.machine.start();
        self.run_actions(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.resolve_start(Err(ShardStartError::Stopped));
        if let Some(connection) = self.connection.take() {
            // Stopped without a Shutdown: keep the session resumable.
            connection.close(crate::machine::RESUMABLE_CLOSE);
        }
        log::debug!(shard = self.id.number(), total = self.id.total(); "shard {}: stopped", self.id);
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        if let Some(exit) = self.exit.take() {
            exit.do_send(ShardExited {
                shard: self.id,
                session: self.machine.session().cloned(),
                cause: self.exit_cause.take().unwrap_or(ExitCause::Crashed),
            });
        }
    }
}
