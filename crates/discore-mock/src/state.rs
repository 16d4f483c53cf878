//! The emulator's shared state: the world, sessions with their replay
//! buffers, live connections, rate-limit bookkeeping and the observations.
//!
//! One mutex guards it all (flood payload pools, a cache, have their own);
//! it is never held across an await, nor while an event is serialized or a
//! connection task woken. Sequence numbers are assigned under the lock and
//! each session's pending dispatches wait in its outbox, so a connection
//! writes them in sequence order no matter which thread produced them.

use crate::{
    config::{BadSequenceBehaviour, MockConfig},
    control::{Fault, Target},
    event::Event,
    intents,
    observe::{
        ConnectionEnd, ConnectionId, IdentifyOutcome, IdentifyRecord, Observed, ResumeOutcome,
        ResumeRecord, SessionRecord, Violation, ViolationKind,
    },
    payloads,
    send_clock::SendClock,
    session_index::SessionIndex,
    store::{GuildOverlay, Store},
    world::{World, shard_of},
};
use bytes::Bytes;
use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::{Notify, mpsc, oneshot};

/// State shared by every worker thread and the handle.
pub(crate) struct Shared {
    pub(crate) config: Arc<MockConfig>,
    pub(crate) started: Instant,
    /// The discovery listener's address (gateway URL and REST).
    pub(crate) addr: OnceLock<SocketAddr>,
    /// The resume listener's address (READY's `resume_gateway_url`).
    pub(crate) resume_addr: OnceLock<SocketAddr>,
    state: Mutex<State>,
    /// Flood payloads by what decides them (see `gateway::flood`), kept
    /// apart from `state` so that building them never holds its lock.
    pub(crate) flood_pools: Mutex<FloodPools>,
    /// When dispatches went to their socket writers, while asked for.
    pub(crate) send_clock: SendClock,
}

/// The key of a flood pool: the world it was built from (its address; the
/// entry holds that world, so the address is not reused while it exists),
/// the guilds (indices) of the shard, the session's intents.
pub(crate) type FloodPoolKey = (usize, Vec<usize>, u64);

/// Pools of encoded flood payloads, shared by the connections whose pools
/// would be equal: of 1,000 shards over 64 guilds, most own no guild.
#[derive(Default)]
pub(crate) struct FloodPools(pub(crate) HashMap<FloodPoolKey, (Arc<World>, Arc<[Bytes]>)>);

impl Shared {
    pub(crate) fn new(config: MockConfig) -> Self {
        let config = Arc::new(config);
        let now = Instant::now();
        Self {
            state: Mutex::new(State::new(Arc::clone(&config), now)),
            flood_pools: Mutex::new(FloodPools::default()),
            send_clock: SendClock::default(),
            config,
            started: now,
            addr: OnceLock::new(),
            resume_addr: OnceLock::new(),
        }
    }

    /// Locks the state. A panic while holding the lock does not make the
    /// emulator unusable: the data is still consistent enough for a test.
    pub(crate) fn lock(&self) -> StateGuard<'_> {
        StateGuard(Some(
            self.state.lock().unwrap_or_else(PoisonError::into_inner),
        ))
    }

    /// Time since the server started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.get().map_or(0, SocketAddr::port)
    }

    /// The discovery URL, bare as Discord's: `ws://127.0.0.1:PORT`.
    pub(crate) fn gateway_url(&self) -> String {
        format!("ws://{}", self.listener_authority(&self.addr))
    }

    /// The resume URL, bare as Discord's: `ws://127.0.0.1:RESUME_PORT`.
    pub(crate) fn resume_url(&self) -> String {
        format!("ws://{}", self.listener_authority(&self.resume_addr))
    }

    fn listener_authority(&self, addr: &OnceLock<SocketAddr>) -> String {
        addr.get()
            .map_or_else(|| "127.0.0.1:0".to_owned(), SocketAddr::to_string)
    }

    /// Whether a request came in on the resume listener.
    pub(crate) fn is_resume_listener(&self, local: SocketAddr) -> bool {
        self.resume_addr.get() == Some(&local)
    }
}

/// A dispatch kept for replay and waiting in an outbox.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub(crate) seq: u64,
    pub(crate) name: Arc<str>,
    pub(crate) data: Bytes,
}

