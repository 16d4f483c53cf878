//! A node's part in re-sharding the cluster (`docs/cluster.md`,
//! "Re-sharding"). Every status interval the node reads the generation
//! record and does what the stage asks of the shards it holds:
//!
//! - `starting`: run a fleet of the new total (leases in its own pool),
//!   whose events the publisher holds; mark its shards that are READY with
//!   all their guilds; the node that sees every new shard marked moves the
//!   stage to `switching`;
//! - `switching`: write the heads of its new shards; once every new shard's
//!   heads are written, drain each of its old shards up to the heads of its
//!   guilds, then write the old shard's record (it is silent from then on);
//!   once every old shard's record is written, publish its new shards' held
//!   events minus the records; the node that sees every new shard switched
//!   makes the new total the one served;
//! - `serving` a total it runs as the new generation: retire the old fleet.

use super::{ClusterNode, Generation, ReshardCluster, gateway_info};
use crate::{
    bus::{EventBus, EventPublisher, FlushPublisher, GateAnswer, GateCall, Gated},
    error::ClusterError,
    node::fleet::{FleetNode, FleetPart, GetFleetPart, RetireFleet},
    redis_conn::ClusterRedis,
    reshard::{
        matching::{Key, Mark, OldGeneration, RecordWire},
        state::{self, Stage, Step},
    },
    status::LeaseState,
};
use actix::{ActorFutureExt as _, Addr, AsyncContext as _, Context, WrapFuture as _};
use discore_protocol::{ShardId, shard_for_guild};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

/// How long an old shard may take to reach the new generation's heads of
/// its guilds before it is silenced anyway (a shard that lags that far, or
/// whose guilds went quiet in the new session, would hold the switch).
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// What this node did of the re-sharding under way.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// `(from, to)`.
    of: Option<(u32, u32)>,
    heads_written: HashSet<u32>,
    draining: HashMap<u32, Instant>,
    recorded: HashSet<u32>,
    /// Records taken from the publisher and not yet written (the gate is
    /// silent once it hands its record over: a failed write retries this).
    unwritten: HashMap<u32, RecordWire>,
    released: HashSet<u32>,
    old: Option<Arc<OldGeneration>>,
}

/// What the node does after a step.
enum Next {
    Stay,
    /// Run a fleet of this total beside the serving one.
    StartFleet {
        total: u32,
    },
    /// The new generation serves: retire the old one.
    Promote,
    /// The new fleet is not wanted (the cluster serves the node's total).
    DropIncoming,
}

/// One step, away from the actor.
struct Stepper {
    redis: ClusterRedis,
    publisher: Option<Addr<EventPublisher>>,
    serving: Generation,
    incoming: Option<Generation>,
    progress: Progress,
}

impl ClusterNode {
    /// Reads the generation record and takes the next step of a
    /// re-sharding, unless one is under way.
    pub(super) fn follow(&mut self, ctx: &mut Context<Self>) {
        if self.stepping || self.stopping || self.starting.is_some() {
            return;
        }
        self.stepping = true;
        let stepper = Stepper {
            redis: self.shared.redis.clone(),
            publisher: self.shared.publisher.clone(),
            serving: self.serving.clone(),
            incoming: self.incoming.clone(),
            progress: std::mem::take(&mut self.reshard),
        };
        ctx.spawn(
            stepper
                .run()
                .into_actor(self)
                .map(|(progress, next), node, ctx| {
                    node.stepping = false;
                    node.reshard = progress;
                    match next {
                        Ok(Next::Stay) => {}
                        Ok(Next::StartFleet { total }) => node.start_fleet(total, ctx),
                        Ok(Next::Promote) => node.promote(),
                        Ok(Next::DropIncoming) => node.drop_incoming(),
                        Err(error) => log::warn!(
                            "node {}: re-sharding step failed, retried: {error}",
                            node.shared.config.node_id
                        ),
                    }
                }),
        );
    }

