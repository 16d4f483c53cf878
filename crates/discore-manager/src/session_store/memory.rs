//! Sessions in memory: for a manager restarted inside one process, and tests.

use super::{SavedSession, SessionStore, StoreFuture};
use discore_protocol::ShardId;
use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

/// A session store in memory. Share it with `Arc` between the managers that
/// hand off to each other.
#[derive(Debug, Default)]
pub struct InMemorySessionStore {
    sessions: Mutex<HashMap<ShardId, SavedSession>>,
}

impl InMemorySessionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many sessions are saved.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is saved.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ShardId, SavedSession>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionStore for InMemorySessionStore {
    fn save(&self, sessions: Vec<SavedSession>) -> StoreFuture<()> {
        let mut map = self.lock();
        for saved in sessions {
            map.insert(saved.shard, saved);
        }
        Box::pin(async { Ok(()) })
    }

    fn load(&self) -> StoreFuture<Vec<SavedSession>> {
        let mut all: Vec<SavedSession> = self.lock().values().cloned().collect();
        all.sort_by_key(|s| (s.shard.total(), s.shard.number()));
        Box::pin(async move { Ok(all) })
    }

    fn remove(&self, shards: Vec<ShardId>) -> StoreFuture<()> {
        let mut map = self.lock();
        for shard in shards {
            map.remove(&shard);
        }
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::InMemorySessionStore;
    use crate::session_store::conformance;
    use std::sync::Arc;

    #[actix_rt::test]
    async fn conforms() {
        conformance::run(Arc::new(InMemorySessionStore::new()))
            .await
            .expect("the in-memory store passes the conformance suite");
    }
}
