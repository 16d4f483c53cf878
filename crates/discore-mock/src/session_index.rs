//! Which sessions serve which shard, so that routing an event costs the
//! sessions it goes to rather than a scan of every session: at 1,000
//! shards and tens of thousands of events a second, the scan under the
//! state's one lock was most of the emulator's time.

use crate::world::shard_of;
use std::collections::{BTreeMap, HashMap};

/// Session ids by shard id, and the shard totals in use.
#[derive(Debug, Default)]
pub(crate) struct SessionIndex {
    /// Shard id to `(total, session id)`, one entry per session.
    by_shard: HashMap<u32, Vec<(u32, String)>>,
    /// Shard total to the sessions that identified with it (a fleet being
    /// re-sharded has two).
    totals: BTreeMap<u32, usize>,
}

impl SessionIndex {
    /// A session identified as `shard` (`[id, total]`).
    pub(crate) fn add(&mut self, shard: [u32; 2], session_id: &str) {
        self.by_shard
            .entry(shard[0])
            .or_default()
            .push((shard[1], session_id.to_owned()));
        *self.totals.entry(shard[1]).or_default() += 1;
    }

    /// A session is gone.
    pub(crate) fn remove(&mut self, shard: [u32; 2], session_id: &str) {
        if let Some(entries) = self.by_shard.get_mut(&shard[0])
            && let Some(at) = entries
                .iter()
                .position(|(total, id)| *total == shard[1] && id == session_id)
        {
            entries.swap_remove(at);
            if entries.is_empty() {
                self.by_shard.remove(&shard[0]);
            }
            if let Some(count) = self.totals.get_mut(&shard[1]) {
                *count -= 1;
                if *count == 0 {
                    self.totals.remove(&shard[1]);
                }
            }
        }
    }

    /// The sessions of shard id `shard`, whatever their total.
    pub(crate) fn of_shard(&self, shard: u32) -> impl Iterator<Item = &str> {
        self.by_shard
            .get(&shard)
            .into_iter()
            .flatten()
            .map(|(_, id)| id.as_str())
    }

    /// The sessions whose shard owns `guild` (one per total in use).
    pub(crate) fn of_guild(&self, guild: u64) -> impl Iterator<Item = &str> {
        self.totals.keys().flat_map(move |&total| {
            self.by_shard
                .get(&shard_of(guild, total))
                .into_iter()
                .flatten()
                .filter(move |(t, _)| *t == total)
                .map(|(_, id)| id.as_str())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let mut ids: Vec<&str> = ids.collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn finds_sessions_by_shard_and_by_guild_across_totals() {
        let mut index = SessionIndex::default();
        index.add([0, 2], "a");
        index.add([1, 2], "b");
        index.add([1, 3], "c");
        index.add([1, 2], "d");
        assert_eq!(sorted(index.of_shard(1)), ["b", "c", "d"]);
        assert_eq!(sorted(index.of_shard(5)), Vec::<&str>::new());
        // Guild 1 << 22 is shard 1 of 2 and shard 1 of 3.
        assert_eq!(sorted(index.of_guild(1 << 22)), ["b", "c", "d"]);
        // Guild 2 << 22 is shard 0 of 2 and shard 2 of 3 (none).
        assert_eq!(sorted(index.of_guild(2 << 22)), ["a"]);
        index.remove([1, 2], "b");
        index.remove([1, 3], "c");
        index.remove([1, 3], "missing");
        assert_eq!(sorted(index.of_shard(1)), ["d"]);
        assert_eq!(sorted(index.of_guild(1 << 22)), ["d"]);
        assert_eq!(index.totals.keys().copied().collect::<Vec<_>>(), [2]);
    }
}
