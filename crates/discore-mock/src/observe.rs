//! What the emulator saw: connections, payloads, identifies, resumes,
//! heartbeats and protocol violations, so tests assert "no violation"
//! instead of guessing.

use serde::{Deserialize, Serialize};
use std::{fmt, time::Duration};

/// Records of each kind kept at most, so an emulator left running for days
/// stays bounded. Past it the oldest tenth goes at once (of connections and
/// sessions, the oldest that have ended), which keeps appending cheap.
pub const MAX_RECORDS: usize = 100_000;

/// Appends `record`, first dropping the oldest tenth when `records` is full.
pub(crate) fn push_bounded<T>(records: &mut Vec<T>, record: T) {
    push_bounded_if(records, record, |_| true);
}

/// Appends `record`; when `records` is full, first drops up to a tenth of
/// the oldest records that `may_drop` lets go, keeping the order (lookups by
/// id are binary searches).
pub(crate) fn push_bounded_if<T>(records: &mut Vec<T>, record: T, may_drop: impl Fn(&T) -> bool) {
    if records.len() >= MAX_RECORDS {
        let mut budget = MAX_RECORDS / 10;
        records.retain(|r| {
            if budget > 0 && may_drop(r) {
                budget -= 1;
                false
            } else {
                true
            }
        });
    }
    records.push(record);
}

/// The id of one WebSocket connection, unique for the server's lifetime.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection {}", self.0)
    }
}

/// Transport compression of a connection (`compress` query parameter).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// No transport compression: JSON text frames.
    #[default]
    None,
    /// `zlib-stream`: one zlib stream per connection, sync flush per message.
    ZlibStream,
    /// `zstd-stream`: one zstd frame per connection, flushed per message.
    ZstdStream,
}

/// A protocol rule a client broke.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ViolationKind {
    /// An Identify came sooner than `identify_window` after another in the
    /// same `shard_id % max_concurrency` bucket (answered with op 9 false).
    IdentifyConcurrencyExceeded,
    /// An Identify came when the daily session start budget was spent.
    SessionBudgetExhausted,
    /// More payloads than the send limit in one window (closed 4008).
    SendRateExceeded,
    /// More presence updates than allowed in one window (dropped).
    PresenceRateExceeded,
    /// No heartbeat within the interval plus grace (connection closed).
    HeartbeatMissed,
    /// A heartbeat carried a sequence number the session never sent.
    HeartbeatSequenceAhead,
    /// A payload other than Heartbeat before Identify or Resume (closed 4003).
    PayloadBeforeIdentify,
    /// A payload over 4096 bytes (closed 4002).
    PayloadTooLarge,
    /// A payload that is not a JSON envelope (closed 4002).
    MalformedPayload,
    /// An opcode a client may not send (closed 4001).
    UnknownOpcode,
    /// A payload whose data does not fit its opcode (closed 4001).
    InvalidPayload,
    /// A second Identify or Resume on an authenticated connection (closed 4005).
    AlreadyAuthenticated,
    /// Identify or Resume with the wrong token (closed 4004).
    AuthenticationFailed,
    /// A Resume that did not use READY's `resume_gateway_url`.
    ResumeOnDiscoveryUrl,
    /// A Resume with a sequence beyond the last one sent.
    InvalidSequence,
    /// An all-members Request Guild Members for one guild within the window
    /// (answered with RATE_LIMITED).
    RequestGuildMembersRateLimited,
    /// An all-members Request Guild Members without the GUILD_MEMBERS intent
    /// (closed 4001).
    MembersIntentRequired,
}

/// A payload shape Discord accepts though its documentation describes
/// another: an unknown field, a deprecated name, a value in a form some
/// library sends (serenity's `since` as an object, discord.py's `game`).
/// The emulator reads it as Discord does and notes it here; it is not a
/// violation and closes nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Quirk {
    /// The connection it came on.
    pub connection: ConnectionId,
    /// The opcode of the payload, when it had one.
    pub op: Option<u8>,
    /// What was unusual about it.
    pub detail: String,
    /// Time since the server started.
    pub at: Duration,
}

