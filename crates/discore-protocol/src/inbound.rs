//! The parts of the gateway's own payloads that a client reads for itself:
//! Hello's heartbeat interval and READY's session. The rest of a dispatch is
//! the user's, typed by twilight-model. The shard and the envelope fuzz
//! target read these same types.

use serde::Deserialize;

/// The data of op 10 Hello.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
#[non_exhaustive]
pub struct Hello {
    /// Milliseconds between heartbeats.
    pub heartbeat_interval: u64,
}

/// The part of READY a client keeps: the session to resume, where to resume
/// it, and how many guilds will follow as GUILD_CREATE.
#[derive(Debug, Deserialize)]
#[non_exhaustive]
pub struct ReadySession {
    /// The session id a Resume names.
    pub session_id: String,
    /// The URL to resume on; older gateways sent none.
    #[serde(default)]
    pub resume_gateway_url: Option<String>,
    /// The guilds, unavailable at first: only their ids are read.
    #[serde(default)]
    guilds: Vec<GuildMark>,
}

impl ReadySession {
    /// How many guilds READY listed.
    pub fn guild_count(&self) -> usize {
        self.guilds.len()
    }

    /// The ids of the guilds READY listed, as sent.
    pub fn guild_ids(&self) -> impl Iterator<Item = &str> {
        self.guilds.iter().map(|g| g.id.as_str())
    }
}

/// A guild's id and availability, read from READY's guild list, a
/// GUILD_CREATE or a GUILD_DELETE (every other field is skipped). A shard
/// that is loading its guilds counts one as settled when it arrives, or
/// when GUILD_DELETE says it is `unavailable` (an outage: it will come
/// later as GUILD_CREATE, and readiness does not wait for it).
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
#[non_exhaustive]
pub struct GuildMark {
    /// The guild's id, as sent (a snowflake string).
    pub id: String,
    /// `true` when the guild is unavailable; absent otherwise.
    #[serde(default)]
    pub unavailable: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::{Hello, ReadySession};
    use crate::Envelope;

    #[test]
    fn hello_as_discord_sends_it() {
        let envelope =
            Envelope::peek(r#"{"op":10,"d":{"heartbeat_interval":45000}}"#).expect("envelope");
        let hello: Hello = envelope.data_as().expect("hello");
        assert_eq!(hello.heartbeat_interval, 45_000);
    }

    #[test]
    fn ready_keeps_the_session_and_counts_guilds() {
        let envelope = Envelope::peek(
            r#"{"t":"READY","s":1,"op":0,"d":{"v":10,"user":{"id":"1"},"guilds":[{"id":"2","unavailable":true},{"id":"3","unavailable":true}],"session_id":"abc","resume_gateway_url":"wss://resume.example","application":{"id":"1"}}}"#,
        )
        .expect("envelope");
        let ready: ReadySession = envelope.data_as().expect("ready");
        assert_eq!(ready.session_id, "abc");
        assert_eq!(
            ready.resume_gateway_url.as_deref(),
            Some("wss://resume.example")
        );
        assert_eq!(ready.guild_count(), 2);
    }

    #[test]
    fn ready_without_a_session_id_is_an_error() {
        let envelope =
            Envelope::peek(r#"{"t":"READY","s":1,"op":0,"d":{"guilds":[]}}"#).expect("envelope");
        assert!(envelope.data_as::<ReadySession>().is_err());
        let envelope = Envelope::peek(r#"{"t":"READY","s":1,"op":0,"d":{"session_id":"x"}}"#)
            .expect("envelope");
        let ready: ReadySession = envelope.data_as().expect("ready");
        assert_eq!((ready.guild_count(), ready.resume_gateway_url), (0, None));
    }
}
