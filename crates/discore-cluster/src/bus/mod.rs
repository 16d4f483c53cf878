//! The event bus on NATS JetStream: gateway processes publish dispatches,
//! worker processes consume them as [`GatewayEvent`]s, and commands travel
//! back to the process that owns the shard.
//!
//! Layout for a bot `B` (the namespace, with `.` replaced by `_`):
//!
//! | what | where |
//! |---|---|
//! | stream | `DISCORE_B_EVENTS`, subjects `discore.B.events.>` |
//! | a dispatch | `discore.B.events.<EVENT_NAME>.<shard id>`, payload = the raw JSON `d` |
//! | its headers | `Discore-Shard` (`id/total`), `Discore-Event`, `Discore-Sequence`, `Discore-Session`, `Nats-Msg-Id` = `<session>:<sequence>` |
//! | a command for shard `n` | request/reply on `discore.B.commands.<n>` |
//! | a re-sharding request | request/reply on `discore.B.control.reshard`, `{"shards": N}` |
//!
//! `Nats-Msg-Id` makes JetStream drop a re-publish of the same dispatch
//! (a retry, or the replay a process receives when it resumes a session
//! another process checkpointed) within the stream's duplicate window.
//!
//! [`GatewayEvent`]: discore_gateway::GatewayEvent

mod commands;
mod publisher;
mod source;

pub(crate) use commands::serve_commands;
pub use commands::{CommandClient, encode_command};
pub use publisher::{
    EventPublisher, FlushPublisher, GetPublisherStats, PublishLedger, PublisherStats,
};
pub(crate) use publisher::{GateAnswer, GateCall, Gated, Job};
pub use source::{EventSource, EventSourceConfig, EventSourceStats, GetSourceStats, StopSource};

use crate::error::ClusterError;
use async_nats::jetstream::{self, stream};
use std::{fmt, sync::Arc, time::Duration};

/// Header: `id/total` of the shard that received the dispatch.
pub const HEADER_SHARD: &str = "Discore-Shard";
/// Header: the event name, such as `MESSAGE_CREATE`.
pub const HEADER_EVENT: &str = "Discore-Event";
/// Header: the dispatch's sequence number in its session.
pub const HEADER_SEQUENCE: &str = "Discore-Sequence";
/// Header: the session id, when the publisher knew it.
pub const HEADER_SESSION: &str = "Discore-Session";

/// How the stream keeps events.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[must_use]
pub struct StreamSettings {
    /// Events older than this are discarded. Default 24 h.
    pub max_age: Duration,
    /// Re-publishes of one dispatch within this window are dropped; it must
    /// cover a shard's take-over (lease TTL plus resume). Default 2 min.
    pub duplicate_window: Duration,
    /// Replicas on a NATS cluster. Default 1.
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(24 * 60 * 60),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        }
    }
}

/// A connection to the NATS JetStream that carries one bot's events and
/// commands. Clones share the connection.
#[derive(Clone)]
pub struct EventBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    bot: Arc<str>,
    stream: Arc<str>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("bot", &self.bot)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl EventBus {
    /// Connects to `url` (such as `nats://127.0.0.1:4222`) for the bot named
    /// `namespace` (the same name as its [`ClusterRedis`](crate::ClusterRedis)).
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidConfig`] for a bad namespace,
    /// [`ClusterError::NatsUnreachable`] when NATS does not answer.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, ClusterError> {
        crate::namespace::validate(namespace)?;
        let bot: Arc<str> = namespace.replace('.', "_").into();
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(3))
            .connect(url)
            .await
            .map_err(|source| ClusterError::NatsUnreachable {
                url: url.to_owned(),
                source,
            })?;
        let jetstream = jetstream::new(client.clone());
        let stream = format!("DISCORE_{bot}_EVENTS").into();
        Ok(Self {
            client,
            jetstream,
            bot,
            stream,
        })
    }

    /// Creates the bot's stream, or updates its settings.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Nats`] when JetStream refuses (is it enabled?).
    pub async fn ensure_stream(&self, settings: StreamSettings) -> Result<(), ClusterError> {
        let config = stream::Config {
            name: self.stream.to_string(),
            subjects: vec![format!("discore.{}.events.>", self.bot)],
            max_age: settings.max_age,
            duplicate_window: settings.duplicate_window,
            num_replicas: settings.replicas.max(1),
            storage: stream::StorageType::File,
            ..stream::Config::default()
        };
        match self.jetstream.get_stream(&*self.stream).await {
            Ok(_) => self
                .jetstream
                .update_stream(config)
                .await
                .map(drop)
                .map_err(|e| ClusterError::nats("stream update")(&e)),
            Err(_) => self
                .jetstream
                .create_stream(config)
                .await
                .map(drop)
                .map_err(|e| ClusterError::nats("stream create")(&e)),
        }
    }

    /// Deletes the bot's stream and every consumer on it (tests, or
    /// retiring a bot).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Nats`] when JetStream refuses.
    pub async fn delete_stream(&self) -> Result<(), ClusterError> {
        self.jetstream
            .delete_stream(&*self.stream)
            .await
            .map(drop)
            .map_err(|e| ClusterError::nats("stream delete")(&e))
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The subject a dispatch of `shard` named `event` is published to.
    pub fn event_subject(&self, event: &str, shard: u32) -> String {
        let event: String = event
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let event = if event.is_empty() { "_" } else { &event };
        format!("discore.{}.events.{event}.{shard}", self.bot)
    }

    /// The subject every dispatch of `shard` matches (a worker partition).
    pub fn shard_filter(&self, shard: u32) -> String {
        format!("discore.{}.events.*.{shard}", self.bot)
    }

    /// The request subject of shard `shard`'s commands.
    pub fn command_subject(&self, shard: u32) -> String {
        format!("discore.{}.commands.{shard}", self.bot)
    }

    /// The request subject of the cluster's control requests (`what`:
    /// `reshard`).
    pub fn control_subject(&self, what: &str) -> String {
        format!("discore.{}.control.{what}", self.bot)
    }

    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }
}
