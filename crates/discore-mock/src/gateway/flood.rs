//! The flood mode of the benchmarks: pre-encoded MESSAGE_CREATEs written
//! as fast as the client reads them, through the same backpressure as any
//! dispatch, numbered and kept for replay like them.

use super::connection::Connection;
use crate::{event::Event, payloads, world::World};
use bytes::Bytes;
use std::sync::{Arc, PoisonError};
use tokio::sync::oneshot;

/// Distinct payloads a flood cycles through.
const POOL_SIZE: u64 = 64;

/// Pools kept for later floods (one per distinct shard guild set and
/// intents; a fleet of 1,000 shards over 64 guilds has at most 65).
const MAX_POOLS: usize = 1024;

/// The encoded MESSAGE_CREATEs a session with `intents` gets from members
/// of `guilds`, or `None` when its intents exclude them.
fn build_pool(world: &World, guilds: &[usize], intents: u64) -> Option<Arc<[Bytes]>> {
    (0..POOL_SIZE)
        .map(|i| {
            let guild = guilds[usize::try_from(i).unwrap_or(0) % guilds.len()];
            let data = payloads::member_message(world, guild, 1_000_000_000 + i);
            let event = Event::from_value("MESSAGE_CREATE", &data, world.bot_id);
            event
                .allowed(intents)
                .then(|| event.data_for(intents).clone())
        })
        .collect()
}

/// A flood in progress on one connection.
pub(super) struct Flood {
    pub(super) remaining: u64,
    pub(super) sent: u64,
    pub(super) pool: Arc<[Bytes]>,
    pub(super) next: usize,
    pub(super) done: Option<oneshot::Sender<u64>>,
}

impl Connection {
    pub(super) fn abort_flood(&mut self) {
        if let Some(flood) = self.flood.take()
            && let Some(done) = flood.done
        {
            let _ = done.send(flood.sent);
        }
    }

    /// Encodes the next batch of a flood; returns how many dispatches.
    pub(super) fn flood_step(&mut self) -> usize {
        let Some(flood) = self.flood.as_mut() else {
            return 0;
        };
        let batch = self.batch;
        let mut items = Vec::with_capacity(batch);
        let name: Arc<str> = Arc::from("MESSAGE_CREATE");
        let finished;
        {
            let mut state = self.shared.lock();
            // Anything already queued goes first, keeping sequence order.
            let more = state.take_outbox(self.id, batch, &mut items);
            self.outbox_pending |= more;
            let capacity = state.config.replay_buffer;
            let session = self
                .session_id
                .as_ref()
                .and_then(|id| state.sessions.get_mut(id))
                .filter(|s| s.connection == Some(self.id));
            match session {
                Some(session) if flood.remaining > 0 && !more => {
                    let room = batch.saturating_sub(items.len()).max(1);
                    let n = flood.remaining.min(room as u64);
                    for _ in 0..n {
                        let data = flood.pool[flood.next % flood.pool.len()].clone();
                        flood.next += 1;
                        items.push(session.push(Arc::clone(&name), data, capacity));
                    }
                    flood.remaining -= n;
                    flood.sent += n;
                    finished = flood.remaining == 0;
                }
                Some(_) => finished = flood.remaining == 0,
                None => finished = true,
            }
            if let Some(record) = state.observed.connection_mut(self.id) {
                record.dispatches_sent += items.len() as u64;
            }
        }
        for item in &items {
            self.encode_dispatch(item);
        }
        if finished {
            self.abort_flood();
        }
        items.len()
    }

    pub(super) fn start_flood(&mut self, count: u64, done: oneshot::Sender<u64>) {
        let Some(shard) = self.shard.filter(|_| self.authenticated()) else {
            let _ = done.send(0);
            return;
        };
        let state = self.shared.lock();
        let world = Arc::clone(&state.world);
        drop(state);
        let mut guilds = world.guilds_of_shard(shard);
        if guilds.is_empty() {
            guilds.push(0);
        }
        let key = (Arc::as_ptr(&world) as usize, guilds, self.intents);
        let cached = self
            .shared
            .flood_pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .get(&key)
            .map(|(_, pool)| Arc::clone(pool));
        let pool = match cached {
            Some(pool) => pool,
            None => {
                let Some(pool) = build_pool(&world, &key.1, self.intents) else {
                    let _ = done.send(0);
                    return;
                };
                let mut pools = self
                    .shared
                    .flood_pools
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if pools.0.len() >= MAX_POOLS {
                    // A bound, not a policy: pools are cheap to rebuild.
                    pools.0.clear();
                }
                pools.0.insert(key, (world, Arc::clone(&pool)));
                pool
            }
        };
        self.flood = Some(Flood {
            remaining: count,
            sent: 0,
            pool,
            next: 0,
            done: Some(done),
        });
    }
}
