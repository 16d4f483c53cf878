//! Matching the events of two shard generations across processes: what an
//! old shard published during a re-sharding, where each guild's stream
//! begins in the new generation, and which of a new shard's held events the
//! old generation had published already. Pure logic; the publisher applies
//! it, the node carries its records through Redis.
//!
//! While both generations run, Discord sends every guild event to two
//! sessions: the old shard's and the new shard's. The two receive the same
//! payload, so an event is recognised by a digest of its content
//! ([`Mark`]): its name and its data with object keys in a fixed order,
//! which does not depend on how the bytes were laid out. The old shard of a
//! guild and its new shard usually run in different processes; only the
//! digests travel between them.
//!
//! The steps, per guild: the new shard holds its events back and tells
//! where its stream begins (its first event past the session's start, the
//! *head*); the old shard keeps publishing until it reaches that head (so
//! nothing sent before the new session began is lost in its socket), then
//! falls silent and hands over the digests it published; the new shard
//! publishes its held events minus those digests, in order, up to the first
//! event the old shard never published, and everything from there on.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};

/// The ordering domain of an event: its guild, or `None` for guildless ones.
pub(crate) type Key = Option<u64>;

/// A digest of an event's content: equal in every session that received
/// the event.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub(crate) struct Mark(u128);

impl Mark {
    /// Digests `name` and `data` (the dispatch's `d`).
    #[cfg(test)]
    pub(crate) fn of(name: &str, data: &[u8]) -> Self {
        Self::digest(name, serde_json::from_slice(data).ok().as_ref(), data)
    }

    /// Digests `name` and the data: its parsed `value` with object keys
    /// sorted, or its bytes when it is not JSON.
    fn digest(name: &str, value: Option<&Value>, data: &[u8]) -> Self {
        let mut digest = sha1_smol::Sha1::new();
        digest.update(name.as_bytes());
        digest.update(&[0]);
        match value {
            Some(value) => digest_value(&mut digest, value),
            None => {
                digest.update(b"bytes:");
                digest.update(data);
            }
        }
        let bytes = digest.digest().bytes();
        let mut first = [0u8; 16];
        first.copy_from_slice(&bytes[..16]);
        Self(u128::from_be_bytes(first))
    }

    fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    fn from_hex(text: &str) -> Option<Self> {
        u128::from_str_radix(text, 16).ok().map(Self)
    }
}

/// Feeds a value with a tag per type, so `"1"` and `1` differ, and object
/// keys in sorted order.
fn digest_value(digest: &mut sha1_smol::Sha1, value: &Value) {
    match value {
        Value::Null => digest.update(b"n"),
        Value::Bool(b) => digest.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            digest.update(b"#");
            digest.update(n.to_string().as_bytes());
            digest.update(&[0]);
        }
        Value::String(s) => {
            digest.update(b"s");
            digest.update(&(s.len() as u64).to_be_bytes());
            digest.update(s.as_bytes());
        }
        Value::Array(items) => {
            digest.update(b"[");
            for item in items {
                digest_value(digest, item);
            }
            digest.update(b"]");
        }
        Value::Object(map) => {
            digest.update(b"{");
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                digest.update(&(key.len() as u64).to_be_bytes());
                digest.update(key.as_bytes());
                digest_value(digest, &map[key]);
            }
            digest.update(b"}");
        }
    }
}

/// What kind of event, for the session-start rules.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Kind {
    /// READY or RESUMED: the new session's own start, never published by it.
    SessionStart,
    /// GUILD_CREATE of this guild.
    GuildCreate(u64),
    Other,
}

/// One event as the matching sees it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Seen {
    pub(crate) key: Key,
    pub(crate) mark: Mark,
    pub(crate) kind: Kind,
}

impl Seen {
    /// Reads what the matching needs from a dispatch's name and data.
    /// The data is parsed once, for the guild and the digest.
    pub(crate) fn of(name: &str, data: &[u8]) -> Self {
        let value = serde_json::from_slice::<Value>(data).ok();
        let key = value
            .as_ref()
            .and_then(|value| discore_protocol::guild_of_dispatch_value(name, value));
        let kind = match name {
            "READY" | "RESUMED" => Kind::SessionStart,
            "GUILD_CREATE" => key.map_or(Kind::Other, Kind::GuildCreate),
            _ => Kind::Other,
        };
        Self {
            key,
            mark: Mark::digest(name, value.as_ref(), data),
            kind,
        }
    }
}