/// The dispatch sequences handed to a socket: the first and the last (0:
/// none yet). Written by the connection task without the lock, read by the
/// resume judge and the observations.
#[derive(Debug, Default)]
pub(crate) struct Written {
    first: AtomicU64,
    last: AtomicU64,
}

impl Written {
    /// Records that the sequences `first..=last` went to the socket.
    pub(crate) fn record(&self, (first, last): (u64, u64)) {
        let _ = self
            .first
            .compare_exchange(0, first, Ordering::Relaxed, Ordering::Relaxed);
        self.last.fetch_max(last, Ordering::Relaxed);
    }

    /// The last sequence handed to the socket (0: none).
    pub(crate) fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    /// The first and the last sequence handed to the socket, if any was.
    pub(crate) fn range(&self) -> Option<(u64, u64)> {
        let first = self.first.load(Ordering::Relaxed);
        (first > 0).then(|| (first, self.last()))
    }
}

/// The locked state. Connection tasks woken by what was done under the
/// lock are woken after it is released: a wake-up can be a system call,
/// and the tasks it wakes take this same lock first thing.
pub(crate) struct StateGuard<'a>(Option<MutexGuard<'a, State>>);

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        self.0
            .as_deref()
            .unwrap_or_else(|| unreachable!("taken only in drop"))
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.0
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("taken only in drop"))
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        let Some(mut state) = self.0.take() else {
            return;
        };
        if state.wakes.is_empty() {
            return;
        }
        let wakes = std::mem::take(&mut state.wakes);
        drop(state);
        for wake in wakes {
            wake.notify_one();
        }
    }
}

/// One gateway session.
pub(crate) struct Session {
    pub(crate) id: String,
    /// The session's number, the key of its record in `Observed::sessions`.
    pub(crate) number: u64,
    pub(crate) shard: [u32; 2],
    pub(crate) intents: u64,
    pub(crate) seq: u64,
    pub(crate) buffer: VecDeque<Stored>,
    pub(crate) connection: Option<ConnectionId>,
    pub(crate) outbox: VecDeque<Stored>,
    pub(crate) expires_at: Option<Instant>,
    /// What its connections wrote: a Resume may not name a later sequence.
    pub(crate) written: Arc<Written>,
}

impl Session {
    fn alive(&self, now: Instant) -> bool {
        self.connection.is_some() || self.expires_at.is_some_and(|at| at > now)
    }

    /// Assigns the next sequence number, keeps the dispatch for replay and
    /// returns it.
    pub(crate) fn push(&mut self, name: Arc<str>, data: Bytes, capacity: usize) -> Stored {
        self.seq += 1;
        let stored = Stored {
            seq: self.seq,
            name,
            data,
        };
        if self.buffer.len() >= capacity {
            self.buffer.pop_front();
        }
        self.buffer.push_back(stored.clone());
        stored
    }
}

/// Messages to a connection task.
#[derive(Debug)]
pub(crate) enum Control {
    Fault(Fault),
    /// Answer the Resume held while resumes were held.
    ReleaseResume,
    Flood {
        count: u64,
        done: oneshot::Sender<u64>,
    },
    Shutdown,
}

/// A live connection as the state sees it.
pub(crate) struct ConnHandle {
    pub(crate) wake: Arc<Notify>,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    pub(crate) session: Option<String>,
    pub(crate) shard: Option<[u32; 2]>,
    /// The sequences its task handed to the socket.
    pub(crate) written: Arc<Written>,
}

/// Where one dispatch went.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// The session that received it.
    pub session_id: String,
    /// The connection it was queued on; `None` when the session is
    /// disconnected (it waits in the replay buffer).
    pub connection: Option<ConnectionId>,
    /// The session's shard tuple.
    pub shard: [u32; 2],
    /// The sequence number it got in that session.
    pub sequence: u64,
}

/// The validated content of an Identify.
pub(crate) struct IdentifyRequest {
    pub(crate) token_ok: bool,
    pub(crate) intents: u64,
    pub(crate) shard: Option<[u64; 2]>,
}

