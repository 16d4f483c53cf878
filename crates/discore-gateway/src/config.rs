//! How a shard connects and identifies.

use crate::{
    backoff::Backoff,
    identify::{IdentifyQueue, default_queue_for},
    inflate::Compression,
    machine::MachineConfig,
};
use discore_protocol::{
    Intents, Session, Token,
    commands::IdentifyProperties,
    limits::{
        API_VERSION, IDENTIFY_WINDOW, PRESENCE_LIMIT, PRESENCE_WINDOW, SEND_LIMIT, SEND_WINDOW,
    },
};
use std::{ops::RangeInclusive, sync::Arc, time::Duration};
use twilight_model::gateway::payload::outgoing::update_presence::UpdatePresencePayload;

/// Discord's gateway, used when no URL is configured.
pub const DISCORD_GATEWAY_URL: &str = "wss://gateway.discord.gg";

/// Settings of one shard.
///
/// Every setter documents its default.
#[derive(Clone, Debug)]
#[must_use]
pub struct ShardConfig {
    pub(crate) intents: Intents,
    pub(crate) large_threshold: u64,
    pub(crate) presence: Option<UpdatePresencePayload>,
    pub(crate) properties: IdentifyProperties,
    pub(crate) compression: Compression,
    pub(crate) api_version: u8,
    pub(crate) gateway_url: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_inbound_message_size: usize,
    pub(crate) command_queue_capacity: usize,
    pub(crate) event_credits: usize,
    pub(crate) send_limit: u32,
    pub(crate) send_window: Duration,
    pub(crate) presence_limit: u32,
    pub(crate) presence_window: Duration,
    pub(crate) start_attempts: u32,
    pub(crate) machine: MachineConfig,
    pub(crate) identify_queue: Option<Arc<dyn IdentifyQueue>>,
    pub(crate) identify_limits: (u32, Duration),
    pub(crate) session: Option<Session>,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) seed: Option<u64>,
}

impl ShardConfig {
    /// A configuration with these intents and every other setting at its default.
    pub fn new(intents: Intents) -> Self {
        Self {
            intents,
            large_threshold: 50,
            presence: None,
            properties: IdentifyProperties::new("discore", "discore", std::env::consts::OS),
            compression: Compression::ZlibStream,
            api_version: API_VERSION,
            gateway_url: DISCORD_GATEWAY_URL.to_owned(),
            connect_timeout: Duration::from_secs(10),
            max_inbound_message_size: 64 * 1024 * 1024,
            command_queue_capacity: 2048,
            event_credits: 4096,
            send_limit: SEND_LIMIT,
            send_window: SEND_WINDOW,
            presence_limit: PRESENCE_LIMIT,
            presence_window: PRESENCE_WINDOW,
            start_attempts: 5,
            machine: MachineConfig::default(),
            identify_queue: None,
            identify_limits: (1, IDENTIFY_WINDOW),
            session: None,
            tls: None,
            seed: None,
        }
    }

    /// The gateway intents.
    pub fn intents(mut self, intents: Intents) -> Self {
        self.intents = intents;
        self
    }

    /// Members above which a guild's offline members are left out of
    /// GUILD_CREATE, 50–250. Default 50.
    pub fn large_threshold(mut self, threshold: u64) -> Self {
        self.large_threshold = threshold.clamp(50, 250);
        self
    }

    /// The presence to identify with. Default none. A presence sent later
    /// with a command replaces it for the following sessions.
    pub fn presence(mut self, presence: UpdatePresencePayload) -> Self {
        self.presence = Some(presence);
        self
    }

    /// Identify properties. Default `discore` as browser and device, the
    /// operating system as os.
    pub fn properties(mut self, properties: IdentifyProperties) -> Self {
        self.properties = properties;
        self
    }

    /// Transport compression. Default zlib-stream.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The gateway API version. Default 10.
    pub fn api_version(mut self, version: u8) -> Self {
        self.api_version = version;
        self
    }

    /// The discovery URL. Default `wss://gateway.discord.gg`; point it at the
    /// emulator, a proxy, or the URL from `GET /gateway/bot`.
    pub fn gateway_url(mut self, url: impl Into<String>) -> Self {
        self.gateway_url = url.into();
        self
    }

