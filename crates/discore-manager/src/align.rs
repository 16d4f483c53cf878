//! Deciding, event by event, what a new fleet may deliver after a zero-
//! downtime re-sharding switch: no event the old fleet already delivered,
//! and no artifact of the new sessions' start. Pure logic; the relays apply
//! it.
//!
//! During a re-sharding both fleets hold sessions that own each guild, so
//! Discord sends every guild event to both. The old fleet keeps delivering
//! and records what it delivered, per guild. The new fleet holds its events
//! back. At the switch the old fleet falls silent and hands over its
//! records; the new fleet then walks its held events in order and, per
//! guild, skips those found in the old record (they were delivered), until
//! the first event the old fleet never delivered: from there on, every event
//! of that guild is new. Events are compared by content, which is identical
//! in both sessions; both fleets see each guild's events in the same order.
//!
//! Artifacts of a new session are skipped too: READY and RESUMED, and the
//! GUILD_CREATE that a new session sends for each guild it starts with, when
//! the user already knows the guild. A guild the user never saw (the old
//! shard holding it had failed) keeps its GUILD_CREATE.

use discore_gateway::{Dispatch, EventFilter, EventType};
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};
use twilight_model::gateway::{
    event::DispatchEvent, payload::incoming::rate_limited::RateLimitMetadata,
};

/// The ordering domain of an event: its guild, or `None` for guildless ones.
pub(crate) type Key = Option<u64>;

/// What the old fleet delivered, per key, oldest first.
pub(crate) type History = HashMap<Key, VecDeque<Arc<Dispatch>>>;

/// The event type of a dispatch, `None` when twilight-model does not know it.
pub(crate) fn kind_of(dispatch: &Dispatch) -> Option<EventType> {
    match dispatch {
        Dispatch::Known { event, .. } => Some(event.kind()),
        Dispatch::Raw(raw) => EventType::try_from(&*raw.name).ok(),
    }
}

/// Whether two dispatches are the same event. Both sessions receive the
/// same payload, so equal content means the same event.
pub(crate) fn same_event(a: &Dispatch, b: &Dispatch) -> bool {
    match (a, b) {
        (
            Dispatch::Known {
                name: n1,
                event: e1,
            },
            Dispatch::Known {
                name: n2,
                event: e2,
            },
        ) => n1 == n2 && e1 == e2,
        (Dispatch::Raw(r1), Dispatch::Raw(r2)) => {
            r1.name == r2.name && r1.data.get() == r2.data.get()
        }
        _ => false,
    }
}

/// The guild an event belongs to.
pub(crate) fn guild_of(dispatch: &Dispatch) -> Key {
    match dispatch {
        Dispatch::Known { event, .. } => known_guild(event),
        Dispatch::Raw(raw) => {
            discore_protocol::guild_of_dispatch(&raw.name, raw.data.get().as_bytes())
        }
    }
}