pub(crate) enum IdentifyResult {
    Close(u16, &'static str),
    InvalidSession,
    Ready {
        session_id: String,
        shard: [u32; 2],
        guilds: Vec<usize>,
        world: Arc<World>,
        written: Arc<Written>,
        /// What REST changed in those guilds, for their GUILD_CREATEs.
        overlays: HashMap<usize, GuildOverlay>,
        /// Those of the guilds that are unavailable (an outage): they
        /// arrive as GUILD_DELETE with `unavailable: true`.
        unavailable: HashSet<usize>,
    },
}

pub(crate) enum ResumeResult {
    Close(u16, &'static str),
    InvalidSession,
    Resumed {
        session_id: String,
        shard: [u32; 2],
        intents: u64,
        written: Arc<Written>,
    },
}

/// A REST rate-limit bucket.
pub(crate) struct RestBucket {
    pub(crate) window_start: Instant,
    pub(crate) used: u32,
}

pub(crate) struct State {
    pub(crate) config: Arc<MockConfig>,
    pub(crate) world: Arc<World>,
    pub(crate) sessions: HashMap<String, Session>,
    /// The sessions by shard: kept with `sessions`, which only `insert`,
    /// `purge` and `destroy_session` change.
    session_index: SessionIndex,
    /// Connection tasks to wake once the lock is released.
    wakes: Vec<Arc<Notify>>,
    pub(crate) connections: HashMap<ConnectionId, ConnHandle>,
    pub(crate) observed: Observed,
    buckets: HashMap<u32, Instant>,
    pub(crate) budget_remaining: u32,
    pub(crate) budget_reset_at: Instant,
    pub(crate) reconnect_instead_of_hello: u32,
    /// Identifies still to refuse with op 9 (see
    /// [`MockServer::refuse_identifies`](crate::MockServer::refuse_identifies)).
    pub(crate) identifies_to_refuse: u32,
    /// Guilds in an outage (see
    /// [`MockServer::set_guilds_unavailable`](crate::MockServer::set_guilds_unavailable)).
    pub(crate) unavailable_guilds: HashSet<u64>,
    pub(crate) outage_until: Option<Instant>,
    member_requests: HashMap<u64, Instant>,
    /// What bots changed through REST.
    pub(crate) store: Store,
    pub(crate) rest_buckets: HashMap<String, RestBucket>,
    next_connection: u64,
    session_counter: u64,
    pub(crate) message_counter: u64,
    pub(crate) interaction_counter: u64,
    pub(crate) stopping: bool,
    /// Resumes wait unanswered until released (see
    /// [`MockServer::hold_resumes`](crate::MockServer::hold_resumes)).
    pub(crate) resumes_held: bool,
}

impl State {
    fn new(config: Arc<MockConfig>, now: Instant) -> Self {
        let flags = intents::application_flags(config.granted_intents.bits());
        let world = World::new(
            config.seed,
            config.guilds,
            config.members_per_guild,
            config.channels_per_guild,
            flags,
        );
        Self {
            world: Arc::new(world),
            sessions: HashMap::new(),
            session_index: SessionIndex::default(),
            wakes: Vec::new(),
            connections: HashMap::new(),
            observed: Observed::default(),
            buckets: HashMap::new(),
            budget_remaining: config.session_start_remaining,
            budget_reset_at: now + config.session_start_reset_after,
            reconnect_instead_of_hello: 0,
            identifies_to_refuse: 0,
            unavailable_guilds: HashSet::new(),
            outage_until: None,
            member_requests: HashMap::new(),
            store: Store::default(),
            rest_buckets: HashMap::new(),
            next_connection: 1,
            session_counter: 0,
            message_counter: 0,
            interaction_counter: 0,
            stopping: false,
            resumes_held: false,
            config,
        }
    }

    pub(crate) fn next_connection_id(&mut self) -> ConnectionId {
        let id = ConnectionId(self.next_connection);
        self.next_connection += 1;
        id
    }

    /// Records a violation.
    pub(crate) fn violation(
        &mut self,
        kind: ViolationKind,
        connection: Option<ConnectionId>,
        at: Duration,
        detail: impl Into<String>,
    ) {
        let shard = connection
            .and_then(|c| self.connections.get(&c))
            .and_then(|c| c.shard);
        let detail = detail.into();
        log::debug!("violation {kind:?} on {connection:?} (shard {shard:?}): {detail}");
        crate::observe::push_bounded(
            &mut self.observed.violations,
            Violation {
                kind,
                connection,
                shard,
                at,
                detail,
            },
        );
    }