    /// Longest time to open a connection (TCP, TLS, WebSocket upgrade).
    /// Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Longest wait for Hello after the connection opened. Default 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.machine.hello_timeout = timeout;
        self
    }

    /// Largest inbound message, after decompression; a larger one is an
    /// error followed by a reconnect. Default 64 MiB.
    pub fn max_inbound_message_size(mut self, bytes: usize) -> Self {
        self.max_inbound_message_size = bytes.max(4096);
        self
    }

    /// Commands that may wait for the session or the rate limit; one more is
    /// refused with `CommandError::QueueFull`. Default 2048.
    pub fn command_queue_capacity(mut self, capacity: usize) -> Self {
        self.command_queue_capacity = capacity.max(1);
        self
    }

    /// Delivered event messages that may be outstanding (not yet dropped by
    /// subscribers) before the shard stops reading its socket. Default 4096.
    pub fn event_credits(mut self, credits: usize) -> Self {
        self.event_credits = credits.max(1);
        self
    }

    /// The outgoing rate limit. Default Discord's: 120 per 60 s. Only tests
    /// against an emulator with a scaled window should change it.
    pub fn send_rate_limit(mut self, limit: u32, window: Duration) -> Self {
        self.send_limit = limit.max(2);
        self.send_window = window;
        self
    }

    /// The presence update limit. Default Discord's: 5 per 20 s.
    pub fn presence_rate_limit(mut self, limit: u32, window: Duration) -> Self {
        self.presence_limit = limit.max(1);
        self.presence_window = window;
        self
    }

    /// Reconnect backoff. Default 1 s doubling up to 60 s, with jitter.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.machine.backoff = backoff;
        self
    }

    /// Failed connections to READY's resume URL in a row before the session
    /// is given up and a new one identified on the gateway URL. Default 8:
    /// with the default backoff, an outage of about one to two minutes is
    /// still resumed (nothing replayed is lost, no identify is spent), and
    /// a resume URL that stays unreachable does not hold the shard forever.
    pub fn resume_url_attempts(mut self, attempts: u32) -> Self {
        self.machine.resume_url_attempts = attempts.max(1);
        self
    }

    /// The random wait after an Invalid Session (op 9) before identifying
    /// again. Default 1–5 s.
    pub fn invalid_session_delay(mut self, delay: RangeInclusive<Duration>) -> Self {
        self.machine.invalid_session_delay = delay;
        self
    }

    /// Failed connections in a row before [`crate::Shard::start`] gives up
    /// with `ShardStartError::Unreachable`. After the first READY the shard
    /// never gives up on transient errors. Default 5.
    pub fn start_attempts(mut self, attempts: u32) -> Self {
        self.start_attempts = attempts.max(1);
        self
    }

    /// The identify queue this shard uses, instead of its bot's shared one.
    /// Default: the process's queue for the bot (one per token, shared by
    /// every shard not given a queue of its own; see
    /// [`identify_limits`](Self::identify_limits)).
    pub fn identify_queue(mut self, queue: Arc<dyn IdentifyQueue>) -> Self {
        self.identify_queue = Some(queue);
        self
    }

    /// The limits of the bot's shared identify queue, used when no queue is
    /// given: `max_concurrency` buckets (from `GET /gateway/bot`), one
    /// Identify per bucket per `window`. Default 1 bucket and Discord's 5 s.
    /// The first shard of a bot creates the queue; its limits hold for
    /// every later shard of that bot in the process.
    pub fn identify_limits(mut self, max_concurrency: u32, window: Duration) -> Self {
        self.identify_limits = (max_concurrency.max(1), window);
        self
    }

    /// A session to resume instead of identifying (from a hand-off).
    pub fn session(mut self, session: Session) -> Self {
        self.session = Some(session);
        self
    }

    /// The TLS configuration for `wss://`. Default: Mozilla's root
    /// certificates (webpki-roots) with full verification.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Seeds the shard's randomness (heartbeat and backoff jitter) so a run
    /// can be reproduced. Default: random.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    pub(crate) fn identify_queue_or_default(&self, token: &Token) -> Arc<dyn IdentifyQueue> {
        self.identify_queue.clone().unwrap_or_else(|| {
            let (max_concurrency, window) = self.identify_limits;
            default_queue_for(token, max_concurrency, window)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ShardConfig;
    use discore_protocol::Intents;

    #[test]
    fn resume_url_attempts_reach_the_machine() {
        let config = ShardConfig::new(Intents::GUILDS);
        assert_eq!(config.machine.resume_url_attempts, 8);
        assert_eq!(config.resume_url_attempts(3).machine.resume_url_attempts, 3);
        let at_least_one = ShardConfig::new(Intents::GUILDS).resume_url_attempts(0);
        assert_eq!(at_least_one.machine.resume_url_attempts, 1);
    }
}
