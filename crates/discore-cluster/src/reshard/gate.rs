//! What a re-sharding does to each shard's events in a node's publisher:
//! the old generation's shards publish and record, then drain up to the
//! new generation's heads and fall silent; the new generation's shards hold
//! their events until the switch, then publish them minus what the old
//! generation published. Shards with no gate publish as usual.

use super::matching::{
    Aligner, Drained, Drainer, Key, Mark, OldGeneration, Record, RecordWire, Seen, Verdict, heads,
};
use crate::bus::Job;
use discore_gateway::{Dispatch, DispatchEvent, GatewayEvent};
use discore_protocol::ShardId;
use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    sync::Arc,
};

/// Events an old shard's record keeps at most; past it the oldest are
/// forgotten (and may be published twice).
const RECORD_CAPACITY: usize = 100_000;

enum Gate {
    /// Old generation: publish and record.
    Record(Record),
    /// Old generation at the switch: publish and record until every head
    /// is reached.
    Drain { record: Record, drainer: Drainer },
    /// Old generation, its record handed over: publish nothing.
    Silent,
    /// New generation before the switch: keep everything.
    Hold(Vec<(Job, Seen)>),
    /// New generation after the switch: publish what the old generation
    /// did not, until its record is walked past.
    Align(Aligner, Arc<OldGeneration>),
    /// New generation, switched: publish (until the re-sharding ends and
    /// shards without a gate publish anyway).
    Pass,
}

/// What the gates let through, and what they kept back for good.
#[derive(Default)]
pub(crate) struct Passage {
    /// To publish, in order.
    pub(crate) publish: Vec<Job>,
    /// Not to publish: the other generation did, or it is a new session's
    /// artifact.
    pub(crate) withhold: Vec<Job>,
}

/// The gates of one publisher.
#[derive(Default)]
pub(crate) struct Gates {
    /// `(from, to)` while a re-sharding runs.
    overlap: Option<(u32, u32)>,
    gates: HashMap<ShardId, Gate>,
    /// Totals whose events are never published again.
    retired: HashSet<u32>,
    /// The guilds each shard's user received (READY's list, then
    /// GUILD_CREATE and GUILD_DELETE); absent when this process did not
    /// see the session start.
    known: HashMap<ShardId, HashSet<u64>>,
}

impl std::fmt::Debug for Gates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gates")
            .field("overlap", &self.overlap)
            .field("gated", &self.gates.len())
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

impl Gates {
    /// Follows which guilds a shard's user has received.
    pub(crate) fn track_guilds(&mut self, event: &GatewayEvent) {
        let shard = event.shard;
        let Dispatch::Known { event, .. } = &*event.event else {
            return;
        };
        match event {
            DispatchEvent::Ready(ready) => {
                self.known
                    .insert(shard, ready.guilds.iter().map(|g| g.id.get()).collect());
            }
            DispatchEvent::GuildCreate(create) => {
                if let Some(known) = self.known.get_mut(&shard) {
                    known.insert(create.id().get());
                }
            }
            DispatchEvent::GuildDelete(delete) if delete.unavailable != Some(true) => {
                if let Some(known) = self.known.get_mut(&shard) {
                    known.remove(&delete.id.get());
                }
            }
            _ => {}
        }
    }

    /// Whether `shard` belongs to a generation that was switched away from.
    pub(crate) fn is_retired(&self, shard: ShardId) -> bool {
        self.retired.contains(&shard.total())
    }

    /// Events held now.
    pub(crate) fn held(&self) -> usize {
        self.gates
            .values()
            .map(|gate| match gate {
                Gate::Hold(held) => held.len(),
                _ => 0,
            })
            .sum()
    }

    /// Passes a job through its shard's gate: `Ok` to publish it now,
    /// `Err` for what the gate decided instead.
    pub(crate) fn admit(&mut self, job: Job) -> Result<Job, Passage> {
        // Outside a re-sharding nothing is gated: one check per event.
        if self.overlap.is_none() && self.gates.is_empty() {
            return Ok(job);
        }
        let shard = job.shard;
        let gate = match self.gates.entry(shard) {
            Entry::Occupied(gate) => gate.into_mut(),
            Entry::Vacant(slot) => match self.overlap {
                Some((from, _)) if shard.total() == from => {
                    slot.insert(Gate::Record(Record::new(RECORD_CAPACITY)))
                }
                Some((_, to)) if shard.total() == to => slot.insert(Gate::Hold(Vec::new())),
                _ => return Ok(job),
            },
        };
        if matches!(gate, Gate::Pass) {
            return Ok(job);
        }
        let seen = Seen::of(&job.name, &job.payload);
        let mut passage = Passage::default();
        match gate {
            Gate::Record(record) => {
                record.push(&seen);
                return Ok(job);
            }
            Gate::Drain { record, drainer } => match drainer.decide(&seen) {
                Drained::Publish => {
                    record.push(&seen);
                    return Ok(job);
                }
                Drained::Drop => passage.withhold.push(job),
            },
            Gate::Silent => passage.withhold.push(job),
            Gate::Hold(held) => held.push((job.detach(), seen)),
            Gate::Pass => return Ok(job),
            Gate::Align(aligner, old) => {
                let verdict = aligner.decide(job.sequence, &seen, |g| old.knows(g));
                if aligner.is_done() {
                    if self.overlap.is_some() {
                        // Never held again while the re-sharding runs.
                        self.gates.insert(shard, Gate::Pass);
                    } else {
                        self.gates.remove(&shard);
                    }
                }
                return match verdict {
                    Verdict::Publish => Ok(job),
                    Verdict::Duplicate | Verdict::Artifact => {
                        passage.withhold.push(job);
                        Err(passage)
                    }
                };
            }
        }
        Err(passage)
    }