    /// The budget, reset if its time has come.
    pub(crate) fn refresh_budget(&mut self, now: Instant) {
        if now >= self.budget_reset_at {
            self.budget_remaining = self.config.session_start_total;
            self.budget_reset_at = now + self.config.session_start_reset_after;
        }
    }

    /// The shard count `/gateway/bot` recommends.
    pub(crate) fn recommended_shards(&self) -> u64 {
        (self.world.guilds.len() as u64)
            .div_ceil(self.config.max_guilds_per_shard)
            .max(1)
    }

    /// Brings the records of open connections up to date with what their
    /// tasks wrote (they do so without the lock).
    pub(crate) fn refresh_written(&mut self) {
        for (id, handle) in &self.connections {
            if let Some((first, last)) = handle.written.range()
                && let Some(record) = self.observed.connection_mut(*id)
            {
                record.first_sequence_written = Some(first);
                record.last_sequence_written = Some(last);
            }
        }
    }

    /// Marks expired sessions dead.
    pub(crate) fn purge(&mut self, now: Instant) {
        let expired: Vec<(String, u64, [u32; 2])> = self
            .sessions
            .values()
            .filter(|s| !s.alive(now))
            .map(|s| (s.id.clone(), s.number, s.shard))
            .collect();
        for (id, number, shard) in expired {
            self.sessions.remove(&id);
            self.session_index.remove(shard, &id);
            if let Some(record) = self.observed.session_mut(number) {
                record.alive = false;
                record.connection = None;
            }
        }
    }

    /// Queues `event` on one session if its intents allow it.
    pub(crate) fn deliver(&mut self, session_id: &str, event: &Event) -> Option<Delivery> {
        let capacity = self.config.replay_buffer;
        let max_outbox = self.config.max_outbox;
        let session = self.sessions.get_mut(session_id)?;
        if !event.allowed(session.intents) {
            return None;
        }
        let data = event.data_for(session.intents).clone();
        let stored = session.push(Arc::clone(&event.name), data, capacity);
        let delivery = Delivery {
            session_id: session.id.clone(),
            connection: session.connection,
            shard: session.shard,
            sequence: stored.seq,
        };
        if let Some(record) = self.observed.session_mut(session.number) {
            record.sequence = stored.seq;
        }
        if let Some(connection) = session.connection {
            if session.outbox.len() >= max_outbox {
                // A client that does not read is dropped, as Discord would;
                // its session stays resumable.
                session.outbox.clear();
                if let Some(handle) = self.connections.get(&connection) {
                    log::warn!("{connection} does not read: dropping it");
                    let _ = handle.control.send(Control::Fault(Fault::DropTcp));
                }
            } else {
                session.outbox.push_back(stored);
                if let Some(handle) = self.connections.get(&connection) {
                    self.wakes.push(Arc::clone(&handle.wake));
                }
            }
        }
        Some(delivery)
    }

    /// Sessions an event for `target` goes to, in id order.
    fn sessions_for(&self, target: &Target, now: Instant) -> Vec<String> {
        let alive = |id: &&str| self.sessions.get(*id).is_some_and(|s| s.alive(now));
        let mut ids: Vec<&str> = match target {
            Target::All => self
                .sessions
                .keys()
                .map(String::as_str)
                .filter(alive)
                .collect(),
            Target::Shard(shard) => self.session_index.of_shard(*shard).filter(alive).collect(),
            Target::Guild(guild) => self.session_index.of_guild(*guild).filter(alive).collect(),
            Target::Connection(c) => self
                .sessions
                .values()
                .filter(|s| s.connection == Some(*c))
                .map(|s| s.id.as_str())
                .filter(alive)
                .collect(),
        };
        ids.sort_unstable();
        ids.into_iter().map(str::to_owned).collect()
    }

    /// Routes an event: to `target`, or else to the sessions owning its
    /// guild, or else (guildless) to shard 0.
    pub(crate) fn route(
        &mut self,
        event: &Event,
        target: Option<&Target>,
        now: Instant,
    ) -> Vec<Delivery> {
        let target = match (target, event.guild) {
            (Some(target), _) => target.clone(),
            (None, Some(guild)) => Target::Guild(guild),
            (None, None) => Target::Shard(0),
        };
        self.sessions_for(&target, now)
            .iter()
            .filter_map(|id| self.deliver(id, event))
            .collect()
    }

