//! Publishing a gateway process's dispatches to JetStream.

use super::{EventBus, HEADER_EVENT, HEADER_SEQUENCE, HEADER_SESSION, HEADER_SHARD};
use crate::reshard::{
    gate::{Gates, Passage},
    matching::{Key, Mark, OldGeneration, RecordWire},
};
use actix::{Actor, Context, Handler, Message, ResponseFuture};
use async_nats::{
    HeaderMap, jetstream::context::PublishAckFuture, jetstream::message::PublishMessage,
};
use bytes::Bytes;
use discore_gateway::{Dispatch, DispatchEvent, GatewayEvent};
use discore_protocol::ShardId;
use futures_util::{StreamExt as _, stream::FuturesOrdered};
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::{mpsc, oneshot};

/// Publishes awaiting their acknowledgement at most.
const WINDOW: usize = 256;
/// The longest wait between two attempts of a failed publish.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// What the publisher knows of each shard of this process: the session it
/// runs, and which of its dispatches are not acknowledged by JetStream yet.
///
/// The session makes a dispatch's message id `<session>:<sequence>`: the
/// same dispatch published twice (by the process that checkpointed it and
/// by the one that resumed and had it replayed) gets the same id, and
/// JetStream drops the second. READY events set it; a process that resumes
/// a session records it before the shard starts (the cluster node does this
/// from the saved session).
///
/// The pending dispatches bound the checkpoints: a session is saved with a
/// sequence no later than the last dispatch JetStream acknowledged, so a
/// process that resumes it after a crash has every dispatch not yet
/// published replayed, and none is lost.
#[derive(Debug, Default)]
pub struct PublishLedger(Mutex<HashMap<ShardId, ShardLedger>>);

#[derive(Debug, Default)]
struct ShardLedger {
    /// The shard moved to another process: its events still arriving here
    /// are not published (the new owner has them replayed).
    released: bool,
    session: Option<Arc<str>>,
    /// Sequences queued and not acknowledged, with their count.
    pending: BTreeMap<u64, u32>,
    /// The last sequence queued.
    last_queued: Option<u64>,
}

impl PublishLedger {
    fn with<R>(&self, shard: ShardId, f: impl FnOnce(&mut ShardLedger) -> R) -> R {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(all.entry(shard).or_default())
    }

    /// Records the session `shard` runs (a new one starts with nothing
    /// pending).
    pub fn set_session(&self, shard: ShardId, session: &str) {
        self.with(shard, |ledger| {
            if ledger.session.as_deref() != Some(session) {
                *ledger = ShardLedger {
                    session: Some(session.into()),
                    ..ShardLedger::default()
                };
            }
        });
    }

    /// The session `shard` runs, if known.
    pub fn session(&self, shard: ShardId) -> Option<Arc<str>> {
        self.with(shard, |ledger| ledger.session.clone())
    }

    /// `shard` runs here again (adopted to identify; a resumed shard calls
    /// [`PublishLedger::set_session`] instead): its events are published.
    pub fn claim(&self, shard: ShardId) {
        self.with(shard, |ledger| *ledger = ShardLedger::default());
    }

    /// `shard` moved to another process: the events of it that still
    /// arrive (a shard stopping after its lease was lost) are dropped, not
    /// published without a deduplication id; the new owner resumes from a
    /// checkpoint no later than what was published and has them replayed.
    pub fn forget(&self, shard: ShardId) {
        self.with(shard, |ledger| {
            *ledger = ShardLedger {
                released: true,
                ..ShardLedger::default()
            };
        });
    }

    fn released(&self, shard: ShardId) -> bool {
        self.with(shard, |ledger| ledger.released)
    }

    /// The latest sequence of `session` that may be checkpointed: every
    /// dispatch up to it was acknowledged. `None` when the ledger tracks
    /// another session (or none): nothing to bound.
    pub fn safe_sequence(&self, shard: ShardId, session: &str) -> Option<u64> {
        self.with(shard, |ledger| {
            if ledger.session.as_deref() != Some(session) {
                return None;
            }
            match ledger.pending.keys().next() {
                Some(first) => Some(first.saturating_sub(1)),
                None => ledger.last_queued,
            }
        })
    }

    fn queued(&self, shard: ShardId, sequence: u64) {
        self.with(shard, |ledger| {
            *ledger.pending.entry(sequence).or_default() += 1;
            ledger.last_queued = Some(ledger.last_queued.map_or(sequence, |s| s.max(sequence)));
        });
    }

    fn acknowledged(&self, shard: ShardId, sequence: u64) {
        self.with(shard, |ledger| {
            if let Some(count) = ledger.pending.get_mut(&sequence) {
                *count -= 1;
                if *count == 0 {
                    ledger.pending.remove(&sequence);
                }
            }
        });
    }
}

