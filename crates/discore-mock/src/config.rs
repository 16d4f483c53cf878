//! The emulator's configuration: a `#[must_use]` builder whose methods
//! document their defaults.

use discore_protocol::{Intents, Token, intents::PRIVILEGED_INTENTS, limits};
use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

/// What the emulator does when a Resume carries a sequence number beyond the
/// last one it sent (`docs/protocol.md`, "Resuming").
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadSequenceBehaviour {
    /// Close the connection with 4007 Invalid `seq` (the default).
    #[default]
    Close4007,
    /// Answer op 9 Invalid Session `false` and keep the socket open.
    InvalidSession,
}

/// A REST rate limit: `limit` requests per `window` for each route bucket.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RestRateLimit {
    /// Requests allowed per window in one bucket.
    pub limit: u32,
    /// The window; it starts with the first request after the previous one ended.
    pub window: Duration,
}

/// Configuration of a [`MockServer`](crate::MockServer).
///
/// Every setter documents its default. Intervals are plain [`Duration`]s, so
/// tests scale them down (a 100 ms heartbeat, a 50 ms identify window) and
/// never wait for real seconds.
///
/// ```
/// use discore_mock::MockConfig;
/// use std::time::Duration;
///
/// let config = MockConfig::new()
///     .guilds(10)
///     .heartbeat_interval(Duration::from_millis(100))
///     .identify_window(Duration::from_millis(50));
/// assert_eq!(config.guild_count(), 10);
/// ```
#[must_use]
#[derive(Clone, Debug)]
pub struct MockConfig {
    pub(crate) bind: SocketAddr,
    pub(crate) token: Result<Token, discore_protocol::InvalidToken>,
    pub(crate) seed: u64,
    pub(crate) guilds: u64,
    pub(crate) members_per_guild: u32,
    pub(crate) channels_per_guild: u32,
    pub(crate) max_guilds_per_shard: u64,
    pub(crate) max_concurrency: u32,
    pub(crate) identify_window: Duration,
    pub(crate) session_start_total: u32,
    pub(crate) session_start_remaining: u32,
    pub(crate) session_start_reset_after: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_grace: Option<Duration>,
    pub(crate) heartbeat_timeout_close_code: u16,
    pub(crate) send_limit: u32,
    pub(crate) send_window: Duration,
    pub(crate) presence_limit: u32,
    pub(crate) presence_window: Duration,
    pub(crate) session_keep_alive: Duration,
    pub(crate) granted_intents: Intents,
    pub(crate) invalid_session_closes: bool,
    pub(crate) bad_sequence: BadSequenceBehaviour,
    pub(crate) replay_buffer: usize,
    pub(crate) rest_rate_limit: Option<RestRateLimit>,
    pub(crate) api_versions: Vec<u8>,
    pub(crate) all_members_window: Duration,
    pub(crate) reconnect_close_after: Option<Duration>,
    pub(crate) workers: usize,
    pub(crate) max_outbox: usize,
    pub(crate) max_recorded_payloads: usize,
    pub(crate) max_frame_payload: usize,
    pub(crate) session_resume_urls: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl MockConfig {
    /// The defaults, which match Discord's documented numbers.
    pub fn new() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            token: Token::new("mock-token"),
            seed: 0x00D1_5C0E,
            guilds: 3,
            members_per_guild: 8,
            channels_per_guild: 3,
            max_guilds_per_shard: limits::MAX_GUILDS_PER_SHARD,
            max_concurrency: 1,
            identify_window: limits::IDENTIFY_WINDOW,
            session_start_total: 1000,
            session_start_remaining: 1000,
            session_start_reset_after: Duration::from_secs(24 * 60 * 60),
            heartbeat_interval: Duration::from_millis(41_250),
            heartbeat_grace: None,
            heartbeat_timeout_close_code: 4000,
            send_limit: limits::SEND_LIMIT,
            send_window: limits::SEND_WINDOW,
            presence_limit: limits::PRESENCE_LIMIT,
            presence_window: limits::PRESENCE_WINDOW,
            session_keep_alive: Duration::from_secs(180),
            granted_intents: PRIVILEGED_INTENTS,
            invalid_session_closes: false,
            bad_sequence: BadSequenceBehaviour::Close4007,
            replay_buffer: 10_000,
            rest_rate_limit: Some(RestRateLimit {
                limit: 50,
                window: Duration::from_secs(1),
            }),
            api_versions: vec![9, 10],
            all_members_window: limits::ALL_MEMBERS_WINDOW,
            reconnect_close_after: Some(Duration::from_secs(5)),
            workers: 1,
            max_outbox: 100_000,
            max_recorded_payloads: 10_000,
            max_frame_payload: usize::MAX,
            session_resume_urls: false,
        }
    }

    /// The address to listen on. Default `127.0.0.1:0` (a free port).
    ///
    /// Only loopback addresses make sense: the emulator is a local test tool.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The bot token: raw in Identify and Resume, `Bot <token>` in REST.
    /// Default `"mock-token"`. An empty token or one with whitespace makes
    /// [`MockServer::start`](crate::MockServer::start) fail.
    pub fn token(mut self, token: impl AsRef<str>) -> Self {
        self.token = Token::new(token);
        self
    }

    /// The seed of the synthetic world (ids, names, statuses). Default
    /// `0xD15C0E`. The same seed always builds the same world.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How many guilds the bot is in. Default 3.
    pub fn guilds(mut self, guilds: u64) -> Self {
        self.guilds = guilds;
        self
    }

    /// Members of each guild besides the bot. Default 8, at most 1,000,000.
    pub fn members_per_guild(mut self, members: u32) -> Self {
        self.members_per_guild = members.min(1_000_000);
        self
    }

    /// Text channels of each guild; every guild also has one category and
    /// one voice channel. Default 3, at most 60.
    pub fn channels_per_guild(mut self, channels: u32) -> Self {
        self.channels_per_guild = channels.clamp(1, 60);
        self
    }

    /// Guilds one shard may hold before Identify closes with 4011, and the
    /// divisor of the shard count `/gateway/bot` recommends. Default 2500.
    pub fn max_guilds_per_shard(mut self, max: u64) -> Self {
        self.max_guilds_per_shard = max.max(1);
        self
    }

    /// `max_concurrency` of `/gateway/bot`: identify buckets are
    /// `shard_id % max_concurrency`. Default 1.
    pub fn max_concurrency(mut self, max: u32) -> Self {
        self.max_concurrency = max.max(1);
        self
    }

    /// One Identify per bucket per this window. Default 5 s.
    pub fn identify_window(mut self, window: Duration) -> Self {
        self.identify_window = window;
        self
    }

    /// The daily session start budget: `total`, the `remaining` count at
    /// start, and the time until it resets. Default 1000, 1000, 24 h.
    pub fn session_start_limit(
        mut self,
        total: u32,
        remaining: u32,
        reset_after: Duration,
    ) -> Self {
        self.session_start_total = total;
        self.session_start_remaining = remaining.min(total);
        self.session_start_reset_after = reset_after;
        self
    }

    /// The `heartbeat_interval` sent in Hello. Default 41.25 s.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Extra time after `heartbeat_interval` before a connection without a
    /// heartbeat is closed. Default: half the interval, but at least one
    /// second, so a scaled-down interval (tens of milliseconds in a test) is
    /// not failed by scheduling delays on a busy machine. Set it explicitly
    /// to test fast detection of a silent client.
    pub fn heartbeat_grace(mut self, grace: Duration) -> Self {
        self.heartbeat_grace = Some(grace);
        self
    }

    /// The close code sent when a connection stops heartbeating. Default
    /// 4000, which keeps the session resumable as the docs say ("the client
    /// will be forced to Resume").
    pub fn heartbeat_timeout_close_code(mut self, code: u16) -> Self {
        self.heartbeat_timeout_close_code = code;
        self
    }

    /// Client payloads allowed per window on one connection before 4008.
    /// Default 120 per 60 s.
    pub fn send_limit(mut self, limit: u32, window: Duration) -> Self {
        self.send_limit = limit.max(1);
        self.send_window = window;
        self
    }

    /// Presence updates allowed per window; more are dropped and recorded as
    /// [`ViolationKind::PresenceRateExceeded`](crate::ViolationKind). Default
    /// 5 per 20 s.
    pub fn presence_limit(mut self, limit: u32, window: Duration) -> Self {
        self.presence_limit = limit.max(1);
        self.presence_window = window;
        self
    }

    /// How long a session whose connection dropped (or closed with a code
    /// other than 1000/1001) stays resumable. Default 180 s.
    pub fn session_keep_alive(mut self, keep_alive: Duration) -> Self {
        self.session_keep_alive = keep_alive;
        self
    }

    /// The privileged intents the application is granted; asking for others
    /// closes with 4014. Non-privileged bits are ignored here. Default all
    /// three (GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT).
    pub fn granted_intents(mut self, intents: Intents) -> Self {
        self.granted_intents = intents & PRIVILEGED_INTENTS;
        self
    }

    /// Whether READY's `resume_gateway_url` names the session:
    /// `ws://127.0.0.1:PORT/resume/<session id>` instead of the shared
    /// `/resume/`. Default `false`. Discord hands out per-session resume
    /// hosts; here it lets a test tell which session (and so which shard)
    /// every connection attempt to a resume URL belongs to, refused ones
    /// included (see `Observed::refused_upgrades`).
    pub fn session_resume_urls(mut self, enabled: bool) -> Self {
        self.session_resume_urls = enabled;
        self
    }

    /// Whether the server closes the socket (code 4000) right after any op 9
    /// Invalid Session. Default `false`: the socket stays open and the client
    /// must close it (or identify again on it). The docs leave this open, so
    /// clients must handle both.
    pub fn invalid_session_closes(mut self, closes: bool) -> Self {
        self.invalid_session_closes = closes;
        self
    }

    /// What a Resume with a sequence beyond the last sent gets. Default
    /// [`BadSequenceBehaviour::Close4007`].
    pub fn bad_sequence(mut self, behaviour: BadSequenceBehaviour) -> Self {
        self.bad_sequence = behaviour;
        self
    }

    /// Dispatches each session keeps for replay. A Resume from before the
    /// oldest kept one gets op 9 `false`. Default 10,000.
    pub fn replay_buffer(mut self, dispatches: usize) -> Self {
        self.replay_buffer = dispatches.max(1);
        self
    }

    /// The REST rate limit per route bucket, or `None` for none. Default 50
    /// requests per second.
    pub fn rest_rate_limit(mut self, limit: Option<RestRateLimit>) -> Self {
        self.rest_rate_limit = limit;
        self
    }

    /// Gateway `v` values accepted; others (and a missing `v`) close with
    /// 4012. Default `[9, 10]`.
    pub fn api_versions(mut self, versions: impl Into<Vec<u8>>) -> Self {
        self.api_versions = versions.into();
        self
    }

    /// One all-members Request Guild Members per guild per this window; more
    /// get a RATE_LIMITED dispatch. Default 30 s.
    pub fn all_members_window(mut self, window: Duration) -> Self {
        self.all_members_window = window;
        self
    }

    /// After the emulator sends op 7 Reconnect, it closes the socket with
    /// 4000 if the client has not done so within this time. `None` leaves
    /// the socket open. Default 5 s.
    pub fn reconnect_close_after(mut self, after: Option<Duration>) -> Self {
        self.reconnect_close_after = after;
        self
    }

    /// HTTP worker threads. Default 1, which holds thousands of idle
    /// connections; the binary uses 2.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Dispatches queued for one connection that does not read before the
    /// emulator drops it (without a close frame; the session stays
    /// resumable). Default 100,000.
    ///
    /// Only dispatches count: those waiting in the session's outbox once
    /// about 512 KiB of encoded frames wait for the socket. Heartbeat ACKs
    /// and other control payloads never count, and the emulator keeps
    /// reading (and recording and acknowledging heartbeats) from a client
    /// that does not read, so such a client is never failed for a missed
    /// heartbeat it did send. A [flood](crate::MockServer::flood) is not
    /// queued: it waits for the client instead.
    pub fn max_outbox(mut self, dispatches: usize) -> Self {
        self.max_outbox = dispatches.max(1);
        self
    }

    /// The largest payload of one outbound WebSocket frame: a larger message
    /// (plain text, or compressed binary) is sent fragmented as RFC 6455
    /// allows, its opcode on a first frame, then continuation frames, FIN
    /// only on the last one. Clients must reassemble it. At least 1.
    /// Default: unlimited, one frame per message (as Discord does today).
    pub fn max_frame_payload(mut self, bytes: usize) -> Self {
        self.max_frame_payload = bytes.max(1);
        self
    }

    /// Received payloads recorded per connection in
    /// [`Observed`](crate::Observed); later ones are only counted. Default
    /// 10,000.
    pub fn max_recorded_payloads(mut self, payloads: usize) -> Self {
        self.max_recorded_payloads = payloads;
        self
    }

    /// The configured guild count.
    pub fn guild_count(&self) -> u64 {
        self.guilds
    }

    /// The configured heartbeat interval.
    pub fn heartbeat_interval_value(&self) -> Duration {
        self.heartbeat_interval
    }

    pub(crate) fn heartbeat_timeout(&self) -> Duration {
        let grace = self
            .heartbeat_grace
            .unwrap_or_else(|| (self.heartbeat_interval / 2).max(Duration::from_secs(1)));
        self.heartbeat_interval + grace
    }
}

#[cfg(test)]
mod tests {
    use super::MockConfig;

    #[test]
    fn debug_never_shows_the_token() {
        let config = MockConfig::new().token("super-secret-value");
        let debug = format!("{config:?}");
        assert!(!debug.contains("super-secret-value"), "{debug}");
    }

    #[test]
    fn heartbeat_timeout_defaults_to_one_and_a_half_intervals_with_a_floor() {
        use std::time::Duration;
        let config = MockConfig::new().heartbeat_interval(Duration::from_secs(40));
        assert_eq!(config.heartbeat_timeout(), Duration::from_secs(60));
        let config = MockConfig::new().heartbeat_interval(Duration::from_millis(100));
        assert_eq!(config.heartbeat_timeout(), Duration::from_millis(1100));
        let config = config.heartbeat_grace(Duration::from_millis(20));
        assert_eq!(config.heartbeat_timeout(), Duration::from_millis(120));
    }
}