fn known_guild(event: &DispatchEvent) -> Key {
    use DispatchEvent as E;
    let id = match event {
        E::AutoModerationActionExecution(e) => Some(e.guild_id),
        E::AutoModerationRuleCreate(e) => Some(e.0.guild_id),
        E::AutoModerationRuleDelete(e) => Some(e.0.guild_id),
        E::AutoModerationRuleUpdate(e) => Some(e.0.guild_id),
        E::BanAdd(e) => Some(e.guild_id),
        E::BanRemove(e) => Some(e.guild_id),
        E::ChannelCreate(e) => e.0.guild_id,
        E::ChannelDelete(e) => e.0.guild_id,
        E::ChannelPinsUpdate(e) => e.guild_id,
        E::ChannelUpdate(e) => e.0.guild_id,
        E::CommandPermissionsUpdate(e) => Some(e.0.guild_id),
        E::GuildAuditLogEntryCreate(e) => e.0.guild_id,
        E::GuildCreate(e) => Some(e.id()),
        E::GuildDelete(e) => Some(e.id),
        E::GuildEmojisUpdate(e) => Some(e.guild_id),
        E::GuildIntegrationsUpdate(e) => Some(e.guild_id),
        E::GuildScheduledEventCreate(e) => Some(e.0.guild_id),
        E::GuildScheduledEventDelete(e) => Some(e.0.guild_id),
        E::GuildScheduledEventUpdate(e) => Some(e.0.guild_id),
        E::GuildScheduledEventUserAdd(e) => Some(e.guild_id),
        E::GuildScheduledEventUserRemove(e) => Some(e.guild_id),
        E::GuildStickersUpdate(e) => Some(e.guild_id),
        E::GuildUpdate(e) => Some(e.0.id),
        E::IntegrationCreate(e) => e.0.guild_id,
        E::IntegrationDelete(e) => Some(e.guild_id),
        E::IntegrationUpdate(e) => e.0.guild_id,
        E::InteractionCreate(e) => e.0.guild_id,
        E::InviteCreate(e) => Some(e.guild_id),
        E::InviteDelete(e) => Some(e.guild_id),
        E::MemberAdd(e) => Some(e.guild_id),
        E::MemberChunk(e) => Some(e.guild_id),
        E::MemberRemove(e) => Some(e.guild_id),
        E::MemberUpdate(e) => Some(e.guild_id),
        E::MessageCreate(e) => e.message.guild_id,
        E::MessageDelete(e) => e.guild_id,
        E::MessageDeleteBulk(e) => e.guild_id,
        E::MessagePollVoteAdd(e) => e.guild_id,
        E::MessagePollVoteRemove(e) => e.guild_id,
        E::MessageUpdate(e) => e.0.guild_id,
        E::PresenceUpdate(e) => Some(e.0.guild_id),
        E::RateLimited(e) => match &e.meta {
            RateLimitMetadata::RequestGuildMembers { guild_id, .. } => Some(*guild_id),
            _ => None,
        },
        E::ReactionAdd(e) => e.0.guild_id,
        E::ReactionRemove(e) => e.0.guild_id,
        E::ReactionRemoveAll(e) => e.guild_id,
        E::ReactionRemoveEmoji(e) => Some(e.guild_id),
        E::RoleCreate(e) => Some(e.guild_id),
        E::RoleDelete(e) => Some(e.guild_id),
        E::RoleUpdate(e) => Some(e.guild_id),
        E::StageInstanceCreate(e) => Some(e.0.guild_id),
        E::StageInstanceDelete(e) => Some(e.0.guild_id),
        E::StageInstanceUpdate(e) => Some(e.0.guild_id),
        E::ThreadCreate(e) => e.0.guild_id,
        E::ThreadDelete(e) => Some(e.guild_id),
        E::ThreadListSync(e) => Some(e.guild_id),
        E::ThreadMemberUpdate(e) => Some(e.guild_id),
        E::ThreadMembersUpdate(e) => Some(e.guild_id),
        E::ThreadUpdate(e) => e.0.guild_id,
        E::TypingStart(e) => e.guild_id,
        E::UnavailableGuild(e) => Some(e.id),
        E::VoiceServerUpdate(e) => Some(e.guild_id),
        E::VoiceStateUpdate(e) => e.0.guild_id,
        E::WebhooksUpdate(e) => Some(e.guild_id),
        E::EntitlementCreate(_)
        | E::EntitlementDelete(_)
        | E::EntitlementUpdate(_)
        | E::Ready(_)
        | E::Resumed
        | E::SubscriptionCreate(_)
        | E::SubscriptionDelete(_)
        | E::SubscriptionUpdate(_)
        | E::UserUpdate(_) => None,
    };
    id.map(twilight_model::id::Id::get)
}

/// How an event changes the set of guilds the user knows.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum GuildChange {
    /// GUILD_CREATE: the user now knows the guild.
    Known(u64),
    /// GUILD_DELETE without `unavailable`: the bot left the guild.
    Left(u64),
}