/// What an old shard published during a re-sharding, per guild, oldest
/// first, and the guilds its user had received.
///
/// Bounded: past `capacity` events the oldest are forgotten, and the new
/// shard may then publish the matching events a second time.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    events: HashMap<Key, VecDeque<Mark>>,
    order: VecDeque<Key>,
    capacity: usize,
    forgotten: usize,
}

impl Record {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            events: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            forgotten: 0,
        }
    }

    pub(crate) fn push(&mut self, seen: &Seen) {
        self.events
            .entry(seen.key)
            .or_default()
            .push_back(seen.mark);
        self.order.push_back(seen.key);
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
            && let Some(events) = self.events.get_mut(&oldest)
        {
            events.pop_front();
            self.forgotten += 1;
        }
    }

    pub(crate) fn contains(&self, key: Key, mark: Mark) -> bool {
        self.events
            .get(&key)
            .is_some_and(|events| events.contains(&mark))
    }

    /// Events forgotten because the record was full.
    pub(crate) fn forgotten(&self) -> usize {
        self.forgotten
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

/// A finished record as it travels through Redis.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct RecordWire {
    /// `[guild or null, mark]` per event, per guild in publishing order.
    events: Vec<(Option<u64>, String)>,
    /// The guilds the old shard's user had received, or `None` when this
    /// process did not see the session start (it took the shard over).
    known: Option<Vec<u64>>,
}

impl RecordWire {
    pub(crate) fn new(record: &Record, known: Option<&HashSet<u64>>) -> Self {
        let mut events = Vec::with_capacity(record.len());
        for (key, marks) in &record.events {
            events.extend(marks.iter().map(|mark| (*key, mark.to_hex())));
        }
        Self {
            events,
            known: known.map(|set| {
                let mut guilds: Vec<u64> = set.iter().copied().collect();
                guilds.sort_unstable();
                guilds
            }),
        }
    }
}

/// What the old generation published and which guilds its users knew,
/// gathered from every old shard's record.
#[derive(Debug, Default)]
pub(crate) struct OldGeneration {
    history: HashMap<Key, VecDeque<Mark>>,
    known: HashSet<u64>,
    /// Old shards whose known guilds are not listed: every guild routed to
    /// them counts as known.
    unlisted: HashSet<u32>,
    total: u32,
}

impl OldGeneration {
    pub(crate) fn new(total: u32) -> Self {
        Self {
            total: total.max(1),
            ..Self::default()
        }
    }

    /// Adds old shard `shard`'s record. Garbled marks are skipped.
    pub(crate) fn add(&mut self, shard: u32, wire: RecordWire) {
        for (key, mark) in wire.events {
            if let Some(mark) = Mark::from_hex(&mark) {
                self.history.entry(key).or_default().push_back(mark);
            }
        }
        match wire.known {
            Some(guilds) => self.known.extend(guilds),
            None => {
                self.unlisted.insert(shard);
            }
        }
    }

    /// Whether the user had received `guild` from the old generation.
    pub(crate) fn knows(&self, guild: u64) -> bool {
        self.known.contains(&guild)
            || self
                .unlisted
                .contains(&discore_protocol::shard_for_guild(guild, self.total))
    }

    /// The part of the history a new shard needs: its own guilds.
    pub(crate) fn aligner_for(&self, shard: u32, total: u32) -> Aligner {
        let mine = |key: &Key| match key {
            Some(guild) => discore_protocol::shard_for_guild(*guild, total) == shard,
            // Guildless events (DMs) go to shard 0.
            None => shard == 0,
        };
        Aligner::new(
            self.history
                .iter()
                .filter(|(key, _)| mine(key))
                .map(|(key, marks)| (*key, marks.clone()))
                .collect(),
        )
    }
}

/// What to do with one event of a new shard after the switch.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Verdict {
    Publish,
    /// The old generation published it.
    Duplicate,
    /// An artifact of the new session's start.
    Artifact,
}

/// Decides about the events of one new shard, in order, after the switch.
#[derive(Debug)]
pub(crate) struct Aligner {
    /// Per guild, the old record still ahead of us.
    cursors: HashMap<Key, VecDeque<Mark>>,
    last_sequence: Option<u64>,
    /// Guilds whose first GUILD_CREATE of the current session has passed.
    created_this_session: HashSet<u64>,
}

impl Aligner {
    pub(crate) fn new(history: HashMap<Key, VecDeque<Mark>>) -> Self {
        Self {
            cursors: history.into_iter().filter(|(_, m)| !m.is_empty()).collect(),
            last_sequence: None,
            created_this_session: HashSet::new(),
        }
    }