/// One violation, with where and when it happened.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Violation {
    /// What rule was broken.
    pub kind: ViolationKind,
    /// The connection that broke it.
    pub connection: Option<ConnectionId>,
    /// The shard tuple `[id, total]` of that connection, when known.
    pub shard: Option<[u32; 2]>,
    /// Time since the server started.
    pub at: Duration,
    /// A human-readable detail (never the token).
    pub detail: String,
}

/// One payload a client sent, as received.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReceivedPayload {
    /// The opcode, `None` when the payload was not a valid envelope.
    pub op: Option<u8>,
    /// The raw JSON text with the token replaced by `[redacted]`.
    pub json: String,
    /// Time since the server started.
    pub at: Duration,
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionEnd {
    /// The client sent a close frame (its code is in `close_received`).
    ClientClosed,
    /// The emulator sent a close frame (its code is in `close_sent`).
    ServerClosed,
    /// The TCP connection ended without a close frame from the client.
    ClientDropped,
    /// The emulator dropped TCP without a close frame (a fault, or a client
    /// that did not read).
    ServerDropped,
}

/// Everything about one WebSocket connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// The connection id.
    pub id: ConnectionId,
    /// The URL path used: `/` (or `//`), or on the resume listener with
    /// [`session_resume_urls`](crate::MockConfig::session_resume_urls)
    /// `/<session id>`.
    pub path: String,
    /// Whether it came in on the resume listener (READY's
    /// `resume_gateway_url`).
    pub on_resume_url: bool,
    /// The raw query string.
    pub query: String,
    /// The `v` query parameter, if it parsed.
    pub version: Option<u8>,
    /// Transport compression.
    pub compression: Compression,
    /// Time since the server started when the connection opened.
    pub opened_at: Duration,
    /// When it ended, if it did.
    pub closed_at: Option<Duration>,
    /// How it ended, if it did.
    pub end: Option<ConnectionEnd>,
    /// The shard tuple from Identify or from the resumed session.
    pub shard: Option<[u32; 2]>,
    /// The session identified or resumed on this connection.
    pub session_id: Option<String>,
    /// Payloads received (up to `max_recorded_payloads`).
    pub received: Vec<ReceivedPayload>,
    /// Payloads received in total, recorded or not.
    pub received_count: u64,
    /// Dispatches (op 0) written to this connection.
    pub dispatches_sent: u64,
    /// The first dispatch sequence handed to this connection's socket.
    #[serde(default)]
    pub first_sequence_written: Option<u64>,
    /// The last dispatch sequence handed to this connection's socket: a
    /// dispatch with a later sequence never left on it (held by a fault, or
    /// queued when it ended), whatever the session did.
    #[serde(default)]
    pub last_sequence_written: Option<u64>,
    /// The close code the emulator sent.
    pub close_sent: Option<u16>,
    /// The close code the client sent.
    pub close_received: Option<u16>,
}

impl ConnectionRecord {
    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.end.is_none()
    }

    /// The session the resume URL of this connection names, with
    /// [`session_resume_urls`](crate::MockConfig::session_resume_urls).
    pub fn resume_url_session(&self) -> Option<&str> {
        resume_path_session(&self.path).filter(|_| self.on_resume_url)
    }

    /// The opcodes received, in order.
    pub fn received_ops(&self) -> Vec<Option<u8>> {
        self.received.iter().map(|p| p.op).collect()
    }
}

/// A WebSocket upgrade the emulator answered with 503 (an outage, or the
/// server stopping): a connection attempt that never became a connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefusedUpgrade {
    /// The URL path asked for: `/`, or on the resume listener with
    /// [`session_resume_urls`](crate::MockConfig::session_resume_urls)
    /// `/<session id>`.
    pub path: String,
    /// Whether it came to the resume listener.
    pub on_resume_url: bool,
    /// Time since the server started.
    pub at: Duration,
}