pub(crate) fn guild_change(dispatch: &Dispatch) -> Option<GuildChange> {
    match dispatch {
        Dispatch::Known { event, .. } => match event {
            DispatchEvent::GuildCreate(create) => Some(GuildChange::Known(create.id().get())),
            DispatchEvent::GuildDelete(delete) if delete.unavailable != Some(true) => {
                Some(GuildChange::Left(delete.id.get()))
            }
            _ => None,
        },
        Dispatch::Raw(raw) if &*raw.name == "GUILD_CREATE" => {
            guild_of(dispatch).map(GuildChange::Known)
        }
        Dispatch::Raw(_) => None,
    }
}

fn is_guild_create(dispatch: &Dispatch) -> bool {
    match dispatch {
        Dispatch::Known { event, .. } => matches!(event, DispatchEvent::GuildCreate(_)),
        Dispatch::Raw(raw) => &*raw.name == "GUILD_CREATE",
    }
}

fn is_session_start(dispatch: &Dispatch) -> bool {
    matches!(dispatch.name(), "READY" | "RESUMED")
}

/// The guilds the user has received (GUILD_CREATE, until a GUILD_DELETE that
/// is not an outage). Shared by every relay of a manager.
#[derive(Debug, Default)]
pub(crate) struct KnownGuilds(Mutex<HashSet<u64>>);

impl KnownGuilds {
    pub(crate) fn apply(&self, change: GuildChange) {
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match change {
            GuildChange::Known(guild) => known.insert(guild),
            GuildChange::Left(guild) => known.remove(&guild),
        };
    }

    pub(crate) fn contains(&self, guild: u64) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&guild)
    }
}

/// Records what an old fleet's relay delivers while a new fleet starts.
///
/// Bounded: past `capacity` events the oldest are forgotten, and events of
/// the new fleet that matched them may then be delivered a second time.
#[derive(Debug)]
pub(crate) struct Recorder {
    history: History,
    /// Keys in recording order, to forget the oldest event first.
    order: VecDeque<Key>,
    capacity: usize,
    forgotten: usize,
}

impl Recorder {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            history: History::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            forgotten: 0,
        }
    }

    pub(crate) fn record(&mut self, dispatch: &Arc<Dispatch>) {
        let key = guild_of(dispatch);
        self.history
            .entry(key)
            .or_default()
            .push_back(Arc::clone(dispatch));
        self.order.push_back(key);
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
            && let Some(events) = self.history.get_mut(&oldest)
        {
            events.pop_front();
            self.forgotten += 1;
        }
    }

    /// What was recorded so far.
    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    /// Events forgotten because the record was full.
    pub(crate) fn forgotten(&self) -> usize {
        self.forgotten
    }

    pub(crate) fn into_history(self) -> History {
        self.history
    }
}

/// What to do with one event of the new fleet.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Verdict {
    /// Deliver it.
    Deliver,
    /// The old fleet delivered it already.
    Duplicate,
    /// An artifact of the new session's start.
    Artifact,
}

/// The per-key position in the old fleet's record.
#[derive(Debug)]
struct Cursor {
    events: VecDeque<Arc<Dispatch>>,
    /// Events before this index are behind us.
    next: usize,
}

/// Decides about the events of one new shard after the switch.
#[derive(Debug)]
pub(crate) struct Aligner {
    cursors: HashMap<Key, Cursor>,
    /// The last sequence seen: a smaller one means a new session began.
    last_sequence: Option<u64>,
    /// Guilds whose first GUILD_CREATE of the current session has passed.
    created_this_session: HashSet<u64>,
}

impl Aligner {
    pub(crate) fn new(history: History) -> Self {
        Self {
            cursors: history
                .into_iter()
                .filter(|(_, events)| !events.is_empty())
                .map(|(key, events)| (key, Cursor { events, next: 0 }))
                .collect(),
            last_sequence: None,
            created_this_session: HashSet::new(),
        }
    }

    /// Whether every record has been walked past: from here on every event
    /// is delivered.
    #[cfg(test)]
    pub(crate) fn is_exhausted(&self) -> bool {
        self.cursors.is_empty()
    }