    /// Whether every record was walked past and the session start is
    /// behind: from here on every event is published.
    pub(crate) fn is_done(&self) -> bool {
        self.cursors.is_empty() && self.last_sequence.is_some()
    }

    /// Decides about the next event (`sequence` in its session); `knows`
    /// tells whether the user had received a guild.
    pub(crate) fn decide(
        &mut self,
        sequence: u64,
        seen: &Seen,
        knows: impl Fn(u64) -> bool,
    ) -> Verdict {
        if self.last_sequence.is_some_and(|last| sequence <= last) {
            self.created_this_session.clear();
        }
        self.last_sequence = Some(sequence);
        match seen.kind {
            Kind::SessionStart => return Verdict::Artifact,
            Kind::GuildCreate(guild) if self.created_this_session.insert(guild) => {
                // The session's own GUILD_CREATE of a guild it started with.
                return if knows(guild) {
                    Verdict::Artifact
                } else {
                    Verdict::Publish
                };
            }
            Kind::GuildCreate(_) | Kind::Other => {}
        }
        let Some(cursor) = self.cursors.get_mut(&seen.key) else {
            return Verdict::Publish;
        };
        match cursor.iter().position(|mark| *mark == seen.mark) {
            Some(offset) => {
                cursor.drain(..=offset);
                if cursor.is_empty() {
                    self.cursors.remove(&seen.key);
                }
                Verdict::Duplicate
            }
            None => {
                // The old generation never published this one: it and
                // everything after it in this guild are new.
                self.cursors.remove(&seen.key);
                Verdict::Publish
            }
        }
    }
}

/// Where each guild's stream begins in a new shard's held events, `(sequence,
/// event)` in arrival order: the first event of each guild past the
/// session's start.
pub(crate) fn heads<'a>(events: impl IntoIterator<Item = (u64, &'a Seen)>) -> Vec<(Key, Mark)> {
    let mut scanner = Aligner::new(HashMap::new());
    let mut heads: Vec<(Key, Mark)> = Vec::new();
    let mut found: HashSet<Key> = HashSet::new();
    for (sequence, seen) in events {
        if scanner.decide(sequence, seen, |_| true) == Verdict::Publish && found.insert(seen.key) {
            heads.push((seen.key, seen.mark));
        }
    }
    heads
}

/// Heads as they travel through Redis: one hash field per guild.
pub(crate) fn head_field(key: Key) -> String {
    key.map_or_else(|| "-".to_owned(), |guild| guild.to_string())
}

/// Reads a head written by [`head_field`] and [`head_value`].
pub(crate) fn parse_head(field: &str, value: &str) -> Option<(Key, Mark)> {
    let key = if field == "-" {
        None
    } else {
        Some(field.parse().ok()?)
    };
    Some((key, Mark::from_hex(value)?))
}

pub(crate) fn head_value(mark: Mark) -> String {
    mark.to_hex()
}

/// The old shard's side of the switch: for each guild whose stream in the
/// new generation begins with a head, keep publishing until that head
/// arrives; it is done when every head is reached.
#[derive(Debug)]
pub(crate) struct Drainer {
    pending: HashMap<Key, Mark>,
    reached: HashSet<Key>,
}

/// What a draining old shard does with an event.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Drained {
    /// Publish (and record) it: the new shard's stream of its guild begins
    /// later, or the new shard has nothing of its guild yet.
    Publish,
    /// Drop it: the new shard has it and every later event of its guild.
    Drop,
}

impl Drainer {
    /// Heads the old shard published already count as reached.
    pub(crate) fn new(heads: impl IntoIterator<Item = (Key, Mark)>, published: &Record) -> Self {
        let mut drainer = Self {
            pending: HashMap::new(),
            reached: HashSet::new(),
        };
        for (key, head) in heads {
            if published.contains(key, head) {
                drainer.reached.insert(key);
            } else {
                drainer.pending.insert(key, head);
            }
        }
        drainer
    }

    pub(crate) fn decide(&mut self, seen: &Seen) -> Drained {
        if self.reached.contains(&seen.key) {
            return Drained::Drop;
        }
        match self.pending.get(&seen.key) {
            Some(head) if *head == seen.mark => {
                self.pending.remove(&seen.key);
                self.reached.insert(seen.key);
                Drained::Drop
            }
            _ => Drained::Publish,
        }
    }

    /// Every head reached.
    pub(crate) fn is_complete(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests;
