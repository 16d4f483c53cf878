//! Starting a fleet: shards connect in id order, a few per bucket ahead of
//! the one identifying, not all at once.
//!
//! A shard that identifies spends most of a fleet start waiting for its
//! slot: with 1,000 shards and 16 buckets the last slot opens 62 windows
//! after the first (over five minutes at Discord's 5 s). Opening every
//! connection at the start would keep hundreds of idle connections for that
//! long, and the burst of handshakes slows the answers to the first
//! Identifies, which the identify queue waits for before it lets the next
//! ones go. So a launch starts the shards that resume at once, and the
//! shards that identify in id order, keeping at most
//! `max_concurrency × (1 + IdentifyConfig::connect_ahead)` of them started
//! and not yet READY; each READY (or a shard that stopped) lets the next one
//! start. With the default `connect_ahead` of 1, a shard connects while the
//! shard before it in its bucket identifies: about a window before its slot.

use super::{Fleet, Role, ShardManager, SlotState};
use actix::Context;
use std::collections::{BTreeSet, VecDeque};

/// A launch under way in one fleet.
#[derive(Debug, Default)]
pub(crate) struct Launch {
    /// Shards that wait for their turn to connect, in id order.
    waiting: VecDeque<u32>,
    /// Shards started by the launch that have not been READY yet.
    connecting: BTreeSet<u32>,
}

impl Launch {
    /// Forgets shards that no longer hold a place: READY (their session
    /// became active), stopped, failed, or given up.
    fn settle(&mut self, fleet_slots: &std::collections::BTreeMap<u32, super::Slot>) {
        self.connecting.retain(|number| {
            fleet_slots.get(number).is_some_and(|slot| {
                slot.active_since.is_none()
                    && matches!(slot.state, SlotState::Running(_) | SlotState::Restarting)
            })
        });
    }

    /// The shards to start now so that at most `limit` are connecting.
    fn next_batch(
        &mut self,
        limit: usize,
        fleet_slots: &std::collections::BTreeMap<u32, super::Slot>,
    ) -> Vec<u32> {
        self.settle(fleet_slots);
        let mut start = Vec::new();
        while self.connecting.len() < limit {
            let Some(number) = self.waiting.pop_front() else {
                break;
            };
            // A shard stopped while it waited is not started.
            if fleet_slots
                .get(&number)
                .is_some_and(|slot| matches!(slot.state, SlotState::Waiting))
            {
                self.connecting.insert(number);
                start.push(number);
            }
        }
        start
    }

    /// Whether shards still wait for their turn.
    pub(crate) fn is_pending(&self) -> bool {
        !self.waiting.is_empty()
    }
}

impl ShardManager {
    /// Starts a fleet: the shards that resume at once, those that identify
    /// paced (module documentation), asking the queue in shard id order.
    pub(crate) fn launch_fleet(&mut self, role: Role, ctx: &mut Context<Self>) {
        let Some(fleet) = self.fleet_mut(role) else {
            return;
        };
        let mut resuming = Vec::new();
        let mut identifying = Vec::new();
        for (number, slot) in &mut fleet.slots {
            if slot.session.is_some() {
                resuming.push(*number);
            } else {
                slot.state = SlotState::Waiting;
                identifying.push(slot.id);
            }
        }
        fleet.launch = Launch {
            waiting: identifying.iter().map(|id| id.number()).collect(),
            connecting: BTreeSet::new(),
        };
        // Shards that resume do not identify: nobody waits for them.
        self.queue.launch(identifying);
        for number in resuming {
            self.spawn(role, number, ctx);
        }
        self.launch_more(role, ctx);
        self.ensure_polling(ctx);
    }

    /// Starts the next waiting shards of a launch, as far as the pacing
    /// allows. Called whenever a shard of the fleet became READY, stopped
    /// or failed, and on every status poll.
    pub(crate) fn launch_more(&mut self, role: Role, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let limit = self.connect_limit;
        let Some(fleet) = self.fleet_mut(role) else {
            return;
        };
        let Fleet { launch, slots, .. } = fleet;
        if !launch.is_pending() {
            return;
        }
        for number in launch.next_batch(limit, slots) {
            self.spawn(role, number, ctx);
        }
    }

    /// [`ShardManager::launch_more`] for both fleets.
    pub(crate) fn launch_more_everywhere(&mut self, ctx: &mut Context<Self>) {
        self.launch_more(Role::Active, ctx);
        self.launch_more(Role::Next, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::Launch;
    use crate::manager::{Slot, SlotState};
    use discore_protocol::ShardId;
    use std::{collections::BTreeMap, time::Instant};

    fn slots(total: u32) -> BTreeMap<u32, Slot> {
        (0..total)
            .map(|n| {
                let mut slot = Slot::new(ShardId::new(n, total), None);
                slot.state = SlotState::Waiting;
                (n, slot)
            })
            .collect()
    }

    /// What a started shard looks like to the launch (`Restarting` stands
    /// in for a running actor, which a unit test has none of).
    fn start(slots: &mut BTreeMap<u32, Slot>, numbers: &[u32]) {
        for number in numbers {
            if let Some(slot) = slots.get_mut(number) {
                slot.state = SlotState::Restarting;
            }
        }
    }

    #[test]
    fn shards_start_in_id_order_and_each_ready_lets_one_more_go() {
        let mut slots = slots(10);
        let mut launch = Launch {
            waiting: (0..10).collect(),
            connecting: Default::default(),
        };
        let first = launch.next_batch(4, &slots);
        assert_eq!(first, vec![0, 1, 2, 3]);
        start(&mut slots, &first);
        assert!(launch.next_batch(4, &slots).is_empty(), "none became ready");
        if let Some(slot) = slots.get_mut(&1) {
            slot.active_since = Some(Instant::now());
        }
        let next = launch.next_batch(4, &slots);
        assert_eq!(next, vec![4]);
        start(&mut slots, &next);
        // A shard that stopped for good frees its place too.
        if let Some(slot) = slots.get_mut(&0) {
            slot.state = SlotState::Stopped;
        }
        assert_eq!(launch.next_batch(4, &slots), vec![5]);
    }

    #[test]
    fn a_shard_stopped_while_it_waited_is_skipped() {
        let mut slots = slots(4);
        if let Some(slot) = slots.get_mut(&1) {
            slot.state = SlotState::Stopped;
        }
        let mut launch = Launch {
            waiting: (0..4).collect(),
            connecting: Default::default(),
        };
        assert_eq!(launch.next_batch(2, &slots), vec![0, 2]);
        assert!(launch.is_pending());
        assert_eq!(launch.next_batch(usize::MAX, &slots), vec![3]);
        assert!(!launch.is_pending());
    }
}