    fn start_fleet(&mut self, total: u32, ctx: &mut Context<Self>) {
        if let Some(stale) = self.incoming.take() {
            stale.fleet.do_send(RetireFleet);
        }
        log::info!(
            "node {}: starting the fleet of {total} shards",
            self.shared.config.node_id
        );
        self.starting = Some(total);
        let parts = self.shared.fleet_parts(total, ctx.address());
        ctx.spawn(
            FleetNode::start(parts)
                .into_actor(self)
                .map(move |result, node, _| {
                    node.starting = None;
                    match result {
                        Ok(fleet) => node.incoming = Some(Generation { total, fleet }),
                        Err(error) => log::error!(
                            "node {}: the fleet of {total} shards did not start: {error}",
                            node.shared.config.node_id
                        ),
                    }
                }),
        );
    }

    fn promote(&mut self) {
        let Some(incoming) = self.incoming.take() else {
            return;
        };
        let old = std::mem::replace(&mut self.serving, incoming);
        log::info!(
            "node {}: the cluster serves {} shards, the fleet of {} retires",
            self.shared.config.node_id,
            self.serving.total,
            old.total
        );
        old.fleet.do_send(RetireFleet);
        if let Some(publisher) = &self.shared.publisher {
            publisher.do_send(Gated(GateCall::End(old.total)));
        }
        self.reshard = Progress::default();
    }

    fn drop_incoming(&mut self) {
        if let Some(incoming) = self.incoming.take() {
            log::warn!(
                "node {}: the re-sharding to {} shards was given up",
                self.shared.config.node_id,
                incoming.total
            );
            incoming.fleet.do_send(RetireFleet);
        }
        if let Some(publisher) = &self.shared.publisher {
            publisher.do_send(Gated(GateCall::Abandon));
        }
        self.reshard = Progress::default();
    }

    /// A shard was refused with 4011 or 4010: asks Discord for the
    /// recommended count and starts a re-sharding to it.
    pub(super) fn resharding_required(&mut self, shard: ShardId, ctx: &mut Context<Self>) {
        if shard.total() != self.serving.total || self.incoming.is_some() || self.discovering {
            return;
        }
        self.discovering = true;
        let config = self.shared.config.clone();
        let redis = self.shared.redis.clone();
        let from = self.serving.total;
        ctx.spawn(
            async move {
                let info = gateway_info(&config).await?;
                if info.shards <= from {
                    return Err(ClusterError::ReshardRefused(format!(
                        "shard {shard} was refused, but Discord recommends {} shards and the cluster runs {from}",
                        info.shards
                    )));
                }
                request(redis, from, info.shards).await
            }
            .into_actor(self)
            .map(|result, node, _| {
                node.discovering = false;
                match result {
                    Ok(()) => {}
                    // Another node's refused shard started it first.
                    Err(ClusterError::ReshardRefused(reason)) => log::info!(
                        "node {}: not re-sharding: {reason}",
                        node.shared.config.node_id
                    ),
                    Err(error) => log::error!("node {}: {error}", node.shared.config.node_id),
                }
            }),
        );
    }
}

impl Stepper {
    async fn run(mut self) -> (Progress, Result<Next, ClusterError>) {
        let next = self.step().await;
        (self.progress, next)
    }

