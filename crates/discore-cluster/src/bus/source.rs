//! The worker side: consuming the bot's events into `GatewayEvent`s.

use super::{EventBus, HEADER_EVENT, HEADER_SEQUENCE, HEADER_SESSION, HEADER_SHARD};
use crate::{
    error::ClusterError,
    lease::LeaseClient,
    lease_holder::{Claim, LeaseHolder},
    redis_conn::ClusterRedis,
    reshard::state::{self, Stage},
};
use actix::{
    Actor, ActorContext as _, ActorFutureExt as _, AsyncContext as _, Context, Handler, Message,
    Recipient, ResponseActFuture, WrapFuture as _,
};
use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use discore_gateway::{Dispatch, EventFilter, EventType, GatewayEvent};
use discore_protocol::ShardId;
use futures_util::StreamExt as _;
use serde_json::value::RawValue;
use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};

/// How a worker consumes. Every setter documents its default.
#[derive(Clone, Debug)]
#[must_use]
pub struct EventSourceConfig {
    group: String,
    total: u32,
    node_id: String,
    lease_ttl: Duration,
    ack_wait: Duration,
    batch: usize,
    fetch_wait: Duration,
    filter: EventFilter,
}

impl EventSourceConfig {
    /// Workers of the group `group` (they share the work; another group
    /// gets every event again) for a bot of `total` shards.
    pub fn new(group: impl Into<String>, total: u32) -> Self {
        Self {
            group: group.into(),
            total: total.max(1),
            node_id: format!(
                "{}-{}-{:04x}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned()),
                std::process::id(),
                fastrand::u16(..)
            ),
            lease_ttl: Duration::from_secs(10),
            ack_wait: Duration::from_secs(30),
            batch: 64,
            fetch_wait: Duration::from_secs(1),
            filter: EventFilter::all(),
        }
    }

    /// This worker's id, unique in the group. Default `HOSTNAME-PID-RANDOM`.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// The partition lease TTL: a dead worker's shards move to the others
    /// this long after its last renewal. Default 10 s.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(100));
        self
    }

    /// JetStream redelivers an event not acknowledged this long after it was
    /// delivered (a handler that hangs). Default 30 s.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// Events fetched at once per shard. Default 64.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// How long a fetch waits for events before asking again. Default 1 s.
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.fetch_wait = wait.max(Duration::from_millis(10));
        self
    }

    /// Which events reach the recipient; the others are acknowledged
    /// unseen. Default every event.
    pub fn filter(mut self, filter: EventFilter) -> Self {
        self.filter = filter;
        self
    }
}

/// Counters of an event source.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct EventSourceStats {
    /// Events delivered to the recipient.
    pub delivered: u64,
    /// Events the filter skipped.
    pub filtered: u64,
    /// Redeliveries of events this worker had already delivered, skipped.
    pub duplicates: u64,
    /// Messages that were not discore events, terminated.
    pub malformed: u64,
    /// Shards whose events this worker consumes now.
    pub shards: Vec<u32>,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    filtered: AtomicU64,
    duplicates: AtomicU64,
    malformed: AtomicU64,
}

/// Asks an event source for its counters.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "EventSourceStats")]
pub struct GetSourceStats;

/// Stops an event source cleanly: each shard finishes the event its
/// handler is on, then its lease is released for another worker.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub struct StopSource;

/// A move to the partitions of another shard total after a re-sharding.
///
/// The gateway nodes publish the new generation's first event only once
/// JetStream acknowledged the old generation's last, so in each partition
/// the old events come first; a partition's consumer never handles an
/// event of a newer total before the move (it stops there). Each partition
/// is drained: consumed until its next event is of the new total (left
/// for the next owner) or nothing is pending; then it is handed over. Once its partitions are, the worker
/// leaves the old pool, and it joins the new one when no live worker is
/// left in the old pool: every other worker has drained too (or died). So
/// a guild's old events are all handled before any of its new ones,
/// wherever its partitions land, and no partition is consumed by a worker
/// of each pool.
#[derive(Debug)]
struct Move {
    to: u32,
    /// The old pool was left.
    left: bool,
    /// A probe of the old pool's members is under way.
    probing: bool,
    /// Join anyway by then (a worker that cannot drain).
    deadline: Instant,
}

