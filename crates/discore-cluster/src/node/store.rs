//! The session store a node's manager sees: saves fenced by the shards'
//! leases and bounded by what the event bus acknowledged.

use crate::{
    bus::PublishLedger,
    lease::LeaseClient,
    session_store::{Entry, RedisSessionStore},
};
use discore_manager::session_store::{SavedSession, SessionStore, StoreFuture};
use discore_protocol::ShardId;
use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

/// Which fencing token each shard's lease holds in this process; saves of a
/// shard whose lease is gone are refused here and again in Redis.
#[derive(Debug, Default)]
pub(crate) struct Fences(Mutex<HashMap<u32, u64>>);

impl Fences {
    pub(crate) fn get(&self, shard: u32) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&shard)
            .copied()
    }

    pub(crate) fn set(&self, shard: u32, token: Option<u64>) {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match token {
            Some(token) => all.insert(shard, token),
            None => all.remove(&shard),
        };
    }
}

/// The manager's session store on a node.
///
/// A save keeps only the sessions of shards whose lease this node holds,
/// each written with its lease as a fence (Redis refuses it if the lease
/// changed meanwhile), and never past the last dispatch the event bus
/// acknowledged, so a take-over has every unpublished dispatch replayed.
/// `load` answers nothing: the node looks up one shard's session itself
/// before adopting it.
pub(crate) struct FencedStore {
    pub(crate) store: Arc<RedisSessionStore>,
    pub(crate) fences: Arc<Fences>,
    pub(crate) leases: LeaseClient,
    pub(crate) ledger: Option<Arc<PublishLedger>>,
}

impl fmt::Debug for FencedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FencedStore").finish_non_exhaustive()
    }
}

impl SessionStore for FencedStore {
    fn save(&self, sessions: Vec<SavedSession>) -> StoreFuture<()> {
        let entries: Vec<Entry> = sessions
            .into_iter()
            .filter_map(|mut saved| {
                let number = saved.shard.number();
                let Some(token) = self.fences.get(number) else {
                    log::debug!("shard {}: lease gone, checkpoint dropped", saved.shard);
                    return None;
                };
                if let Some(ledger) = &self.ledger
                    && let Some(safe) = ledger.safe_sequence(saved.shard, &saved.session.id)
                    && safe < saved.session.sequence
                {
                    saved.session.sequence = safe;
                }
                Some(Entry {
                    saved,
                    fence: Some(self.leases.fence(number, token)),
                })
            })
            .collect();
        if entries.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        self.store.save_entries(entries)
    }

    fn load(&self) -> StoreFuture<Vec<SavedSession>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn remove(&self, shards: Vec<ShardId>) -> StoreFuture<()> {
        let held: Vec<ShardId> = shards
            .into_iter()
            .filter(|s| self.fences.get(s.number()).is_some())
            .collect();
        if held.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        self.store.remove(held)
    }
}