impl RefusedUpgrade {
    /// The session the resume URL names, with
    /// [`session_resume_urls`](crate::MockConfig::session_resume_urls).
    pub fn session_id(&self) -> Option<&str> {
        resume_path_session(&self.path).filter(|_| self.on_resume_url)
    }
}

/// The session id in a `/<session id>` path of the resume listener.
fn resume_path_session(path: &str) -> Option<&str> {
    Some(path.trim_matches('/')).filter(|id| !id.is_empty())
}

/// What became of an Identify.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifyOutcome {
    /// READY was sent.
    Accepted,
    /// Op 9 false: the bucket's window had not passed.
    ConcurrencyExceeded,
    /// Op 9 false: the daily budget was spent.
    BudgetExhausted,
    /// Op 9 false: refused on request of the test (see
    /// [`MockServer::refuse_identifies`](crate::MockServer::refuse_identifies)).
    /// It occupied its bucket's window like any Identify that arrived.
    Refused,
    /// The connection was closed with this code.
    Closed(u16),
}

/// One Identify.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdentifyRecord {
    /// The connection it came on.
    pub connection: ConnectionId,
    /// `[shard_id, num_shards]` (`[0, 1]` when absent).
    pub shard: [u32; 2],
    /// `shard_id % max_concurrency`.
    pub bucket: u32,
    /// Whether it came on the resume URL (legal, but after a failed resume
    /// the docs say to identify on the discovery URL).
    pub on_resume_url: bool,
    /// The intents asked for.
    pub intents: u64,
    /// Time since the server started.
    pub at: Duration,
    /// What happened.
    pub outcome: IdentifyOutcome,
}

/// What became of a Resume.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeOutcome {
    /// Missed dispatches were replayed, then RESUMED.
    Resumed {
        /// How many dispatches were replayed.
        replayed: u64,
    },
    /// Op 9 false: the session is unknown, expired or cannot be replayed.
    InvalidSession,
    /// The connection was closed with this code.
    Closed(u16),
}

/// One Resume.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResumeRecord {
    /// The connection it came on.
    pub connection: ConnectionId,
    /// The session id sent.
    pub session_id: String,
    /// The `seq` sent.
    pub seq: u64,
    /// Whether it came on the resume URL.
    pub on_resume_url: bool,
    /// Time since the server started.
    pub at: Duration,
    /// What happened.
    pub outcome: ResumeOutcome,
    /// The first sequence replayed on this connection, when any was.
    #[serde(default)]
    pub replayed_from: Option<u64>,
    /// The last sequence replayed on this connection, when any was.
    #[serde(default)]
    pub replayed_to: Option<u64>,
}

/// One heartbeat a client sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeartbeatRecord {
    /// The connection it came on.
    pub connection: ConnectionId,
    /// Its `d`.
    pub sequence: Option<u64>,
    /// Whether the emulator acknowledged it.
    pub acked: bool,
    /// Time since the server started.
    pub at: Duration,
}

/// The state of one session as the emulator holds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session id.
    pub id: String,
    /// Sessions are numbered from 1 in the order they started; the records
    /// are sorted by it.
    pub number: u64,
    /// `[shard_id, num_shards]`.
    pub shard: [u32; 2],
    /// The intents of the Identify that created it.
    pub intents: u64,
    /// The last sequence number assigned.
    pub sequence: u64,
    /// Every sequence number a RESUMED took in this session, in order.
    ///
    /// RESUMED is numbered like a dispatch but is not kept in the replay
    /// buffer: when a connection ends before its RESUMED reached the client,
    /// the next Resume replays around that number. A client then sees a gap
    /// in `s` that is not a lost event; these are the only gaps a session
    /// can have (a Resume from before the oldest kept dispatch gets op 9
    /// `false` instead of a partial replay).
    pub resumed_sequences: Vec<u64>,
    /// The connection it is attached to, if any.
    pub connection: Option<ConnectionId>,
    /// Whether it can still be resumed (or is attached).
    pub alive: bool,
}