struct Partition {
    stop: watch::Sender<bool>,
    /// Drain the old generation's events, then end.
    drain: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    releasing: bool,
}

/// An actor that consumes the bot's events from JetStream and delivers them
/// to a `Recipient<GatewayEvent>`: the same messages a gateway process
/// delivers, so one handler works in both.
///
/// Workers of a group share the shards through leases in Redis (a fair
/// share each, rebalanced as workers come and go). Each shard's events go
/// through its own durable consumer (`<group>-<shard>`), one event at a
/// time, in the order the gateway received them: the next is delivered
/// once the handler returned, and acknowledged only then. A worker that
/// dies leaves its events unacknowledged; the worker that takes its shards
/// over restarts their consumers at the first unacknowledged event, so
/// nothing is lost (the event the dead worker's handler was on may be
/// delivered again).
pub struct EventSource {
    bus: EventBus,
    redis: ClusterRedis,
    config: EventSourceConfig,
    leases: LeaseHolder,
    /// Moving to the partitions of a new shard total after a re-sharding.
    moving: Option<Move>,
    /// The generation record is being read.
    reading: bool,
    recipient: Recipient<GatewayEvent>,
    partitions: BTreeMap<u32, Partition>,
    counters: Arc<Counters>,
    stopping: bool,
    stop_waiters: Vec<oneshot::Sender<()>>,
}