    /// Decides about the next event of this shard, `sequence` being its
    /// sequence number in its session. `known` tells whether the user has
    /// received a guild.
    pub(crate) fn decide(
        &mut self,
        sequence: u64,
        dispatch: &Dispatch,
        known: impl Fn(u64) -> bool,
    ) -> Verdict {
        if self.last_sequence.is_some_and(|last| sequence <= last) {
            self.created_this_session.clear();
        }
        self.last_sequence = Some(sequence);
        if is_session_start(dispatch) {
            return Verdict::Artifact;
        }
        let key = guild_of(dispatch);
        if is_guild_create(dispatch)
            && let Some(guild) = key
            && self.created_this_session.insert(guild)
        {
            // The session's own GUILD_CREATE for a guild it started with.
            return if known(guild) {
                Verdict::Artifact
            } else {
                Verdict::Deliver
            };
        }
        let Some(cursor) = self.cursors.get_mut(&key) else {
            return Verdict::Deliver;
        };
        let found = cursor
            .events
            .iter()
            .skip(cursor.next)
            .position(|old| same_event(old, dispatch));
        match found {
            Some(offset) => {
                cursor.next += offset + 1;
                if cursor.next >= cursor.events.len() {
                    self.cursors.remove(&key);
                }
                Verdict::Duplicate
            }
            None => {
                // The old fleet never delivered this one: it and everything
                // after it in this guild are new.
                self.cursors.remove(&key);
                Verdict::Deliver
            }
        }
    }
}

/// The first event of each key in a new shard's held-back events, leaving
/// out the artifacts of session starts: where the new fleet's stream of
/// each guild begins. `events` are `(sequence, dispatch)` in arrival order.
pub(crate) fn heads<'a>(
    events: impl IntoIterator<Item = (u64, &'a Arc<Dispatch>)>,
) -> HashMap<Key, Arc<Dispatch>> {
    let mut scanner = Aligner::new(History::new());
    let mut heads: HashMap<Key, Arc<Dispatch>> = HashMap::new();
    for (sequence, dispatch) in events {
        if scanner.decide(sequence, dispatch, |_| true) == Verdict::Deliver {
            heads
                .entry(guild_of(dispatch))
                .or_insert_with(|| Arc::clone(dispatch));
        }
    }
    heads
}

/// What a draining old relay does with an event.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Drained {
    /// Deliver (and record) it: the new fleet's stream of its guild begins
    /// later, or the new fleet has nothing of its guild yet.
    Deliver,
    /// Drop it: the new fleet has it and every later event of its guild.
    Drop,
}

/// The old relay's side of the switch. For each guild whose stream in the
/// new fleet begins with `head`, the old fleet keeps delivering until it
/// reaches `head`; from there the new fleet delivers. The old relay is done
/// when every head is reached, so nothing sent before the new sessions
/// began is lost in the old shard's socket.
#[derive(Debug)]
pub(crate) struct Drainer {
    pending: HashMap<Key, Arc<Dispatch>>,
    reached: HashSet<Key>,
}

impl Drainer {
    /// Heads the old relay delivered already count as reached.
    pub(crate) fn new(heads: HashMap<Key, Arc<Dispatch>>, delivered: &History) -> Self {
        let mut drainer = Self {
            pending: HashMap::new(),
            reached: HashSet::new(),
        };
        for (key, head) in heads {
            let seen = delivered
                .get(&key)
                .is_some_and(|events| events.iter().any(|e| same_event(e, &head)));
            if seen {
                drainer.reached.insert(key);
            } else {
                drainer.pending.insert(key, head);
            }
        }
        drainer
    }

    pub(crate) fn decide(&mut self, dispatch: &Dispatch) -> Drained {
        let key = guild_of(dispatch);
        if self.reached.contains(&key) {
            return Drained::Drop;
        }
        match self.pending.get(&key) {
            Some(head) if same_event(head, dispatch) => {
                self.pending.remove(&key);
                self.reached.insert(key);
                Drained::Drop
            }
            _ => Drained::Deliver,
        }
    }