    /// Live connections a fault target selects.
    pub(crate) fn resolve(&self, target: &Target) -> Vec<ConnectionId> {
        let mut ids: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(id, c)| match target {
                Target::All => true,
                Target::Shard(shard) => c.shard.is_some_and(|s| s[0] == *shard),
                Target::Connection(want) => *id == want,
                Target::Guild(g) => c.shard.is_some_and(|s| shard_of(*g, s[1]) == s[0]),
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// Sends a control message to connections; returns how many got it.
    pub(crate) fn send_control(&self, ids: &[ConnectionId], make: impl Fn() -> Control) -> usize {
        ids.iter()
            .filter_map(|id| self.connections.get(id))
            .filter(|c| c.control.send(make()).is_ok())
            .count()
    }

    /// Handles a validated Identify.
    pub(crate) fn identify(
        &mut self,
        connection: ConnectionId,
        request: &IdentifyRequest,
        version: u8,
        now: Instant,
        at: Duration,
        resume_url: &str,
    ) -> IdentifyResult {
        let shard64 = request.shard.unwrap_or([0, 1]);
        let shard = [
            u32::try_from(shard64[0]).unwrap_or(u32::MAX),
            u32::try_from(shard64[1]).unwrap_or(u32::MAX),
        ];
        let bucket = shard[0] % self.config.max_concurrency;
        let on_resume_url = self
            .observed
            .connection(connection)
            .is_some_and(|c| c.on_resume_url);
        let record = |state: &mut Self, outcome| {
            crate::observe::push_bounded(
                &mut state.observed.identifies,
                IdentifyRecord {
                    connection,
                    shard,
                    bucket,
                    on_resume_url,
                    intents: request.intents,
                    at,
                    outcome,
                },
            );
        };
        let close =
            |state: &mut Self, code: u16, reason: &'static str, kind: Option<ViolationKind>| {
                if let Some(kind) = kind {
                    state.violation(kind, Some(connection), at, reason);
                }
                record(state, IdentifyOutcome::Closed(code));
                IdentifyResult::Close(code, reason)
            };
        if !request.token_ok {
            return close(
                self,
                4004,
                "authentication failed",
                Some(ViolationKind::AuthenticationFailed),
            );
        }
        if request.intents & !intents::DOCUMENTED != 0 {
            return close(self, 4013, "invalid intent(s)", None);
        }
        if request.intents & intents::PRIVILEGED & !self.config.granted_intents.bits() != 0 {
            return close(self, 4014, "disallowed intent(s)", None);
        }
        if shard64[1] == 0 || shard64[0] >= shard64[1] || shard64[1] > u64::from(u32::MAX) {
            return close(self, 4010, "invalid shard", None);
        }
        let guilds = self.world.guilds_of_shard(shard);
        if guilds.len() as u64 > self.config.max_guilds_per_shard {
            return close(self, 4011, "sharding required", None);
        }
        if let Some(last) = self.buckets.get(&bucket)
            && now.saturating_duration_since(*last) < self.config.identify_window
        {
            self.violation(
                ViolationKind::IdentifyConcurrencyExceeded,
                Some(connection),
                at,
                format!("bucket {bucket} identified again within the identify window"),
            );
            record(self, IdentifyOutcome::ConcurrencyExceeded);
            return IdentifyResult::InvalidSession;
        }
        if self.identifies_to_refuse > 0 {
            self.identifies_to_refuse -= 1;
            // It arrived: its bucket's window runs from it all the same.
            self.buckets.insert(bucket, now);
            record(self, IdentifyOutcome::Refused);
            return IdentifyResult::InvalidSession;
        }
        self.refresh_budget(now);
        if self.budget_remaining == 0 {
            self.violation(
                ViolationKind::SessionBudgetExhausted,
                Some(connection),
                at,
                "no session starts remaining",
            );
            record(self, IdentifyOutcome::BudgetExhausted);
            return IdentifyResult::InvalidSession;
        }
        self.budget_remaining -= 1;
        self.buckets.insert(bucket, now);
        record(self, IdentifyOutcome::Accepted);

        self.session_counter += 1;
        let session_id = payloads::hex_id(self.config.seed, self.session_counter);
        let written = Arc::new(Written::default());
        self.session_index.add(shard, &session_id);
        self.sessions.insert(
            session_id.clone(),
            Session {
                id: session_id.clone(),
                number: self.session_counter,
                shard,
                intents: request.intents,
                seq: 0,
                buffer: VecDeque::new(),
                connection: Some(connection),
                outbox: VecDeque::new(),
                expires_at: None,
                written: Arc::clone(&written),
            },
        );
        crate::observe::push_bounded_if(
            &mut self.observed.sessions,
            SessionRecord {
                id: session_id.clone(),
                number: self.session_counter,
                shard,
                intents: request.intents,
                sequence: 0,
                resumed_sequences: Vec::new(),
                connection: Some(connection),
                alive: true,
            },
            |record| !record.alive,
        );
        self.attach(connection, &session_id, shard);
        let session_resume_url;
        let resume_url = if self.config.session_resume_urls {
            session_resume_url = format!("{resume_url}/{session_id}");
            &session_resume_url
        } else {
            resume_url
        };
        let ready = payloads::ready(
            &self.world,
            version,
            &session_id,
            resume_url,
            request.shard.map(|_| shard),
            &guilds,
        );
        self.deliver(&session_id, &Event::plain("READY", &ready, None));
        let overlays = guilds
            .iter()
            .filter_map(|g| self.store.overlay(*g).map(|o| (*g, o)))
            .collect();
        let unavailable = guilds
            .iter()
            .copied()
            .filter(|g| self.unavailable_guilds.contains(&self.world.guild_id(*g)))
            .collect();
        IdentifyResult::Ready {
            session_id,
            shard,
            guilds,
            world: Arc::clone(&self.world),
            written,
            overlays,
            unavailable,
        }
    }

    fn attach(&mut self, connection: ConnectionId, session_id: &str, shard: [u32; 2]) {
        if let Some(handle) = self.connections.get_mut(&connection) {
            handle.session = Some(session_id.to_owned());
            handle.shard = Some(shard);
        }
        if let Some(record) = self.observed.connection_mut(connection) {
            record.session_id = Some(session_id.to_owned());
            record.shard = Some(shard);
        }
    }

    /// Handles a Resume.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn resume(
        &mut self,
        connection: ConnectionId,
        token_ok: bool,
        session_id: &str,
        seq: u64,
        on_resume_url: bool,
        now: Instant,
        at: Duration,
    ) -> ResumeResult {
        let record = |state: &mut Self, outcome| {
            crate::observe::push_bounded(
                &mut state.observed.resumes,
                ResumeRecord {
                    connection,
                    session_id: session_id.to_owned(),
                    seq,
                    on_resume_url,
                    at,
                    outcome,
                    replayed_from: None,
                    replayed_to: None,
                },
            );
        };
        if !token_ok {
            self.violation(
                ViolationKind::AuthenticationFailed,
                Some(connection),
                at,
                "wrong token in resume",
            );
            record(self, ResumeOutcome::Closed(4004));
            return ResumeResult::Close(4004, "authentication failed");
        }
        if !on_resume_url {
            self.violation(
                ViolationKind::ResumeOnDiscoveryUrl,
                Some(connection),
                at,
                "resume did not use resume_gateway_url",
            );
        }
        self.purge(now);
        let Some(session) = self.sessions.get(session_id) else {
            record(self, ResumeOutcome::InvalidSession);
            return ResumeResult::InvalidSession;
        };
        let written = session.written.last();
        if seq > written {
            self.violation(
                ViolationKind::InvalidSequence,
                Some(connection),
                at,
                format!("resume seq {seq} is beyond the last written {written}"),
            );
            // The client must start a new session: this one is over.
            self.destroy_session(session_id);
            return match self.config.bad_sequence {
                BadSequenceBehaviour::Close4007 => {
                    record(self, ResumeOutcome::Closed(4007));
                    ResumeResult::Close(4007, "invalid seq")
                }
                BadSequenceBehaviour::InvalidSession => {
                    record(self, ResumeOutcome::InvalidSession);
                    ResumeResult::InvalidSession
                }
            };
        }
        let oldest = session.buffer.front().map_or(session.seq + 1, |s| s.seq);
        if seq + 1 < oldest {
            // The dispatches after `seq` are no longer kept.
            record(self, ResumeOutcome::InvalidSession);
            return ResumeResult::InvalidSession;
        }
        let previous = session.connection;
        if let Some(previous) = previous
            && previous != connection
            && let Some(handle) = self.connections.get_mut(&previous)
        {
            // The old connection no longer owns the session.
            handle.session = None;
            let _ = handle.control.send(Control::Fault(Fault::Close {
                code: 4000,
                reason: Some("session resumed elsewhere".to_owned()),
            }));
        }
        let Some(session) = self.sessions.get_mut(session_id) else {
            return ResumeResult::InvalidSession;
        };
        let replay: VecDeque<Stored> = session
            .buffer
            .iter()
            .filter(|s| s.seq > seq)
            .cloned()
            .collect();
        let replayed = replay.len() as u64;
        let replayed_range = replay
            .front()
            .zip(replay.back())
            .map(|(a, b)| (a.seq, b.seq));
        session.outbox = replay;
        // RESUMED takes the next sequence number but stays out of the replay
        // buffer (recorded in `resumed_sequences`, so tests can tell the
        // gap it leaves in a later replay from a lost event).
        session.seq += 1;
        session.outbox.push_back(Stored {
            seq: session.seq,
            name: Arc::from("RESUMED"),
            data: Bytes::from_static(br#"{"_trace":["[\"discore-mock\",{\"micros\":0}]"]}"#),
        });
        session.connection = Some(connection);
        session.expires_at = None;
        let shard = session.shard;
        let intents = session.intents;
        let written = Arc::clone(&session.written);
        let sequence = session.seq;
        let number = session.number;
        record(self, ResumeOutcome::Resumed { replayed });
        if let (Some(resume), Some((from, to))) = (self.observed.resumes.last_mut(), replayed_range)
        {
            resume.replayed_from = Some(from);
            resume.replayed_to = Some(to);
        }
        if let Some(r) = self.observed.session_mut(number) {
            r.connection = Some(connection);
            r.sequence = sequence;
            r.resumed_sequences.push(sequence);
        }
        self.attach(connection, session_id, shard);
        ResumeResult::Resumed {
            session_id: session_id.to_owned(),
            shard,
            intents,
            written,
        }
    }

    /// Invalidates a session (op 9 false sent by the emulator, or a close
    /// code after which it cannot be resumed).
    pub(crate) fn destroy_session(&mut self, session_id: &str) {
        if let Some(session) = self.sessions.remove(session_id) {
            self.session_index.remove(session.shard, session_id);
            if let Some(record) = self.observed.session_mut(session.number) {
                record.alive = false;
                record.connection = None;
            }
        }
        for handle in self.connections.values_mut() {
            if handle.session.as_deref() == Some(session_id) {
                handle.session = None;
            }
        }
    }

    /// Bookkeeping when a connection ends. `close_code` is the code sent or
    /// received; 1000/1001 from the client and non-resumable server codes
    /// destroy the session, anything else keeps it for `session_keep_alive`.
    pub(crate) fn connection_ended(
        &mut self,
        connection: ConnectionId,
        end: ConnectionEnd,
        close_code: Option<u16>,
        now: Instant,
        at: Duration,
    ) {
        let handle = self.connections.remove(&connection);
        if let Some(record) = self.observed.connection_mut(connection) {
            record.end = Some(end);
            record.closed_at = Some(at);
            if let Some((first, last)) = handle.as_ref().and_then(|h| h.written.range()) {
                record.first_sequence_written = Some(first);
                record.last_sequence_written = Some(last);
            }
        }
        let Some(session_id) = handle.and_then(|h| h.session) else {
            return;
        };
        let destroy = !session_survives(end, close_code);
        let keep_alive = self.config.session_keep_alive;
        let owned = self
            .sessions
            .get(&session_id)
            .is_some_and(|s| s.connection == Some(connection));
        if !owned {
            return;
        }
        if destroy {
            self.destroy_session(&session_id);
        } else if let Some(session) = self.sessions.get_mut(&session_id) {
            session.connection = None;
            session.outbox.clear();
            session.expires_at = Some(now + keep_alive);
            if let Some(record) = self.observed.session_mut(session.number) {
                record.connection = None;
            }
        }
    }

    /// Takes up to `max` pending dispatches of the session attached to
    /// `connection`.
    pub(crate) fn take_outbox(
        &mut self,
        connection: ConnectionId,
        max: usize,
        into: &mut Vec<Stored>,
    ) -> bool {
        let Some(session_id) = self
            .connections
            .get(&connection)
            .and_then(|c| c.session.clone())
        else {
            return false;
        };
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return false;
        };
        if session.connection != Some(connection) {
            return false;
        }
        let n = session.outbox.len().min(max);
        into.extend(session.outbox.drain(..n));
        !session.outbox.is_empty()
    }

