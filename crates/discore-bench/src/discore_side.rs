//! discore's side: `Shard` actors delivering typed events to a counting
//! user actor, as a bot would run them.

use crate::{
    decode::Codec,
    emulator::{Emulator, TOKEN},
    harness,
    stats::Throughput,
    tally::{Outcome, Tally},
};
use actix::prelude::*;
use anyhow::{Context as _, anyhow, bail};
use discore_gateway::{
    DispatchEvent, EventFilter, EventType, GatewayEvent, GetShardStatus, InMemoryIdentifyQueue,
    Lifecycle, Shard, ShardConfig, ShardLifecycle, Shutdown, StopMode, Token,
};
use discore_manager::{
    DiscoveryConfig, IdentifyConfig, IdentifyLimits, ManagerConfig, Placement, ShardCount,
    ShardManager, ShutdownFleet, SupervisionConfig, WaitUntilReady,
};
use discore_protocol::ShardId;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, oneshot};

/// The user actor: touches every MESSAGE_CREATE and counts it.
#[derive(Debug, Default)]
pub struct Counter {
    tally: Tally,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

/// Starts counting from zero.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Arm {
    /// Events to wait for.
    pub count: u64,
    /// Whether to read send times from the content.
    pub latency: bool,
    /// Gets the outcome.
    pub done: oneshot::Sender<Outcome>,
}

impl Handler<Arm> for Counter {
    type Result = ();

    fn handle(&mut self, arm: Arm, _: &mut Context<Self>) {
        self.tally.arm(arm.count, arm.latency, arm.done);
    }
}

impl Handler<GatewayEvent> for Counter {
    type Result = ();

    fn handle(&mut self, message: GatewayEvent, _: &mut Context<Self>) {
        if let Some(DispatchEvent::MessageCreate(created)) = message.typed() {
            self.tally
                .record_dispatch(&created.content, message.shard.number(), message.sequence);
        }
    }
}

impl Counter {
    /// Arms the counter and returns where the outcome arrives.
    pub async fn arm(
        addr: &Addr<Self>,
        count: u64,
        latency: bool,
    ) -> anyhow::Result<oneshot::Receiver<Outcome>> {
        let (done, outcome) = oneshot::channel();
        addr.send(Arm {
            count,
            latency,
            done,
        })
        .await?;
        Ok(outcome)
    }
}

/// Forwards lifecycle changes, with the time they arrived.
struct LifecycleTap(mpsc::UnboundedSender<(Instant, Lifecycle)>);

impl Actor for LifecycleTap {
    type Context = Context<Self>;
}

impl Handler<ShardLifecycle> for LifecycleTap {
    type Result = ();

    fn handle(&mut self, message: ShardLifecycle, _: &mut Context<Self>) {
        let _ = self.0.send((Instant::now(), message.event));
    }
}

/// An identify queue that never waits (the emulator enforces no window).
pub fn immediate_queue() -> Arc<InMemoryIdentifyQueue> {
    Arc::new(InMemoryIdentifyQueue::with_window(1, Duration::ZERO))
}

/// A configuration pointed at the emulator.
pub fn config(url: &str, codec: Codec, queue: Arc<InMemoryIdentifyQueue>) -> ShardConfig {
    ShardConfig::new(crate::intents())
        .gateway_url(url)
        .compression(codec.discore())
        .identify_queue(queue)
        .start_attempts(3)
}

/// The filter of the benchmark handler: MESSAGE_CREATE only.
pub fn messages_only() -> EventFilter {
    EventFilter::only([EventType::MessageCreate])
}

/// Starts one shard `[id, total]` and waits for READY.
pub async fn start_shard(
    config: ShardConfig,
    id: u32,
    total: u32,
    subscriber: Option<(Recipient<GatewayEvent>, EventFilter)>,
) -> anyhow::Result<Addr<Shard>> {
    let mut shard = Shard::new(Token::new(TOKEN)?, ShardId::new(id, total), config);
    if let Some((recipient, filter)) = subscriber {
        shard = shard.subscribe(recipient, filter);
    }
    actix_rt::time::timeout(Duration::from_secs(30), shard.start())
        .await
        .map_err(|_| anyhow!("shard {id} not ready within 30 s"))?
        .map_err(|e| anyhow!("shard {id}: {e}"))
}

