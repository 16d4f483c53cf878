//! A cache of the bot's world: every event into `twilight-cache-inmemory`.
//!
//! discore delivers twilight-model's `DispatchEvent`; the cache takes each
//! payload type by reference, so [`update_cache`] hands it the payload
//! inside the shared event without a copy. The one thing a gateway layer
//! has to add is what a new session means: a shard that starts a new
//! session (READY, not RESUMED) missed everything since its old one ended,
//! so the cached state of *its* guilds is stale and is dropped before the
//! new session's GUILD_CREATEs fill it again ([`forget_shard`]). Other
//! shards' guilds are untouched, and a resumed session keeps everything:
//! Discord replays what it missed.

use actix::{Actor, Context, Handler, Message};
use discore::protocol::shard_for_guild;
use discore::{DispatchEvent, GatewayEvent, ShardId};
use std::{collections::BTreeMap, sync::Arc};
use twilight_cache_inmemory::DefaultInMemoryCache;
use twilight_model::{
    gateway::payload::incoming::GuildDelete,
    id::{
        Id,
        marker::{ChannelMarker, GuildMarker, RoleMarker, UserMarker},
    },
};

/// Applies one event to the cache. Events the cache does not keep are
/// ignored.
pub fn update_cache(cache: &DefaultInMemoryCache, event: &DispatchEvent) {
    use DispatchEvent as E;
    match event {
        E::ChannelCreate(v) => cache.update(&**v),
        E::ChannelDelete(v) => cache.update(&**v),
        E::ChannelPinsUpdate(v) => cache.update(v),
        E::ChannelUpdate(v) => cache.update(&**v),
        E::GuildCreate(v) => cache.update(&**v),
        E::GuildDelete(v) => cache.update(v),
        E::GuildEmojisUpdate(v) => cache.update(v),
        E::GuildScheduledEventCreate(v) => cache.update(&**v),
        E::GuildScheduledEventDelete(v) => cache.update(&**v),
        E::GuildScheduledEventUpdate(v) => cache.update(&**v),
        E::GuildScheduledEventUserAdd(v) => cache.update(v),
        E::GuildScheduledEventUserRemove(v) => cache.update(v),
        E::GuildStickersUpdate(v) => cache.update(v),
        E::GuildUpdate(v) => cache.update(&**v),
        E::IntegrationCreate(v) => cache.update(&**v),
        E::IntegrationDelete(v) => cache.update(v),
        E::IntegrationUpdate(v) => cache.update(&**v),
        E::InteractionCreate(v) => cache.update(&**v),
        E::MemberAdd(v) => cache.update(&**v),
        E::MemberChunk(v) => cache.update(v),
        E::MemberRemove(v) => cache.update(v),
        E::MemberUpdate(v) => cache.update(&**v),
        E::MessageCreate(v) => cache.update(&**v),
        E::MessageDelete(v) => cache.update(v),
        E::MessageDeleteBulk(v) => cache.update(v),
        E::MessageUpdate(v) => cache.update(&**v),
        E::PresenceUpdate(v) => cache.update(&**v),
        E::ReactionAdd(v) => cache.update(&**v),
        E::ReactionRemove(v) => cache.update(&**v),
        E::ReactionRemoveAll(v) => cache.update(v),
        E::ReactionRemoveEmoji(v) => cache.update(v),
        E::Ready(v) => cache.update(v),
        E::RoleCreate(v) => cache.update(v),
        E::RoleDelete(v) => cache.update(v),
        E::RoleUpdate(v) => cache.update(v),
        E::StageInstanceCreate(v) => cache.update(v),
        E::StageInstanceDelete(v) => cache.update(v),
        E::StageInstanceUpdate(v) => cache.update(v),
        E::ThreadCreate(v) => cache.update(&**v),
        E::ThreadDelete(v) => cache.update(v),
        E::ThreadListSync(v) => cache.update(v),
        E::ThreadUpdate(v) => cache.update(&**v),
        E::UnavailableGuild(v) => cache.update(v),
        E::UserUpdate(v) => cache.update(v),
        E::VoiceStateUpdate(v) => cache.update(&**v),
        _ => {}
    }
}