    async fn step(&mut self) -> Result<Next, ClusterError> {
        let serving = self.serving.total;
        let generation = state::read_or_init(&self.redis, serving).await?;
        let Some(to) = generation
            .next
            .filter(|_| generation.stage != Stage::Serving)
        else {
            if generation.total == serving {
                return Ok(if self.incoming.is_some() {
                    Next::DropIncoming
                } else {
                    Next::Stay
                });
            }
            return match self.incoming.clone() {
                Some(incoming) if incoming.total == generation.total => {
                    // New shards taken over late are still held: let them go.
                    let new = fleet_part(&incoming.fleet).await?;
                    self.release(serving, generation.total, &new).await?;
                    Ok(Next::Promote)
                }
                // This node missed the re-sharding: it joins the new total.
                _ => Ok(Next::StartFleet {
                    total: generation.total,
                }),
            };
        };
        let from = generation.total;
        if from != serving {
            log::warn!(
                "the cluster re-shards {from} -> {to}, but this node serves {serving} shards"
            );
            return Ok(Next::Stay);
        }
        if self.progress.of != Some((from, to)) {
            self.progress = Progress {
                of: Some((from, to)),
                ..Progress::default()
            };
        }
        // Before the new fleet's first event: its events are held.
        self.gate(GateCall::Begin { from, to }).await?;
        let incoming = match self.incoming.clone() {
            Some(incoming) if incoming.total == to => incoming,
            _ => return Ok(Next::StartFleet { total: to }),
        };
        let new = fleet_part(&incoming.fleet).await?;
        if generation.stage == Stage::Starting {
            let ready: Vec<u32> = new
                .shards
                .iter()
                .filter(|s| s.ready && s.lease == LeaseState::Running)
                .map(|s| s.number)
                .collect();
            state::mark(&self.redis, to, Step::Ready, &ready).await?;
            if state::advance(
                &self.redis,
                to,
                Stage::Starting,
                Step::Ready,
                to,
                Stage::Switching,
            )
            .await?
            {
                log::info!("re-sharding {from} -> {to}: every new shard is ready, switching");
            }
            return Ok(Next::Stay);
        }
        self.switch(from, to, &new).await?;
        Ok(Next::Stay)
    }

    /// The `switching` stage's part of this node.
    async fn switch(&mut self, from: u32, to: u32, new: &FleetPart) -> Result<(), ClusterError> {
        for shard in running(new) {
            if self.progress.heads_written.contains(&shard) {
                continue;
            }
            let heads = match self.gate(GateCall::Heads(ShardId::new(shard, to))).await? {
                GateAnswer::Heads(heads) => heads,
                _ => Vec::new(),
            };
            let mut by_old: HashMap<u32, Vec<(Key, Mark)>> = HashMap::new();
            for (key, mark) in heads {
                // Guildless events (DMs) go to shard 0 in any total.
                let old = key.map_or(0, |guild| shard_for_guild(guild, from));
                by_old.entry(old).or_default().push((key, mark));
            }
            state::write_heads(&self.redis, to, shard, &by_old).await?;
            self.progress.heads_written.insert(shard);
        }
        if state::members(&self.redis, to, Step::HeadsWritten)
            .await?
            .len()
            < to as usize
        {
            return Ok(());
        }
        let old = fleet_part(&self.serving.fleet).await?;
        for report in old.shards.iter().filter(|s| s.lease == LeaseState::Running) {
            let number = report.number;
            if self.progress.recorded.contains(&number) {
                continue;
            }
            let shard = ShardId::new(number, from);
            if !self.progress.draining.contains_key(&number) {
                let heads = state::read_heads(&self.redis, to, number).await?;
                self.gate(GateCall::Drain(shard, heads)).await?;
                self.progress.draining.insert(number, Instant::now());
            }
            let record = match self.progress.unwritten.get(&number) {
                Some(record) => record.clone(),
                None => {
                    let since = self.progress.draining[&number];
                    let force = report.failed || since.elapsed() >= DRAIN_LIMIT;
                    if force && !report.failed {
                        log::warn!("shard {shard}: heads not reached in {DRAIN_LIMIT:?}, silenced");
                    }
                    let record = match self.gate(GateCall::TakeRecord(shard, force)).await? {
                        GateAnswer::Record(record) => record,
                        _ => None,
                    };
                    let record = match (record, &self.publisher) {
                        (Some(record), _) => record,
                        // Without a bus there is nothing to record.
                        (None, None) => RecordWire::default(),
                        (None, Some(_)) => continue,
                    };
                    if let Some(publisher) = &self.publisher {
                        // What it published is stored before the new
                        // generation's first event is.
                        let _ = publisher.send(FlushPublisher).await;
                    }
                    self.progress.unwritten.insert(number, record.clone());
                    record
                }
            };
            state::write_record(&self.redis, to, number, &record).await?;
            self.progress.unwritten.remove(&number);
            self.progress.recorded.insert(number);
        }
        if state::members(&self.redis, to, Step::RecordsWritten)
            .await?
            .len()
            < from as usize
        {
            return Ok(());
        }
        self.release(from, to, new).await?;
        if state::advance(
            &self.redis,
            to,
            Stage::Switching,
            Step::Switched,
            to,
            Stage::Serving,
        )
        .await?
        {
            log::info!("re-sharding {from} -> {to}: switched, the cluster serves {to} shards");
        }
        Ok(())
    }