/// Stops shards and waits (bounded) for each to answer.
pub async fn shutdown(shards: &[Addr<Shard>]) {
    for shard in shards {
        let _ =
            actix_rt::time::timeout(Duration::from_secs(5), shard.send(Shutdown(StopMode::End)))
                .await;
    }
}

/// Single-shard throughput: best of `runs` floods of `events`.
pub async fn throughput(
    emulator: &mut Emulator,
    codec: Codec,
    events: u64,
    runs: usize,
) -> anyhow::Result<Throughput> {
    let counter = Counter::default().start();
    let shard = start_shard(
        config(emulator.gateway_url(), codec, immediate_queue()),
        0,
        1,
        Some((counter.clone().recipient(), messages_only())),
    )
    .await?;
    harness::check_compression(emulator, codec).await?;
    let mut rates = Vec::new();
    for _ in 0..runs.max(1) {
        let armed = Counter::arm(&counter, events, false).await?;
        rates.push(harness::flood_run(emulator, vec![armed], events, events).await?);
    }
    shutdown(&[shard]).await;
    emulator.settle(0, Duration::from_secs(5)).await?;
    Ok(Throughput::best(&rates))
}

/// Throughput when the subscriber wants another event type: MESSAGE_CREATE
/// is peeked, sequenced and dropped without being deserialized.
pub async fn unsubscribed_throughput(
    emulator: &mut Emulator,
    codec: Codec,
    events: u64,
    runs: usize,
) -> anyhow::Result<Throughput> {
    let counter = Counter::default().start();
    let shard = start_shard(
        config(emulator.gateway_url(), codec, immediate_queue()),
        0,
        1,
        Some((
            counter.recipient(),
            EventFilter::only([EventType::TypingStart]),
        )),
    )
    .await?;
    let mut rates = Vec::new();
    for _ in 0..runs.max(1) {
        let before = shard.send(GetShardStatus).await?.events_received;
        let deadline = Instant::now() + harness::flood_deadline(events);
        let cpu = crate::stats::cpu_time();
        let started = Instant::now();
        emulator.send(&format!("flood {events}"))?;
        loop {
            let status = shard.send(GetShardStatus).await?;
            if status.events_received >= before + events {
                break;
            }
            if Instant::now() >= deadline {
                bail!("the shard did not receive the flood in time");
            }
            actix_rt::time::sleep(Duration::from_millis(1)).await;
        }
        rates.push(Throughput::client_only(
            events,
            started.elapsed(),
            crate::stats::cpu_time().saturating_sub(cpu),
        ));
        emulator.reply(Duration::from_secs(60)).await?;
    }
    shutdown(&[shard]).await;
    emulator.settle(0, Duration::from_secs(5)).await?;
    Ok(Throughput::best(&rates))
}

/// Shards spread over arbiters, each arbiter with its own counting actor.
pub struct Fleet {
    arbiters: Vec<Arbiter>,
    counters: Vec<Addr<Counter>>,
    shards: Vec<Addr<Shard>>,
}

impl Fleet {
    /// Starts `shards` shards over `arbiters` threads (shard `i` on arbiter
    /// `i % arbiters`) and waits for every READY.
    pub async fn start(
        emulator: &Emulator,
        codec: Codec,
        shards: u32,
        arbiters: usize,
    ) -> anyhow::Result<Self> {
        let arbiters: Vec<Arbiter> = (0..arbiters.max(1)).map(|_| Arbiter::new()).collect();
        let counters: Vec<Addr<Counter>> = arbiters
            .iter()
            .map(|arbiter| Counter::start_in_arbiter(&arbiter.handle(), |_| Counter::default()))
            .collect();
        let queue = Arc::new(InMemoryIdentifyQueue::with_window(shards, Duration::ZERO));
        let mut pending = Vec::new();
        for id in 0..shards {
            let slot = id as usize % arbiters.len();
            let recipient = counters[slot].clone().recipient();
            let config = config(emulator.gateway_url(), codec, Arc::clone(&queue));
            let (sender, receiver) = oneshot::channel();
            arbiters[slot].spawn_fn(move || {
                actix_rt::spawn(async move {
                    let started =
                        start_shard(config, id, shards, Some((recipient, messages_only()))).await;
                    let _ = sender.send(started.map_err(|e| format!("{e:#}")));
                });
            });
            pending.push(receiver);
        }
        let mut addrs = Vec::new();
        for receiver in pending {
            addrs.push(receiver.await?.map_err(|e| anyhow!(e))?);
        }
        Ok(Self {
            arbiters,
            counters,
            shards: addrs,
        })
    }