    /// Checks the all-members Request Guild Members window for `guild`;
    /// returns the seconds to wait when it is still closed.
    pub(crate) fn all_members_allowed(&mut self, guild: u64, now: Instant) -> Result<(), f64> {
        let window = self.config.all_members_window;
        if let Some(last) = self.member_requests.get(&guild) {
            let since = now.saturating_duration_since(*last);
            if since < window {
                return Err((window - since).as_secs_f64());
            }
        }
        self.member_requests.insert(guild, now);
        Ok(())
    }

    /// The session attached to a connection.
    pub(crate) fn session_of(&self, connection: ConnectionId) -> Option<&Session> {
        let id = self.connections.get(&connection)?.session.as_ref()?;
        self.sessions
            .get(id)
            .filter(|s| s.connection == Some(connection))
    }

    /// Adds guilds; sessions whose shard now holds too many are closed 4011.
    pub(crate) fn add_guilds(&mut self, count: u64) -> Vec<u64> {
        let mut world = (*self.world).clone();
        let added = world.add_guilds(count);
        self.world = Arc::new(world);
        let max = self.config.max_guilds_per_shard;
        let mut over: Vec<ConnectionId> = Vec::new();
        let mut counts: HashMap<[u32; 2], u64> = HashMap::new();
        for session in self.sessions.values() {
            let held = *counts
                .entry(session.shard)
                .or_insert_with(|| self.world.guilds_of_shard(session.shard).len() as u64);
            if held > max
                && let Some(c) = session.connection
            {
                over.push(c);
            }
        }
        let full: Vec<String> = self
            .sessions
            .values()
            .filter(|s| counts.get(&s.shard).is_some_and(|held| *held > max))
            .map(|s| s.id.clone())
            .collect();
        for id in full {
            self.destroy_session(&id);
        }
        over.sort();
        self.send_control(&over, || {
            Control::Fault(Fault::Close {
                code: 4011,
                reason: Some("sharding required".to_owned()),
            })
        });
        added
    }
}

/// Whether a session outlives the end of its connection, as Discord's
/// documentation has it
/// (<https://discord.com/developers/docs/events/gateway#disconnecting>,
/// <https://discord.com/developers/docs/topics/opcodes-and-status-codes#gateway-gateway-close-event-codes>):
///
/// - a client that closes with 1000 or 1001 ends its session; any other
///   close code, or none (a dropped connection), keeps it resumable;
/// - the gateway's own close codes keep it, except those after which the
///   client must start a new session: 4003 (the session was invalidated),
///   4004, 4007 and 4009 (identify again), 4010 to 4014 (do not reconnect).
pub(crate) fn session_survives(end: ConnectionEnd, close_code: Option<u16>) -> bool {
    !matches!(
        (end, close_code),
        (ConnectionEnd::ClientClosed, Some(1000 | 1001))
            | (
                ConnectionEnd::ServerClosed,
                Some(4003 | 4004 | 4007 | 4009..=4014)
            )
    )
}

#[cfg(test)]
mod tests {
    use super::{ConnectionEnd, session_survives};

    #[test]
    fn which_closes_keep_the_session() {
        use ConnectionEnd::{ClientClosed, ClientDropped, ServerClosed, ServerDropped};
        for code in [1000, 1001] {
            assert!(!session_survives(ClientClosed, Some(code)));
        }
        for code in [4000, 3000, 4999, 1006, 1011] {
            assert!(session_survives(ClientClosed, Some(code)), "{code}");
        }
        assert!(session_survives(ClientClosed, None));
        assert!(session_survives(ClientDropped, None));
        assert!(session_survives(ServerDropped, None));
        for code in [4000, 4001, 4002, 4005, 4008, 1000, 1001] {
            assert!(session_survives(ServerClosed, Some(code)), "{code}");
        }
        for code in [4003, 4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014] {
            assert!(!session_survives(ServerClosed, Some(code)), "{code}");
        }
    }
}