/// Drops every cached guild that `shard` holds (`(guild_id >> 22) % total`),
/// with its channels, roles, members, presences and voice states. Returns
/// how many guilds were dropped.
pub fn forget_shard(cache: &DefaultInMemoryCache, shard: ShardId) -> usize {
    // Collect first: the cache's maps must not be changed while iterated.
    let guilds: Vec<Id<GuildMarker>> = cache
        .iter()
        .guilds()
        .map(|guild| *guild.key())
        .filter(|id| shard_for_guild(id.get(), shard.total()) == shard.number())
        .collect();
    for &id in &guilds {
        cache.update(&GuildDelete {
            id,
            unavailable: None,
        });
    }
    guilds.len()
}

/// A bot that keeps a cache of everything it sees and answers questions
/// from it.
#[derive(Debug)]
pub struct CacheBot {
    cache: Arc<DefaultInMemoryCache>,
    new_sessions: BTreeMap<u32, u32>,
    resumes: BTreeMap<u32, u32>,
}

impl Default for CacheBot {
    fn default() -> Self {
        Self::new(Arc::new(DefaultInMemoryCache::new()))
    }
}

impl CacheBot {
    /// A bot filling `cache`.
    pub fn new(cache: Arc<DefaultInMemoryCache>) -> Self {
        Self {
            cache,
            new_sessions: BTreeMap::new(),
            resumes: BTreeMap::new(),
        }
    }

    /// The cache, shared.
    pub fn cache(&self) -> Arc<DefaultInMemoryCache> {
        Arc::clone(&self.cache)
    }
}

impl Actor for CacheBot {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for CacheBot {
    type Result = ();

    /// Applies one event; a new session first forgets its shard's guilds.
    fn handle(&mut self, message: GatewayEvent, _: &mut Context<Self>) {
        let Some(event) = message.typed() else {
            return;
        };
        match event {
            DispatchEvent::Ready(_) => {
                let dropped = forget_shard(&self.cache, message.shard);
                *self.new_sessions.entry(message.shard.number()).or_default() += 1;
                log::info!(
                    "shard {}: new session, {dropped} cached guilds dropped",
                    message.shard
                );
            }
            DispatchEvent::Resumed => {
                *self.resumes.entry(message.shard.number()).or_default() += 1;
                log::info!("shard {}: resumed, cache kept", message.shard);
            }
            _ => {}
        }
        update_cache(&self.cache, event);
    }
}

/// How many guilds are cached (available ones, with their GUILD_CREATE in).
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "usize")]
pub struct GuildCount;

impl Handler<GuildCount> for CacheBot {
    type Result = usize;

    /// Counts the available cached guilds.
    fn handle(&mut self, _: GuildCount, _: &mut Context<Self>) -> usize {
        self.cache
            .iter()
            .guilds()
            .filter(|g| g.unavailable() != Some(true))
            .count()
    }
}

/// A member's roles, if the member is cached.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Option<Vec<Id<RoleMarker>>>")]
pub struct MemberRoles {
    /// The guild.
    pub guild: Id<GuildMarker>,
    /// The member.
    pub user: Id<UserMarker>,
}

impl Handler<MemberRoles> for CacheBot {
    type Result = Option<Vec<Id<RoleMarker>>>;

    /// Looks the member up.
    fn handle(&mut self, ask: MemberRoles, _: &mut Context<Self>) -> Self::Result {
        self.cache
            .member(ask.guild, ask.user)
            .map(|member| member.roles().to_vec())
    }
}

/// A channel's name, if the channel is cached.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Option<String>")]
pub struct ChannelName(pub Id<ChannelMarker>);

impl Handler<ChannelName> for CacheBot {
    type Result = Option<String>;

    /// Looks the channel up.
    fn handle(&mut self, ask: ChannelName, _: &mut Context<Self>) -> Self::Result {
        self.cache.channel(ask.0).and_then(|c| c.name.clone())
    }
}

/// Sessions seen per shard id: `(new sessions, resumes)`.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "BTreeMap<u32, (u32, u32)>")]
pub struct SessionCounts;

impl Handler<SessionCounts> for CacheBot {
    type Result = actix::MessageResult<SessionCounts>;

    /// Counts READY and RESUMED per shard.
    fn handle(&mut self, _: SessionCounts, _: &mut Context<Self>) -> Self::Result {
        let mut counts: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
        for (&shard, &n) in &self.new_sessions {
            counts.entry(shard).or_default().0 = n;
        }
        for (&shard, &n) in &self.resumes {
            counts.entry(shard).or_default().1 = n;
        }
        actix::MessageResult(counts)
    }
}