    /// Arms every counter for the events its shards get when shard `s`
    /// gets `per_shard(s)`.
    async fn arm(
        &self,
        latency: bool,
        per_shard: impl Fn(u32) -> u64,
    ) -> anyhow::Result<Vec<oneshot::Receiver<Outcome>>> {
        let shards = u32::try_from(self.shards.len())?;
        let mut armed = Vec::new();
        for (slot, counter) in self.counters.iter().enumerate() {
            let on_this: u64 = (0..shards)
                .filter(|id| *id as usize % self.counters.len() == slot)
                .map(&per_shard)
                .sum();
            armed.push(Counter::arm(counter, on_this, latency).await?);
        }
        Ok(armed)
    }

    /// Best of `runs` floods of `per_shard` events to every shard.
    pub async fn throughput(
        &self,
        emulator: &mut Emulator,
        per_shard: u64,
        runs: usize,
    ) -> anyhow::Result<Throughput> {
        let mut rates = Vec::new();
        for _ in 0..runs.max(1) {
            let armed = self.arm(false, |_| per_shard).await?;
            let total = self.shards.len() as u64 * per_shard;
            rates.push(harness::flood_run(emulator, armed, total, per_shard).await?);
        }
        Ok(Throughput::best(&rates))
    }

    /// Send-to-handler latencies of `count` events at `rate` per second
    /// over the whole fleet, shard by shard in turn.
    pub async fn latency(
        &self,
        emulator: &mut Emulator,
        rate: f64,
        count: u64,
        streams: harness::Streams,
    ) -> anyhow::Result<harness::FleetLatency> {
        let shards = self.shards.len() as u64;
        let armed = self
            .arm(true, |shard| {
                count / shards + u64::from(u64::from(shard) < count % shards)
            })
            .await?;
        harness::fleet_latency_run(emulator, armed, rate, count, shards, streams).await
    }

    /// Stops the shards and the arbiters.
    pub async fn stop(self, emulator: &mut Emulator) -> anyhow::Result<()> {
        shutdown(&self.shards).await;
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        for arbiter in self.arbiters {
            let _ = arbiter.join();
        }
        emulator.settle(0, Duration::from_secs(30)).await
    }
}

/// Cold start: `shards` shards in id order sharing one identify queue of
/// `max_concurrency` buckets and `window`; time until every READY.
pub async fn cold_start(
    emulator: &mut Emulator,
    shards: u32,
    max_concurrency: u32,
    window: Duration,
) -> anyhow::Result<Duration> {
    let queue = Arc::new(InMemoryIdentifyQueue::with_window(max_concurrency, window));
    let started = Instant::now();
    let starts = (0..shards).map(|id| {
        let config = config(emulator.gateway_url(), Codec::Zlib, Arc::clone(&queue));
        start_shard(config, id, shards, None)
    });
    let results = futures_util::future::join_all(starts).await;
    let elapsed = started.elapsed();
    let addrs = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    shutdown(&addrs).await;
    emulator.settle(0, Duration::from_secs(10)).await?;
    Ok(elapsed)
}

/// Cold start through the `ShardManager`: `GET /gateway/bot`, then
/// `shards` shards on two arbiters under its identify queue (the emulator's
/// `max_concurrency`, `window`); time until `WaitUntilReady` (every shard
/// READY with its guilds).
pub async fn manager_cold_start(
    emulator: &Emulator,
    shards: u32,
    max_concurrency: u32,
    window: Duration,
) -> anyhow::Result<Duration> {
    let config = ManagerConfig::new(Token::new(TOKEN)?, crate::intents())
        .shard_count(ShardCount::Fixed(shards))
        .discovery(DiscoveryConfig::at(emulator.rest_url()))
        .identify(IdentifyConfig::in_memory(IdentifyLimits {
            max_concurrency: Some(max_concurrency),
            window,
            ..IdentifyLimits::default()
        }))
        .supervision(SupervisionConfig {
            status_interval: Duration::from_millis(2),
            ..SupervisionConfig::default()
        })
        .placement(Placement::Arbiters(2))
        .shard_config(ShardConfig::new(crate::intents()).compression(Codec::Zlib.discore()));
    let started = Instant::now();
    let manager = ShardManager::launch(config)
        .await
        .map_err(|e| anyhow!("ShardManager: {e}"))?;
    let ready = actix_rt::time::timeout(Duration::from_secs(120), manager.send(WaitUntilReady))
        .await
        .map_err(|_| anyhow!("the fleet was not ready within 120 s"))?;
    let elapsed = started.elapsed();
    ready?.map_err(|e| anyhow!("ShardManager: {e}"))?;
    let _ = actix_rt::time::timeout(
        Duration::from_secs(10),
        manager.send(ShutdownFleet(StopMode::End)),
    )
    .await;
    Ok(elapsed)
}