/// Counters of a publisher.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct PublisherStats {
    /// Dispatches stored by JetStream.
    pub published: u64,
    /// Dispatches JetStream recognised as duplicates and dropped.
    pub duplicates: u64,
    /// Publish attempts that failed and were retried.
    pub retries: u64,
    /// Dispatches waiting to be published or acknowledged.
    pub pending: u64,
    /// Dispatches not published: of shards that had moved to another
    /// process (the new owner has them replayed), or built by hand without
    /// the data as received.
    pub dropped: u64,
    /// Dispatches not published during a re-sharding because the other
    /// generation published them (or, for a new session's READY and
    /// GUILD_CREATEs, because the user had them already).
    pub withheld: u64,
    /// Dispatches of the new generation held until the switch, now.
    pub held: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    duplicates: AtomicU64,
    retries: AtomicU64,
    queued: AtomicU64,
    dropped: AtomicU64,
    withheld: AtomicU64,
}

/// One dispatch to publish. Holding the event holds its delivery credit, so
/// a shard whose events NATS does not take fast enough pauses reading
/// (events held for a re-sharding's switch give theirs back: the shard
/// must keep reading meanwhile).
pub(crate) struct Job {
    pub(crate) shard: ShardId,
    pub(crate) sequence: u64,
    pub(crate) name: String,
    subject: String,
    headers: HeaderMap,
    pub(crate) payload: Bytes,
    event: Option<GatewayEvent>,
    attempts: u32,
}

impl Job {
    /// Lets the event (and its delivery credit) go, keeping what is
    /// published.
    pub(crate) fn detach(mut self) -> Self {
        self.event = None;
        self
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "a publish is the common case: boxing it would cost an allocation per event"
)]
enum Input {
    Publish(Job),
    Flush(oneshot::Sender<()>),
}

/// An actor that publishes every [`GatewayEvent`] it receives to the bot's
/// stream: subject per event type and shard, the dispatch's data (`d`)
/// exactly as Discord sent it as payload ([`GatewayEvent::raw_data`]), and
/// the shard, event, sequence and session as headers (`docs/cluster.md`,
/// "3. The event bus").
///
/// Subscribe it to the fleet (`ManagerConfig::subscribe(publisher.recipient(),
/// EventFilter::all())`); the [`ClusterNode`](crate::ClusterNode) does this
/// itself when it is given a bus. Publishes are pipelined (up to 256
/// awaiting acknowledgement) in the order events arrive, which is each
/// shard's order; a failed publish is retried with the same message id until
/// it is acknowledged, so no dispatch is lost while NATS is away (the shards
/// pause reading meanwhile: each waiting event holds a delivery credit).
#[derive(Debug)]
pub struct EventPublisher {
    bus: EventBus,
    ledger: Arc<PublishLedger>,
    inputs: Option<mpsc::UnboundedSender<Input>>,
    counters: Arc<Counters>,
    /// What a re-sharding does to each shard's events.
    gates: Gates,
}

impl EventPublisher {
    /// A publisher on `bus`; `ledger` is shared with whoever knows the
    /// sessions shards resume and saves their checkpoints (the cluster node).
    pub fn new(bus: EventBus, ledger: Arc<PublishLedger>) -> Self {
        Self {
            bus,
            ledger,
            inputs: None,
            counters: Arc::default(),
            gates: Gates::default(),
        }
    }

    /// Queues a job for publishing.
    fn send(&self, job: Job) {
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        if let Some(inputs) = &self.inputs
            && inputs.send(Input::Publish(job)).is_err()
        {
            log::error!("event publisher task is gone; a dispatch was not published");
        }
    }

    /// A job not published because of the re-sharding: its checkpoint may
    /// move past it.
    fn withhold(&self, job: &Job) {
        self.counters.withheld.fetch_add(1, Ordering::Relaxed);
        self.ledger.acknowledged(job.shard, job.sequence);
    }

    /// Applies what the gates decided.
    pub(crate) fn pass(&self, passage: Passage) {
        for job in passage.publish {
            self.send(job);
        }
        for job in &passage.withhold {
            self.withhold(job);
        }
    }