/// One interaction callback received over REST.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InteractionCallbackRecord {
    /// The interaction id from the path.
    pub interaction_id: u64,
    /// The interaction token from the path.
    pub interaction_token: String,
    /// The JSON body.
    pub body: serde_json::Value,
    /// Time since the server started.
    pub at: Duration,
}

/// One REST request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RestRecord {
    /// The HTTP method.
    pub method: String,
    /// The path, including the `/api/v10` prefix.
    pub path: String,
    /// The response status.
    pub status: u16,
    /// Time since the server started.
    pub at: Duration,
}

/// A snapshot of everything the emulator observed.
///
/// `GET /_mock/observed` serves it as JSON, which deserializes back into this
/// type: a test that runs the emulator in another process (to measure its
/// own memory alone, say) reads the same records as one that embeds it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Observed {
    /// Connections in the order they opened (all of them, up to
    /// [`MAX_RECORDS`]; then ended ones make room).
    pub connections: Vec<ConnectionRecord>,
    /// Upgrades refused during an outage, in order (the last
    /// [`MAX_RECORDS`]).
    pub refused_upgrades: Vec<RefusedUpgrade>,
    /// Identifies, in order (the last [`MAX_RECORDS`]).
    pub identifies: Vec<IdentifyRecord>,
    /// Resumes, in order (the last [`MAX_RECORDS`]).
    pub resumes: Vec<ResumeRecord>,
    /// Heartbeats, in order (the last [`MAX_RECORDS`]).
    pub heartbeats: Vec<HeartbeatRecord>,
    /// Protocol violations, in order (the last [`MAX_RECORDS`]).
    pub violations: Vec<Violation>,
    /// Shapes Discord accepts that its documentation does not describe, in
    /// order (the last [`MAX_RECORDS`]).
    #[serde(default)]
    pub quirks: Vec<Quirk>,
    /// Sessions, alive or not (all of them, up to [`MAX_RECORDS`]; then
    /// ended ones make room).
    pub sessions: Vec<SessionRecord>,
    /// Interaction callbacks received over REST (the last [`MAX_RECORDS`]).
    pub interaction_callbacks: Vec<InteractionCallbackRecord>,
    /// REST requests (the last [`MAX_RECORDS`]).
    pub rest_requests: Vec<RestRecord>,
}

impl Observed {
    /// The record of one connection.
    pub fn connection(&self, id: ConnectionId) -> Option<&ConnectionRecord> {
        let index = self.connections.binary_search_by_key(&id, |c| c.id).ok()?;
        self.connections.get(index)
    }

    /// The most recently opened connection.
    pub fn last_connection(&self) -> Option<&ConnectionRecord> {
        self.connections.last()
    }

    /// Connections whose shard id is `shard`.
    pub fn connections_of_shard(&self, shard: u32) -> impl Iterator<Item = &ConnectionRecord> {
        self.connections
            .iter()
            .filter(move |c| c.shard.is_some_and(|[id, _]| id == shard))
    }

    /// Identifies that started a session (READY sent).
    pub fn identifies_total(&self) -> usize {
        self.identifies
            .iter()
            .filter(|i| i.outcome == IdentifyOutcome::Accepted)
            .count()
    }

    /// Resumes that succeeded.
    pub fn resumes_total(&self) -> usize {
        self.resumes
            .iter()
            .filter(|r| matches!(r.outcome, ResumeOutcome::Resumed { .. }))
            .count()
    }