/// Resume timings of one round.
#[derive(Debug)]
pub struct ResumeSample {
    /// From the drop command to RESUMED.
    pub from_drop: Duration,
    /// From the shard noticing the loss to RESUMED.
    pub from_notice: Duration,
}

/// `rounds` times: the emulator drops the TCP connection without a close
/// frame; time until the shard has RESUMED.
pub async fn resume(
    emulator: &mut Emulator,
    codec: Codec,
    rounds: usize,
) -> anyhow::Result<Vec<ResumeSample>> {
    let (sender, mut events) = mpsc::unbounded_channel();
    let tap = LifecycleTap(sender).start();
    let mut shard = Shard::new(
        Token::new(TOKEN)?,
        ShardId::new(0, 1),
        config(emulator.gateway_url(), codec, immediate_queue()),
    )
    .subscribe_lifecycle(tap.recipient());
    shard = shard.subscribe(Counter::default().start().recipient(), messages_only());
    let shard = actix_rt::time::timeout(Duration::from_secs(30), shard.start())
        .await
        .context("shard not ready")?
        .map_err(|e| anyhow!("{e}"))?;
    let mut samples = Vec::new();
    for round in 0..rounds {
        wait_healthy(&shard, round).await?;
        while events.try_recv().is_ok() {}
        let started = Instant::now();
        emulator.call("drop", Duration::from_secs(5)).await?;
        let mut noticed = None;
        loop {
            let (at, event) = actix_rt::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .map_err(|_| anyhow!("round {round}: no RESUMED within 10 s"))?
                .context("lifecycle tap gone")?;
            match event {
                Lifecycle::Disconnected { .. } => noticed = Some(at),
                Lifecycle::Resumed => {
                    samples.push(ResumeSample {
                        from_drop: at - started,
                        from_notice: at - noticed.unwrap_or(started),
                    });
                    break;
                }
                Lifecycle::Ready { .. } | Lifecycle::Reconnected { resumed: false } => {
                    bail!("round {round}: a new session instead of a resume")
                }
                Lifecycle::Failed(reason) => bail!("round {round}: shard failed: {reason:?}"),
                _ => {}
            }
        }
    }
    shutdown(&[shard]).await;
    emulator.settle(0, Duration::from_secs(5)).await?;
    Ok(samples)
}

/// Waits until the shard's session is healthy: a heartbeat acknowledged
/// after the status is first read (the shard is active then). Only the
/// first reconnect after a healthy connection goes out at once; one that
/// never proved healthy waits the backoff (`docs/shards.md`), which is not
/// what the resume case times.
async fn wait_healthy(shard: &Addr<Shard>, round: usize) -> anyhow::Result<()> {
    let acked = shard.send(GetShardStatus).await?.latency.samples();
    let deadline = Instant::now() + Duration::from_secs(10);
    while shard.send(GetShardStatus).await?.latency.samples() <= acked {
        if Instant::now() > deadline {
            bail!("round {round}: no heartbeat acknowledged within 10 s");
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Send-to-handler latency of `count` messages at `rate` per second.
pub async fn latency(
    emulator: &mut Emulator,
    codec: Codec,
    rate: f64,
    count: u64,
) -> anyhow::Result<Vec<Duration>> {
    let counter = Counter::default().start();
    let shard = start_shard(
        config(emulator.gateway_url(), codec, immediate_queue()),
        0,
        1,
        Some((counter.clone().recipient(), messages_only())),
    )
    .await?;
    let armed = Counter::arm(&counter, count, true).await?;
    let latencies = harness::latency_run(emulator, armed, rate, count).await?;
    shutdown(&[shard]).await;
    emulator.settle(0, Duration::from_secs(5)).await?;
    Ok(latencies)
}