impl fmt::Debug for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSource")
            .field("group", &self.config.group)
            .field("node", &self.config.node_id)
            .field("shards", &self.partitions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl EventSource {
    /// A source delivering to `recipient`; start it with `Actor::start`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidConfig`] for a group name NATS cannot use.
    pub fn new(
        bus: EventBus,
        redis: &ClusterRedis,
        config: EventSourceConfig,
        recipient: Recipient<GatewayEvent>,
    ) -> Result<Self, ClusterError> {
        let valid = !config.group.is_empty()
            && config
                .group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !valid {
            return Err(ClusterError::InvalidConfig(format!(
                "worker group {:?} must be [A-Za-z0-9_-]+",
                config.group
            )));
        }
        let leases = pool(redis, &config);
        Ok(Self {
            bus,
            redis: redis.clone(),
            config,
            leases,
            moving: None,
            reading: false,
            recipient,
            partitions: BTreeMap::new(),
            counters: Arc::default(),
            stopping: false,
            stop_waiters: Vec::new(),
        })
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.follow_generation(ctx);
        if let Some(moving) = &self.moving {
            if moving.left {
                self.keep_moving(ctx);
                return;
            }
            // Draining: keep the leases and the membership, claim nothing.
            self.keep_moving(ctx);
        }
        let claim = if self.moving.is_some() {
            Claim::Hold
        } else {
            Claim::Share
        };
        let Some(call) = self.leases.start_tick(&claim, self.stopping) else {
            return;
        };
        ctx.spawn(
            call.into_actor(self)
                .map(move |(sent, result), source, ctx| {
                    match source.leases.finish_tick(sent, result, source.stopping) {
                        Ok(changes) => {
                            for number in changes.lost {
                                source.lose(number);
                            }
                            for (number, token) in changes.claimed {
                                source.begin(number, token);
                            }
                            if !source.stopping && source.moving.is_none() {
                                source.rebalance(ctx);
                            }
                        }
                        Err(error) => log::warn!(
                            "worker {}: lease renewal failed: {error}",
                            source.config.node_id
                        ),
                    }
                }),
        );
    }

    /// Reads which shard total the cluster serves; after a re-sharding the
    /// worker moves to the new total's partitions.
    fn follow_generation(&mut self, ctx: &mut Context<Self>) {
        if self.reading || self.stopping || self.moving.is_some() {
            return;
        }
        self.reading = true;
        let redis = self.redis.clone();
        ctx.spawn(
            async move { state::read(&redis).await }
                .into_actor(self)
                .map(|result, source, ctx| {
                    source.reading = false;
                    match result {
                        Ok(Some(generation))
                            if generation.stage == Stage::Serving
                                && generation.total != source.config.total
                                && !source.stopping =>
                        {
                            source.start_moving(generation.total, ctx);
                        }
                        Ok(_) => {}
                        Err(error) => log::debug!(
                            "worker {}: reading the generation failed: {error}",
                            source.config.node_id
                        ),
                    }
                }),
        );
    }

    fn start_moving(&mut self, to: u32, ctx: &mut Context<Self>) {
        log::info!(
            "worker {}: the cluster serves {to} shards (was {}), moving",
            self.config.node_id,
            self.config.total
        );
        self.moving = Some(Move {
            to,
            left: false,
            probing: false,
            deadline: Instant::now() + self.config.ack_wait + self.config.lease_ttl,
        });
        for number in self.partitions.keys().copied().collect::<Vec<_>>() {
            self.drain_and_release(number, ctx);
        }
    }

    fn keep_moving(&mut self, ctx: &mut Context<Self>) {
        let Some(moving) = &mut self.moving else {
            return;
        };
        if !self.partitions.is_empty() || moving.probing {
            return;
        }
        let first = !moving.left;
        moving.left = true;
        moving.probing = true;
        // Leaving again is harmless: it answers who is still in the pool.
        let leave = self.leases.leave();
        ctx.spawn(leave.into_actor(self).map(move |answer, source, _| {
            let Some(moving) = &mut source.moving else {
                return;
            };
            moving.probing = false;
            if first {
                log::debug!(
                    "worker {}: left the old partition pool",
                    source.config.node_id
                );
            }
            let others = match answer {
                Ok(tick) => tick.members,
                Err(error) => {
                    log::debug!("leaving the old partition pool failed: {error}");
                    return;
                }
            };
            if others > 0 && Instant::now() < moving.deadline {
                return;
            }
            let to = moving.to;
            source.moving = None;
            source.config.total = to;
            source.leases = pool(&source.redis, &source.config);
            log::info!(
                "worker {}: joined the partitions of {to} shards",
                source.config.node_id
            );
        }));
    }

    /// Consumes a partition's old-generation events, then releases it.
    fn drain_and_release(&mut self, number: u32, ctx: &mut Context<Self>) {
        let Some(partition) = self.partitions.get_mut(&number) else {
            return;
        };
        if partition.releasing {
            return;
        }
        let _ = partition.drain.send(true);
        // Bounded: a partition that cannot drain is stopped where it is
        // (this one, under this lease: the number may be claimed again in
        // the new pool by then).
        let limit = self.config.ack_wait;
        let token = self.leases.token(number);
        ctx.run_later(limit, move |source, _| {
            if token.is_some()
                && source.leases.token(number) == token
                && let Some(partition) = source.partitions.get(&number)
            {
                log::warn!(
                    "worker {}: shard {number} not drained in {limit:?}, handed over",
                    source.config.node_id
                );
                let _ = partition.stop.send(true);
            }
        });
        self.hand_over_when_done(number, "drained and handed over", ctx);
    }

    /// Hands over partitions above the fair share, highest ids first.
    fn rebalance(&mut self, ctx: &mut Context<Self>) {
        let kept = self.partitions.values().filter(|p| !p.releasing).count();
        let excess = kept.saturating_sub(self.leases.target() as usize);
        let chosen: Vec<u32> = self
            .partitions
            .iter()
            .rev()
            .filter(|(_, p)| !p.releasing)
            .map(|(n, _)| *n)
            .take(excess)
            .collect();
        for number in chosen {
            self.release(number, ctx);
        }
    }

    fn begin(&mut self, number: u32, token: u64) {
        log::info!(
            "worker {}: consuming shard {number} (fencing token {token})",
            self.config.node_id
        );
        let (stop, stopped) = watch::channel(false);
        let (drain, drain_to) = watch::channel(false);
        let task = actix_rt::spawn(consume(Consume {
            bus: self.bus.clone(),
            durable: format!("{}-{number}", self.config.group),
            filter_subject: self.bus.shard_filter(number),
            config: self.config.clone(),
            recipient: self.recipient.clone(),
            counters: Arc::clone(&self.counters),
            stop: stopped,
            drain: drain_to,
        }));
        self.partitions.insert(
            number,
            Partition {
                stop,
                drain,
                task: Some(task),
                releasing: false,
            },
        );
    }

    /// The lease is gone: stop consuming at once.
    fn lose(&mut self, number: u32) {
        self.leases.forget(number);
        if let Some(partition) = self.partitions.remove(&number) {
            log::warn!(
                "worker {}: lost shard {number}, stopped consuming it",
                self.config.node_id
            );
            let _ = partition.stop.send(true);
        }
        self.maybe_finished();
    }

    /// Stops consuming a shard after the current event, then releases it.
    fn release(&mut self, number: u32, ctx: &mut Context<Self>) {
        let Some(partition) = self.partitions.get_mut(&number) else {
            return;
        };
        if partition.releasing {
            return;
        }
        let _ = partition.stop.send(true);
        self.hand_over_when_done(number, "handed over", ctx);
    }

    /// Releases the lease of a partition once its consumption ended.
    fn hand_over_when_done(&mut self, number: u32, what: &'static str, ctx: &mut Context<Self>) {
        let Some(partition) = self.partitions.get_mut(&number) else {
            return;
        };
        partition.releasing = true;
        let task = partition.task.take();
        let Some(token) = self.leases.token(number) else {
            return;
        };
        ctx.spawn(
            async move {
                if let Some(task) = task {
                    let _ = task.await;
                }
            }
            .into_actor(self)
            .map(move |(), source, _| {
                if source.leases.holds(number, token) {
                    source.partitions.remove(&number);
                    source.leases.release(number);
                    log::info!("worker {}: shard {number} {what}", source.config.node_id);
                }
                source.maybe_finished();
            }),
        );
    }

    fn enforce_deadlines(&mut self) {
        for number in self.leases.expired(Instant::now()) {
            self.lose(number);
        }
    }

    fn maybe_finished(&mut self) {
        if self.stopping && self.partitions.is_empty() {
            for waiter in self.stop_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Actor for EventSource {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let ttl = self.config.lease_ttl;
        self.tick(ctx);
        ctx.run_interval(ttl / 3, |source, ctx| source.tick(ctx));
        ctx.run_interval((ttl / 20).max(Duration::from_millis(5)), |source, _| {
            source.enforce_deadlines();
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        for partition in self.partitions.values() {
            let _ = partition.stop.send(true);
        }
    }
}

impl Handler<GetSourceStats> for EventSource {
    type Result = actix::MessageResult<GetSourceStats>;

    /// Answers the counters.
    fn handle(&mut self, _: GetSourceStats, _: &mut Context<Self>) -> Self::Result {
        let c = &self.counters;
        actix::MessageResult(EventSourceStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            filtered: c.filtered.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            shards: self.partitions.keys().copied().collect(),
        })
    }
}

impl Handler<StopSource> for EventSource {
    type Result = ResponseActFuture<Self, ()>;

    /// Hands every shard over and stops.
    fn handle(&mut self, _: StopSource, ctx: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let (done, finished) = oneshot::channel();
        self.stop_waiters.push(done);
        for number in self.partitions.keys().copied().collect::<Vec<_>>() {
            self.release(number, ctx);
        }
        self.maybe_finished();
        let leave = self.leases.leave();
        Box::pin(
            async move {
                let _ = finished.await;
                let _ = leave.await;
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

/// The lease pool of a worker group for its shard total.
fn pool(redis: &ClusterRedis, config: &EventSourceConfig) -> LeaseHolder {
    LeaseHolder::new(LeaseClient::new(
        redis,
        format!("workers-{}-{}", config.group, config.total),
        config.node_id.clone(),
        config.lease_ttl,
        config.total,
    ))
}

/// One shard's consumption.
struct Consume {
    bus: EventBus,
    durable: String,
    filter_subject: String,
    config: EventSourceConfig,
    recipient: Recipient<GatewayEvent>,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
    /// Set when the worker moves to another shard total: consume this
    /// total's events (`config.total`), then end.
    drain: watch::Receiver<bool>,
}

async fn consume(mut job: Consume) {
    let mut attempt: u32 = 0;
    let mut consumer = loop {
        if *job.stop.borrow() {
            return;
        }
        match prepare(&job).await {
            Ok(consumer) => break consumer,
            Err(error) => {
                log::warn!("consumer {}: not ready, retrying: {error}", job.durable);
                attempt += 1;
                let delay = Duration::from_millis(50 * u64::from(attempt.min(20)));
                let _ = actix_rt::time::timeout(delay, job.stop.changed()).await;
            }
        }
    };
    // Per shard: the last (session, sequence) delivered, to skip our own
    // redeliveries (an acknowledgement that got lost).
    let mut last: Option<(String, u64)> = None;
    while !*job.stop.borrow() {
        let batch = consumer
            .fetch()
            .max_messages(job.config.batch)
            .expires(job.config.fetch_wait)
            .messages();
        let mut messages = tokio::select! {
            batch = batch => match batch {
                Ok(messages) => messages,
                Err(error) => {
                    log::warn!("consumer {}: fetch failed: {error}", job.durable);
                    let _ = actix_rt::time::timeout(job.config.fetch_wait, job.stop.changed()).await;
                    continue;
                }
            },
            _ = job.stop.changed() => return,
        };
        let mut fetched = 0_usize;
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = job.stop.changed() => return,
            };
            let Some(message) = next else { break };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    log::debug!("consumer {}: {error}", job.durable);
                    break;
                }
            };
            fetched += 1;
            if *job.stop.borrow() {
                // Not acknowledged: the next owner gets it.
                return;
            }
            if shard_total(&message).is_some_and(|total| total > job.config.total) {
                // The cluster re-sharded: this event and the rest of the
                // partition wait for the worker to move (after every old
                // event of every partition; see `Move`), for whoever then
                // owns the partition.
                log::debug!(
                    "consumer {}: an event of a new shard total, waiting for the move",
                    job.durable
                );
                return;
            }
            if !handle(&job, &message, &mut last).await {
                return;
            }
            if let Err(error) = message.double_ack().await {
                log::warn!("consumer {}: acknowledging failed: {error}", job.durable);
            }
        }
        let draining = *job.drain.borrow();
        if draining && fetched == 0 {
            // Nothing came: drained if nothing is left either.
            match consumer.info().await {
                Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => return,
                Ok(_) => {}
                Err(error) => log::debug!("consumer {}: {error}", job.durable),
            }
        }
    }
}

/// Delivers one message; `false` when the recipient is gone.
async fn handle(
    job: &Consume,
    message: &jetstream::Message,
    last: &mut Option<(String, u64)>,
) -> bool {
    let Some(event) = decode(message) else {
        job.counters.malformed.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "consumer {}: a message on {} is not a discore event, terminated",
            job.durable,
            message.subject
        );
        let _ = message.ack_with(AckKind::Term).await;
        return true;
    };
    let Decoded {
        shard,
        sequence,
        session,
        name,
        data,
    } = event;
    let redelivered = message.info().is_ok_and(|info| info.delivered > 1);
    if redelivered
        && let (Some(session), Some((last_session, last_sequence))) = (&session, &*last)
        && session == last_session
        && sequence <= *last_sequence
    {
        job.counters.duplicates.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    let kind = EventType::try_from(name.as_str()).ok();
    if !job.config.filter.wants(kind) {
        job.counters.filtered.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    let dispatch = Dispatch::parse(&name, kind, &data);
    // The handler sees Discord's bytes, as a handler in the gateway process
    // does.
    let event = GatewayEvent::new(shard, sequence, Arc::new(dispatch))
        .with_raw_data(message.payload.clone());
    if job.recipient.send(event).await.is_err() {
        log::warn!("consumer {}: the recipient stopped", job.durable);
        return false;
    }
    job.counters.delivered.fetch_add(1, Ordering::Relaxed);
    if let Some(session) = session {
        *last = Some((session, sequence));
    }
    true
}

/// The shard total a message's header names.
fn shard_total(message: &jetstream::Message) -> Option<u32> {
    let header = message.headers.as_ref()?.get(HEADER_SHARD)?;
    header.as_str().split_once('/')?.1.parse().ok()
}

struct Decoded {
    shard: ShardId,
    sequence: u64,
    session: Option<String>,
    name: String,
    data: Box<RawValue>,
}

/// Reads a message's headers and payload; `None` when they are not a
/// discore event.
fn decode(message: &jetstream::Message) -> Option<Decoded> {
    let headers = message.headers.as_ref()?;
    let (number, total) = headers.get(HEADER_SHARD)?.as_str().split_once('/')?;
    let shard = ShardId::new_checked(number.parse().ok()?, total.parse().ok()?)?;
    let sequence = headers.get(HEADER_SEQUENCE)?.as_str().parse().ok()?;
    let name = headers.get(HEADER_EVENT)?.as_str().to_owned();
    let session = headers.get(HEADER_SESSION).map(|v| v.as_str().to_owned());
    let text = std::str::from_utf8(&message.payload).ok()?;
    let data = RawValue::from_string(text.to_owned()).ok()?;
    Some(Decoded {
        shard,
        sequence,
        session,
        name,
        data,
    })
}

/// The shard's durable consumer, restarted at its first unacknowledged
/// event when a previous owner left some in flight (so they come first, in
/// order).
async fn prepare(job: &Consume) -> Result<PullConsumer, ClusterError> {
    let stream = job
        .bus
        .jetstream()
        .get_stream(job.bus.stream_name())
        .await
        .map_err(|e| ClusterError::nats("get stream")(&e))?;
    let config = |deliver_policy| pull::Config {
        durable_name: Some(job.durable.clone()),
        filter_subject: job.filter_subject.clone(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: job.config.ack_wait,
        deliver_policy,
        max_deliver: -1,
        max_ack_pending: i64::try_from(job.config.batch * 2).unwrap_or(i64::MAX),
        ..pull::Config::default()
    };
    match stream.consumer_info(&job.durable).await {
        Ok(info) => {
            // Always from the first unacknowledged event, on a fresh
            // consumer: a previous owner may have left events delivered and
            // unacknowledged, or a pull request still open that takes
            // events after this point; either way they would come back
            // only after the ack wait, behind newer ones.
            let start_sequence = info.ack_floor.stream_sequence + 1;
            if info.num_ack_pending > 0 {
                log::info!(
                    "consumer {}: {} events left unacknowledged by the previous owner, restarting at stream sequence {start_sequence}",
                    job.durable,
                    info.num_ack_pending
                );
            }
            stream
                .delete_consumer(&job.durable)
                .await
                .map_err(|e| ClusterError::nats("delete consumer")(&e))?;
            stream
                .create_consumer(config(DeliverPolicy::ByStartSequence { start_sequence }))
                .await
                .map_err(|e| ClusterError::nats("create consumer")(&e))
        }
        Err(_) => stream
            .get_or_create_consumer(&job.durable, config(DeliverPolicy::All))
            .await
            .map_err(|e| ClusterError::nats("create consumer")(&e)),
    }
}