    /// The most connections that were open at one moment without having
    /// sent an Identify or a Resume yet: how many connections a fleet held
    /// idle while it waited for identify slots. A connection counts from
    /// when it opened until its first Identify or Resume, or its end.
    pub fn peak_idle_connections(&self) -> usize {
        let mut first_hello_answer: std::collections::HashMap<ConnectionId, Duration> =
            std::collections::HashMap::new();
        let answers = self
            .identifies
            .iter()
            .map(|i| (i.connection, i.at))
            .chain(self.resumes.iter().map(|r| (r.connection, r.at)));
        for (connection, at) in answers {
            first_hello_answer
                .entry(connection)
                .and_modify(|first| *first = (*first).min(at))
                .or_insert(at);
        }
        // (time, change): an end sorts before an opening at the same time.
        let mut changes: Vec<(Duration, i64)> = Vec::with_capacity(self.connections.len() * 2);
        for connection in &self.connections {
            changes.push((connection.opened_at, 1));
            let end = [
                first_hello_answer.get(&connection.id).copied(),
                connection.closed_at,
            ]
            .into_iter()
            .flatten()
            .min();
            if let Some(end) = end {
                changes.push((end, -1));
            }
        }
        changes.sort_unstable();
        let mut open: i64 = 0;
        let mut peak: i64 = 0;
        for (_, change) in changes {
            open += change;
            peak = peak.max(open);
        }
        usize::try_from(peak).unwrap_or(0)
    }

    /// Sessions of shard id `shard` attached to an open connection.
    pub fn active_sessions(&self, shard: u32) -> usize {
        self.sessions
            .iter()
            .filter(|s| s.alive && s.connection.is_some() && s.shard[0] == shard)
            .count()
    }

    /// Violations of one kind.
    pub fn violations_of(&self, kind: ViolationKind) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(move |v| v.kind == kind)
    }

    /// Whether any violation was recorded.
    pub fn has_violations(&self) -> bool {
        !self.violations.is_empty()
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.connections.iter().filter(|c| c.is_open()).count()
    }

    /// Dispatches written to all connections.
    pub fn dispatches_sent(&self) -> u64 {
        self.connections.iter().map(|c| c.dispatches_sent).sum()
    }

    pub(crate) fn connection_mut(&mut self, id: ConnectionId) -> Option<&mut ConnectionRecord> {
        let index = self.connections.binary_search_by_key(&id, |c| c.id).ok()?;
        self.connections.get_mut(index)
    }

    /// The record of session `number` (a binary search: this runs for every
    /// dispatch an emulator delivers).
    pub(crate) fn session_mut(&mut self, number: u64) -> Option<&mut SessionRecord> {
        let index = self
            .sessions
            .binary_search_by_key(&number, |s| s.number)
            .ok()?;
        self.sessions.get_mut(index)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_RECORDS, push_bounded, push_bounded_if};

    /// Full, the oldest tenth goes at once and the order stays.
    #[test]
    fn records_stay_bounded_in_order() {
        let mut records = Vec::new();
        for n in 0..=MAX_RECORDS {
            push_bounded(&mut records, n);
        }
        assert_eq!(records.len(), MAX_RECORDS - MAX_RECORDS / 10 + 1);
        assert_eq!(records.first(), Some(&(MAX_RECORDS / 10)));
        assert_eq!(records.last(), Some(&MAX_RECORDS));
        assert!(records.windows(2).all(|pair| pair[0] < pair[1]));
    }

    /// Records that may not go (open connections, live sessions) stay,
    /// however old.
    #[test]
    fn only_droppable_records_make_room() {
        // Even numbers stand for records still in use.
        let mut records: Vec<usize> = (0..MAX_RECORDS).collect();
        push_bounded_if(&mut records, MAX_RECORDS, |n| n % 2 == 1);
        assert_eq!(records.len(), MAX_RECORDS - MAX_RECORDS / 10 + 1);
        assert!(records.iter().filter(|n| *n % 2 == 0).count() >= MAX_RECORDS / 2);
        assert_eq!(&records[..3], &[0, 2, 4]);
        // Nothing droppable: the record is appended all the same.
        let mut pinned: Vec<usize> = vec![0; MAX_RECORDS];
        push_bounded_if(&mut pinned, 1, |_| false);
        assert_eq!(pinned.len(), MAX_RECORDS + 1);
    }
}