    /// A re-sharding from `from` to `to` shards began: old shards record,
    /// new shards hold.
    pub(crate) fn begin(&mut self, from: u32, to: u32) {
        if self.overlap != Some((from, to)) {
            log::info!("publisher: re-sharding {from} -> {to}, new shards' events held");
            self.overlap = Some((from, to));
        }
    }

    /// Where each guild's stream begins in a new shard's held events.
    pub(crate) fn heads(&self, shard: ShardId) -> Vec<(Key, Mark)> {
        match self.gates.get(&shard) {
            Some(Gate::Hold(held)) => heads(held.iter().map(|(job, seen)| (job.sequence, seen))),
            _ => Vec::new(),
        }
    }

    /// An old shard starts draining up to the new generation's heads.
    pub(crate) fn drain(&mut self, shard: ShardId, heads: Vec<(Key, Mark)>) {
        let record = match self.gates.remove(&shard) {
            Some(Gate::Record(record)) => record,
            Some(other @ (Gate::Drain { .. } | Gate::Silent)) => {
                self.gates.insert(shard, other);
                return;
            }
            _ => Record::new(RECORD_CAPACITY),
        };
        let drainer = Drainer::new(heads, &record);
        self.gates.insert(shard, Gate::Drain { record, drainer });
    }

    /// An old shard's record, once it has drained (or at once with
    /// `force`); the shard is silent from then on.
    pub(crate) fn take_record(&mut self, shard: ShardId, force: bool) -> Option<RecordWire> {
        let complete = match self.gates.get(&shard) {
            Some(Gate::Drain { drainer, .. }) => drainer.is_complete(),
            Some(Gate::Silent) => return None,
            _ => true,
        };
        if !complete && !force {
            return None;
        }
        let record = match self.gates.insert(shard, Gate::Silent) {
            Some(Gate::Drain { record, .. } | Gate::Record(record)) => record,
            _ => Record::new(1),
        };
        log::info!(
            "shard {shard}: silent, its record of {} events handed over",
            record.len()
        );
        if record.forgotten() > 0 {
            log::warn!(
                "shard {shard}: the re-sharding record forgot {} events; the new generation may publish them again",
                record.forgotten()
            );
        }
        Some(RecordWire::new(&record, self.known.get(&shard)))
    }

    /// A new shard switches: its held events are published minus what the
    /// old generation published; later events pass the same check until
    /// the old record is walked past.
    pub(crate) fn release(&mut self, shard: ShardId, old: &Arc<OldGeneration>) -> Passage {
        let held = match self.gates.remove(&shard) {
            Some(Gate::Hold(held)) => held,
            Some(other) => {
                self.gates.insert(shard, other);
                return Passage::default();
            }
            None => Vec::new(),
        };
        let mut aligner = old.aligner_for(shard.number(), shard.total());
        let mut passage = Passage::default();
        for (job, seen) in held {
            match aligner.decide(job.sequence, &seen, |g| old.knows(g)) {
                Verdict::Publish => passage.publish.push(job),
                Verdict::Duplicate | Verdict::Artifact => passage.withhold.push(job),
            }
        }
        log::info!(
            "shard {shard}: switched, {} held events published, {} withheld",
            passage.publish.len(),
            passage.withhold.len()
        );
        let gate = if aligner.is_done() {
            Gate::Pass
        } else {
            Gate::Align(aligner, Arc::clone(old))
        };
        self.gates.insert(shard, gate);
        passage
    }

    /// The re-sharding is over: the old total is never published again.
    pub(crate) fn end(&mut self, from: u32) {
        self.overlap = None;
        self.retired.insert(from);
        self.gates
            .retain(|shard, gate| shard.total() != from && !matches!(gate, Gate::Pass));
        self.known.retain(|shard, _| shard.total() != from);
    }

    /// A re-sharding was given up: everything publishes as before.
    pub(crate) fn abandon(&mut self) -> Passage {
        self.overlap = None;
        let mut passage = Passage::default();
        for (_, gate) in self.gates.drain() {
            if let Gate::Hold(held) = gate {
                passage
                    .withhold
                    .extend(held.into_iter().map(|(job, _)| job));
            }
        }
        passage
    }

    /// `shard` runs here again after it was lost: whatever its gate held
    /// belongs to the session's earlier run, which its replay repeats.
    pub(crate) fn forget(&mut self, shard: ShardId) {
        if let Some(Gate::Hold(_)) = self.gates.get(&shard) {
            self.gates.remove(&shard);
        }
    }
}