    fn job(&self, event: GatewayEvent) -> Option<Job> {
        let shard = event.shard;
        if self.ledger.released(shard) {
            log::debug!(
                "shard {shard}: moved to another process, {} not published",
                event.name()
            );
            return None;
        }
        if let Some(session) = session_of_ready(&event.event) {
            self.ledger.set_session(shard, &session);
        }
        let name = event.name().to_owned();
        // Discord's bytes, exactly as the shard received them (a shared
        // slice of the frame): never re-serialized from the typed event.
        let Some(payload) = event.raw_data_shared() else {
            log::warn!(
                "shard {shard}: {name} #{} carries no received data (built by hand without \
                 GatewayEvent::with_raw_data), not published",
                event.sequence
            );
            return None;
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            HEADER_SHARD,
            format!("{}/{}", shard.number(), shard.total()).as_str(),
        );
        headers.insert(HEADER_EVENT, name.as_str());
        headers.insert(HEADER_SEQUENCE, event.sequence.to_string().as_str());
        let message_id = match self.ledger.session(shard) {
            Some(session) => {
                headers.insert(HEADER_SESSION, &*session);
                format!("{session}:{}", event.sequence)
            }
            None => {
                // Without the session a (shard, sequence) id could drop a
                // later session's dispatch: publish without deduplication.
                log::debug!("shard {shard}: session unknown, {name} published without dedup id");
                format!("{shard}:{}:{:016x}", event.sequence, fastrand::u64(..))
            }
        };
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id.as_str());
        self.ledger.queued(shard, event.sequence);
        Some(Job {
            shard,
            sequence: event.sequence,
            subject: self.bus.event_subject(&name, shard.number()),
            name,
            headers,
            payload,
            event: Some(event),
            attempts: 0,
        })
    }
}

/// The session id a READY dispatch starts.
fn session_of_ready(dispatch: &Dispatch) -> Option<String> {
    match dispatch {
        Dispatch::Known {
            event: DispatchEvent::Ready(ready),
            ..
        } => Some(ready.session_id.clone()),
        Dispatch::Raw(raw) if &*raw.name == "READY" => {
            #[derive(serde::Deserialize)]
            struct Ready {
                session_id: String,
            }
            serde_json::from_str::<Ready>(raw.data.get())
                .ok()
                .map(|r| r.session_id)
        }
        _ => None,
    }
}

impl Actor for EventPublisher {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        let (inputs, receiver) = mpsc::unbounded_channel();
        self.inputs = Some(inputs);
        actix_rt::spawn(pump(
            self.bus.clone(),
            receiver,
            Arc::clone(&self.counters),
            Arc::clone(&self.ledger),
        ));
    }
}

/// Asks a publisher for its counters.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "PublisherStats")]
pub struct GetPublisherStats;

/// Resolves once every dispatch received before it is acknowledged.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub struct FlushPublisher;

impl Handler<GatewayEvent> for EventPublisher {
    type Result = ();

    /// Queues the dispatch for publishing (through the re-sharding's gate
    /// of its shard, if there is one).
    fn handle(&mut self, event: GatewayEvent, _: &mut Context<Self>) {
        self.gates.track_guilds(&event);
        if self.gates.is_retired(event.shard) {
            // The old generation after a re-sharding's switch: the new one
            // publishes its guilds.
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(job) = self.job(event) else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match self.gates.admit(job) {
            Ok(job) => self.send(job),
            Err(passage) => self.pass(passage),
        }
    }
}

/// What a node asks of its publisher's re-sharding gates
/// (`crate::reshard::gate`).
#[derive(Debug)]
pub(crate) enum GateCall {
    /// A re-sharding from `from` to `to` shards began.
    Begin { from: u32, to: u32 },
    /// A new shard's heads.
    Heads(ShardId),
    /// An old shard drains up to these heads.
    Drain(ShardId, Vec<(Key, Mark)>),
    /// An old shard's record once drained (`true`: now).
    TakeRecord(ShardId, bool),
    /// A new shard switches.
    Release(ShardId, Arc<OldGeneration>),
    /// The re-sharding from this total is over.
    End(u32),
    /// The re-sharding was given up.
    Abandon,
    /// A shard runs here again after it was lost.
    Forget(ShardId),
}

/// The answer to a [`GateCall`].
#[derive(Debug)]
pub(crate) enum GateAnswer {
    Done,
    Heads(Vec<(Key, Mark)>),
    Record(Option<RecordWire>),
}

/// A [`GateCall`] for the publisher.
#[derive(Debug, Message)]
#[rtype(result = "GateAnswer")]
pub(crate) struct Gated(pub(crate) GateCall);

impl Handler<Gated> for EventPublisher {
    type Result = actix::MessageResult<Gated>;