    /// Every head reached.
    pub(crate) fn is_complete(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Every dispatch event type twilight-model knows.
const DISPATCH_TYPES: &[EventType] = &[
    EventType::AutoModerationActionExecution,
    EventType::AutoModerationRuleCreate,
    EventType::AutoModerationRuleDelete,
    EventType::AutoModerationRuleUpdate,
    EventType::BanAdd,
    EventType::BanRemove,
    EventType::ChannelCreate,
    EventType::ChannelDelete,
    EventType::ChannelPinsUpdate,
    EventType::ChannelUpdate,
    EventType::CommandPermissionsUpdate,
    EventType::EntitlementCreate,
    EventType::EntitlementDelete,
    EventType::EntitlementUpdate,
    EventType::GuildAuditLogEntryCreate,
    EventType::GuildCreate,
    EventType::GuildDelete,
    EventType::GuildEmojisUpdate,
    EventType::GuildIntegrationsUpdate,
    EventType::GuildScheduledEventCreate,
    EventType::GuildScheduledEventDelete,
    EventType::GuildScheduledEventUpdate,
    EventType::GuildScheduledEventUserAdd,
    EventType::GuildScheduledEventUserRemove,
    EventType::GuildStickersUpdate,
    EventType::GuildUpdate,
    EventType::IntegrationCreate,
    EventType::IntegrationDelete,
    EventType::IntegrationUpdate,
    EventType::InteractionCreate,
    EventType::InviteCreate,
    EventType::InviteDelete,
    EventType::MemberAdd,
    EventType::MemberChunk,
    EventType::MemberRemove,
    EventType::MemberUpdate,
    EventType::MessageCreate,
    EventType::MessageDelete,
    EventType::MessageDeleteBulk,
    EventType::MessagePollVoteAdd,
    EventType::MessagePollVoteRemove,
    EventType::MessageUpdate,
    EventType::PresenceUpdate,
    EventType::RateLimited,
    EventType::ReactionAdd,
    EventType::ReactionRemove,
    EventType::ReactionRemoveAll,
    EventType::ReactionRemoveEmoji,
    EventType::Ready,
    EventType::Resumed,
    EventType::RoleCreate,
    EventType::RoleDelete,
    EventType::RoleUpdate,
    EventType::StageInstanceCreate,
    EventType::StageInstanceDelete,
    EventType::StageInstanceUpdate,
    EventType::SubscriptionCreate,
    EventType::SubscriptionDelete,
    EventType::SubscriptionUpdate,
    EventType::ThreadCreate,
    EventType::ThreadDelete,
    EventType::ThreadListSync,
    EventType::ThreadMemberUpdate,
    EventType::ThreadMembersUpdate,
    EventType::ThreadUpdate,
    EventType::TypingStart,
    EventType::UnavailableGuild,
    EventType::UserUpdate,
    EventType::VoiceServerUpdate,
    EventType::VoiceStateUpdate,
    EventType::WebhooksUpdate,
];

/// The filter a shard needs so that every subscriber gets what it wants and
/// nothing else is deserialized: the union of the subscribers' filters.
pub(crate) fn union_filter<'a>(filters: impl IntoIterator<Item = &'a EventFilter>) -> EventFilter {
    let filters: Vec<&EventFilter> = filters.into_iter().collect();
    let unknown = filters.iter().any(|f| f.wants(None));
    let kinds: Vec<EventType> = DISPATCH_TYPES
        .iter()
        .copied()
        .filter(|kind| filters.iter().any(|f| f.wants(Some(*kind))))
        .collect();
    if unknown && kinds.len() == DISPATCH_TYPES.len() {
        // Someone wants everything: keep types this list may not know yet.
        return EventFilter::all();
    }
    let filter = EventFilter::only(kinds);
    if unknown {
        filter.with_unknown()
    } else {
        filter
    }
}

#[cfg(test)]
mod tests;
