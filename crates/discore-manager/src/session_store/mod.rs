//! Where sessions wait between two processes: a [`SessionStore`].
//!
//! On a hand-off shutdown every shard closes with 4000 (its session stays
//! resumable on Discord's side) and the manager saves the sessions here; the
//! next manager started with the same store resumes them instead of
//! identifying, so a deploy costs no identifies. Two implementations come
//! with this crate, [`InMemorySessionStore`] (same process, tests) and
//! [`JsonFileSessionStore`] (one file, one machine); the cluster crate adds
//! Redis. Any implementation must pass [`conformance::run`].

pub mod conformance;
mod file;
mod memory;

pub use file::JsonFileSessionStore;
pub use memory::InMemorySessionStore;

use discore_protocol::{Session, ShardId};
use serde::{Deserialize, Serialize};
use std::{
    fmt,
    future::Future,
    pin::Pin,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A future a session store returns.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, SessionStoreError>> + Send>>;

/// Keeps resumable sessions across processes.
///
/// Sessions are keyed by the whole [`ShardId`]: a session of shard 3 of 8 is
/// no use to shard 3 of 16 (it holds other guilds).
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// Saves these sessions, replacing any saved before for the same shards.
    fn save(&self, sessions: Vec<SavedSession>) -> StoreFuture<()>;

    /// Every saved session.
    fn load(&self) -> StoreFuture<Vec<SavedSession>>;

    /// Forgets the sessions of these shards; unknown shards are ignored.
    fn remove(&self, shards: Vec<ShardId>) -> StoreFuture<()>;
}

/// A session saved for a shard.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct SavedSession {
    /// The shard, as `[id, total]`.
    pub shard: ShardId,
    /// The session to resume.
    pub session: Session,
    /// When it was saved, in milliseconds since the Unix epoch.
    pub saved_at_ms: u64,
}

impl SavedSession {
    /// A session saved now.
    pub fn new(shard: ShardId, session: Session) -> Self {
        Self::at(shard, session, SystemTime::now())
    }

    /// A session saved at `at`.
    pub fn at(shard: ShardId, session: Session, at: SystemTime) -> Self {
        let saved_at_ms = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            shard,
            session,
            saved_at_ms,
        }
    }

    /// How long ago it was saved, as of `now`; zero if saved "in the future"
    /// (clocks of two machines disagree).
    pub fn age(&self, now: SystemTime) -> Duration {
        let saved = UNIX_EPOCH + Duration::from_millis(self.saved_at_ms);
        now.duration_since(saved).unwrap_or_default()
    }
}

/// A session store failed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionStoreError {
    /// Reading or writing the backing storage failed.
    #[error("session store i/o failed: {0}")]
    Io(String),
    /// The stored data could not be understood.
    #[error("session store data is corrupt: {0}")]
    Corrupt(String),
    /// Another backend failure (a network store, say).
    #[error("session store backend failed: {0}")]
    Backend(String),
}

#[cfg(test)]
mod tests {
    use super::SavedSession;
    use discore_protocol::{Session, ShardId};
    use std::time::{Duration, SystemTime};

    #[test]
    fn age_and_serde() {
        let now = SystemTime::now();
        let saved = SavedSession::at(
            ShardId::new(3, 8),
            Session::new("abc", 42, Some("wss://resume.example".into())),
            now - Duration::from_secs(90),
        );
        let age = saved.age(now);
        assert!(
            age >= Duration::from_secs(89) && age <= Duration::from_secs(91),
            "{age:?}"
        );
        let json = serde_json::to_string(&saved).expect("serializes");
        assert!(json.contains(r#""shard":[3,8]"#), "{json}");
        let back: SavedSession = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, saved);
        let future = SavedSession::at(
            ShardId::new(0, 1),
            Session::new("x", 1, None),
            now + Duration::from_secs(60),
        );
        assert_eq!(future.age(now), Duration::ZERO);
    }
}