    /// Publishes the held events of this node's new shards, minus what the
    /// old generation published.
    async fn release(&mut self, from: u32, to: u32, new: &FleetPart) -> Result<(), ClusterError> {
        let pending: Vec<u32> = running(new)
            .filter(|s| !self.progress.released.contains(s))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let old = match &self.progress.old {
            Some(old) => Arc::clone(old),
            None => {
                let mut old = OldGeneration::new(from);
                for (shard, record) in state::read_records(&self.redis, to, from).await? {
                    old.add(shard, record);
                }
                let old = Arc::new(old);
                self.progress.old = Some(Arc::clone(&old));
                old
            }
        };
        for shard in pending {
            self.gate(GateCall::Release(ShardId::new(shard, to), Arc::clone(&old)))
                .await?;
            state::mark(&self.redis, to, Step::Switched, &[shard]).await?;
            self.progress.released.insert(shard);
        }
        Ok(())
    }

    async fn gate(&self, call: GateCall) -> Result<GateAnswer, ClusterError> {
        match &self.publisher {
            Some(publisher) => publisher
                .send(Gated(call))
                .await
                .map_err(|_| ClusterError::Stopped),
            None => Ok(GateAnswer::Done),
        }
    }
}

/// The shards of a fleet whose lease is held and which run.
fn running(part: &FleetPart) -> impl Iterator<Item = u32> + '_ {
    part.shards
        .iter()
        .filter(|s| s.lease == LeaseState::Running)
        .map(|s| s.number)
}

async fn fleet_part(fleet: &Addr<FleetNode>) -> Result<FleetPart, ClusterError> {
    fleet
        .send(GetFleetPart)
        .await
        .map_err(|_| ClusterError::Stopped)
}

/// Starts a re-sharding of a cluster serving `from` shards to `to`.
pub(super) async fn request(redis: ClusterRedis, from: u32, to: u32) -> Result<(), ClusterError> {
    if to <= from {
        return Err(ClusterError::ReshardRefused(format!(
            "the cluster runs {from} shards; it re-shards to more, not {to}"
        )));
    }
    if state::begin(&redis, from, to).await? {
        log::info!("re-sharding {from} -> {to} started");
        Ok(())
    } else {
        Err(ClusterError::ReshardRefused(format!(
            "a re-sharding is under way, or the cluster does not serve {from} shards"
        )))
    }
}

/// A re-sharding request over the bus.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct ReshardRequest {
    pub(crate) shards: u32,
}

/// The answer to a [`ReshardRequest`].
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct ReshardAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// Answers re-sharding requests on the bus's control subject (one node of
/// the queue group takes each), until the task is aborted.
pub(super) async fn serve_requests(bus: EventBus, node: Addr<ClusterNode>) {
    let subject = bus.control_subject("reshard");
    let mut requests = match bus
        .client()
        .queue_subscribe(subject.clone(), "nodes".to_owned())
        .await
    {
        Ok(requests) => requests,
        Err(error) => {
            log::error!("cannot serve re-sharding requests on {subject}: {error}");
            return;
        }
    };
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply.clone() else {
            continue;
        };
        let answer = match serde_json::from_slice::<ReshardRequest>(&request.payload) {
            Err(error) => ReshardAnswer {
                error: Some(format!("unreadable request: {error}")),
            },
            Ok(ReshardRequest { shards }) => match node.send(ReshardCluster { shards }).await {
                Ok(Ok(())) => ReshardAnswer::default(),
                Ok(Err(error)) => ReshardAnswer {
                    error: Some(error.to_string()),
                },
                Err(_) => ReshardAnswer {
                    error: Some("the node is stopping".to_owned()),
                },
            },
        };
        let payload = serde_json::to_vec(&answer).unwrap_or_else(|_| b"{}".to_vec());
        if let Err(error) = bus.client().publish(reply, payload.into()).await {
            log::warn!("answering a re-sharding request failed: {error}");
        }
    }
}