    /// Applies the call to the gates, in order with the events.
    fn handle(&mut self, Gated(call): Gated, _: &mut Context<Self>) -> Self::Result {
        let answer = match call {
            GateCall::Begin { from, to } => {
                self.gates.begin(from, to);
                GateAnswer::Done
            }
            GateCall::Heads(shard) => GateAnswer::Heads(self.gates.heads(shard)),
            GateCall::Drain(shard, heads) => {
                self.gates.drain(shard, heads);
                GateAnswer::Done
            }
            GateCall::TakeRecord(shard, force) => {
                GateAnswer::Record(self.gates.take_record(shard, force))
            }
            GateCall::Release(shard, old) => {
                let passage = self.gates.release(shard, &old);
                self.pass(passage);
                GateAnswer::Done
            }
            GateCall::End(from) => {
                self.gates.end(from);
                GateAnswer::Done
            }
            GateCall::Abandon => {
                let passage = self.gates.abandon();
                self.pass(passage);
                GateAnswer::Done
            }
            GateCall::Forget(shard) => {
                self.gates.forget(shard);
                GateAnswer::Done
            }
        };
        actix::MessageResult(answer)
    }
}

impl Handler<GetPublisherStats> for EventPublisher {
    type Result = actix::MessageResult<GetPublisherStats>;

    /// Answers the counters.
    fn handle(&mut self, _: GetPublisherStats, _: &mut Context<Self>) -> Self::Result {
        let c = &self.counters;
        let published = c.published.load(Ordering::Relaxed);
        let duplicates = c.duplicates.load(Ordering::Relaxed);
        actix::MessageResult(PublisherStats {
            published,
            duplicates,
            retries: c.retries.load(Ordering::Relaxed),
            pending: c
                .queued
                .load(Ordering::Relaxed)
                .saturating_sub(published + duplicates),
            dropped: c.dropped.load(Ordering::Relaxed),
            withheld: c.withheld.load(Ordering::Relaxed),
            held: self.gates.held() as u64,
        })
    }
}

impl Handler<FlushPublisher> for EventPublisher {
    type Result = ResponseFuture<()>;

    /// Waits for every earlier dispatch's acknowledgement.
    fn handle(&mut self, _: FlushPublisher, _: &mut Context<Self>) -> Self::Result {
        let (done, flushed) = oneshot::channel();
        let sent = self
            .inputs
            .as_ref()
            .is_some_and(|inputs| inputs.send(Input::Flush(done)).is_ok());
        Box::pin(async move {
            if sent {
                let _ = flushed.await;
            }
        })
    }
}

type Acked = Pin<Box<dyn Future<Output = (Job, Result<bool, String>)>>>;

/// Publishes in order with a window of acknowledgements; retries failures
/// before anything newer.
async fn pump(
    bus: EventBus,
    mut inputs: mpsc::UnboundedReceiver<Input>,
    counters: Arc<Counters>,
    ledger: Arc<PublishLedger>,
) {
    let mut inflight: FuturesOrdered<Acked> = FuturesOrdered::new();
    let mut retries: VecDeque<Job> = VecDeque::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut open = true;
    loop {
        if inflight.is_empty() && retries.is_empty() {
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
            if !open {
                return;
            }
        }
        if let Some(job) = retries.pop_front() {
            let delay = retry_delay(job.attempts);
            actix_rt::time::sleep(delay).await;
            inflight.push_back(publish(&bus, job).await);
            continue;
        }
        tokio::select! {
            input = inputs.recv(), if open && inflight.len() < WINDOW => match input {
                Some(Input::Publish(job)) => inflight.push_back(publish(&bus, job).await),
                Some(Input::Flush(done)) => flushes.push(done),
                None => open = false,
            },
            Some((job, result)) = inflight.next() => match result {
                Ok(duplicate) => {
                    let counter = if duplicate { &counters.duplicates } else { &counters.published };
                    counter.fetch_add(1, Ordering::Relaxed);
                    ledger.acknowledged(job.shard, job.sequence);
                }
                Err(error) => {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "publishing {} failed (attempt {}), retrying: {error}",
                        job.subject,
                        job.attempts + 1
                    );
                    retries.push_back(Job { attempts: job.attempts + 1, ..job });
                }
            },
        }
    }
}

/// Sends one publish; the returned future resolves with its acknowledgement.
async fn publish(bus: &EventBus, job: Job) -> Acked {
    let message = PublishMessage::build()
        .payload(job.payload.clone())
        .headers(job.headers.clone());
    match bus
        .jetstream()
        .send_publish(job.subject.clone(), message)
        .await
    {
        Ok(ack) => Box::pin(wait_ack(job, ack)),
        Err(error) => {
            let error = error.to_string();
            Box::pin(async move { (job, Err(error)) })
        }
    }
}

async fn wait_ack(job: Job, ack: PublishAckFuture) -> (Job, Result<bool, String>) {
    let result = ack.await.map(|a| a.duplicate).map_err(|e| e.to_string());
    (job, result)
}

fn retry_delay(attempts: u32) -> Duration {
    Duration::from_millis(20u64.saturating_mul(1 << attempts.min(7))).min(MAX_RETRY_DELAY)
}
