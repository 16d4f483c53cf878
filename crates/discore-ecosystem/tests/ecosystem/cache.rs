//! The cache bot follows the emulator's world: after startup, after member
//! updates, across a resume (nothing dropped), and across a new session of
//! one shard (only that shard's guilds rebuilt from scratch).

use crate::common::{ask, eventually};
use actix::Actor as _;
use discore::Intents;
use discore::protocol::shard_for_guild;
use discore::{ShardManager, ShutdownFleet, StopMode, WaitUntilReady};
use discore_ecosystem::{
    cache::{CacheBot, ChannelName, GuildCount, MemberRoles, SessionCounts},
    setup::Environment,
};
use discore_mock::{MockConfig, MockServer, ResumeOutcome, Target};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use twilight_cache_inmemory::DefaultInMemoryCache;
use twilight_model::id::Id;

const GUILDS: u64 = 6;
const SHARDS: u32 = 3;

/// What the test compares: a guild's name, channels (id → name), roles and
/// members (id → role ids).
#[derive(Clone, Debug, PartialEq)]
struct GuildView {
    name: String,
    channels: BTreeMap<u64, Option<String>>,
    roles: BTreeSet<u64>,
    members: BTreeMap<u64, BTreeSet<u64>>,
}

fn ids(values: &Value) -> BTreeSet<u64> {
    values
        .as_array()
        .expect("an array of ids")
        .iter()
        .map(|v| v.as_str().and_then(|s| s.parse().ok()).expect("an id"))
        .collect()
}

fn id_of(value: &Value) -> u64 {
    value["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("an id")
}

/// The world's truth, from the emulator.
fn world_view(mock: &MockServer, guild: u64) -> GuildView {
    let object = mock.guild_object(guild).expect("a guild of the world");
    GuildView {
        name: object["name"].as_str().expect("a name").to_owned(),
        channels: object["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .map(|c| (id_of(c), c["name"].as_str().map(str::to_owned)))
            .collect(),
        roles: object["roles"]
            .as_array()
            .expect("roles")
            .iter()
            .map(id_of)
            .collect(),
        members: object["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| (id_of(&m["user"]), ids(&m["roles"])))
            .collect(),
    }
}

/// What the cache holds about `guild`.
fn cache_view(cache: &DefaultInMemoryCache, guild: u64) -> Result<GuildView, String> {
    let id = Id::new(guild);
    let cached = cache.guild(id).ok_or("guild not cached")?;
    if cached.unavailable() == Some(true) {
        return Err("guild unavailable".into());
    }
    let channels = cache
        .guild_channels(id)
        .map(|set| set.iter().copied().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.get(), cache.channel(c).and_then(|c| c.name.clone())))
        .collect();
    let roles = cache
        .guild_roles(id)
        .map(|set| set.iter().map(|r| r.get()).collect())
        .unwrap_or_default();
    let members = cache
        .guild_members(id)
        .map(|set| set.iter().copied().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|user| {
            let roles = cache
                .member(id, user)
                .map(|m| m.roles().iter().map(|r| r.get()).collect())
                .unwrap_or_default();
            (user.get(), roles)
        })
        .collect();
    Ok(GuildView {
        name: cached.name().to_owned(),
        channels,
        roles,
        members,
    })
}

/// Waits until the cache holds exactly `expected` for every guild.
async fn cache_matches(cache: &DefaultInMemoryCache, expected: &BTreeMap<u64, GuildView>) {
    eventually("the cache matches the world", || async {
        let cached: BTreeSet<u64> = cache.iter().guilds().map(|g| g.key().get()).collect();
        let wanted: BTreeSet<u64> = expected.keys().copied().collect();
        if cached != wanted {
            return Err(format!("guilds cached {cached:?}, expected {wanted:?}"));
        }
        for (&guild, view) in expected {
            let cached = cache_view(cache, guild).map_err(|e| format!("guild {guild}: {e}"))?;
            if &cached != view {
                return Err(format!(
                    "guild {guild}: cached {cached:?}, expected {view:?}"
                ));
            }
        }
        Ok(())
    })
    .await;
}

/// GUILD_CREATE of a guild the world does not have, on the same shard as
/// `like` (of `SHARDS`): the bot joined it, and will have left it by the
/// time a new session starts (its READY will not list it).
fn extra_guild(mock: &MockServer, like: u64) -> (u64, Value, GuildView) {
    let id = (((like >> 22) + 3 * 1000) << 22) | 7;
    let mut object = mock.guild_object(like).expect("a guild of the world");
    object["id"] = json!(id.to_string());
    object["name"] = json!("left while offline");
    for list in [
        "channels",
        "roles",
        "members",
        "presences",
        "soundboard_sounds",
    ] {
        object[list] = json!([]);
    }
    let view = GuildView {
        name: "left while offline".to_owned(),
        channels: BTreeMap::new(),
        roles: BTreeSet::new(),
        members: BTreeMap::new(),
    };
    (id, object, view)
}

/// A world member's JSON with its `guild_id`, ready for GUILD_MEMBER_*.
fn member_event(mock: &MockServer, guild: u64, index: usize) -> Value {
    let object = mock.guild_object(guild).expect("a guild of the world");
    let mut member = object["members"][index].clone();
    member["guild_id"] = json!(guild.to_string());
    member
}

#[actix_rt::test]
async fn cache_matches_the_world_through_updates_a_resume_and_a_new_session() {
    let env = Environment::emulator(
        MockConfig::new()
            .guilds(GUILDS)
            .max_guilds_per_shard(GUILDS / u64::from(SHARDS)),
    )
    .await
    .expect("the emulator starts");
    let mock = env.mock().expect("on the emulator").clone();
    let bot = CacheBot::default();
    let cache = bot.cache();
    let bot = bot.start();
    // GUILD_PRESENCES: GUILD_CREATE lists every member (see docs/ecosystem.md
    // for bots without it).
    let intents = Intents::GUILDS | Intents::GUILD_MEMBERS | Intents::GUILD_PRESENCES;
    let manager = ShardManager::start(
        env.manager_config(intents).expect("config"),
        bot.clone().recipient(),
    )
    .await
    .expect("the fleet starts");
    actix_rt::time::timeout(crate::common::PATIENCE, manager.send(WaitUntilReady))
        .await
        .expect("ready in time")
        .expect("manager running")
        .expect("ready");

    // Startup: every guild as the world has it.
    let guilds = mock.guild_ids();
    let mut expected: BTreeMap<u64, GuildView> =
        guilds.iter().map(|&g| (g, world_view(&mock, g))).collect();
    cache_matches(&cache, &expected).await;
    assert_eq!(ask(&bot, GuildCount).await, GUILDS as usize);

    // Two guilds on different shards: `a` will resume, then start anew.
    let a = guilds[0];
    let shard_a = shard_for_guild(a, SHARDS);
    let b = *guilds
        .iter()
        .find(|&&g| shard_for_guild(g, SHARDS) != shard_a)
        .expect("a guild on another shard");

    // The bot answers from the cache.
    let text = mock.text_channel_ids(a)[0];
    assert_eq!(
        ask(&bot, ChannelName(Id::new(text))).await,
        expected[&a].channels[&text]
    );
    let member = mock.member_ids(a)[0];
    assert_eq!(
        ask(
            &bot,
            MemberRoles {
                guild: Id::new(a),
                user: Id::new(member)
            }
        )
        .await
        .map(|roles| roles.iter().map(|r| r.get()).collect::<BTreeSet<_>>()),
        Some(expected[&a].members[&member].clone())
    );

    // Member updates: one member of `a` gets every role; a newcomer joins
    // `a` and `b` (members the world never had).
    let all_roles = expected[&a].roles.clone();
    let mut update = member_event(&mock, a, 1);
    let updated = id_of(&update["user"]);
    update["roles"] = json!(all_roles.iter().map(u64::to_string).collect::<Vec<_>>());
    assert!(
        !mock
            .dispatch_to_guild(a, "GUILD_MEMBER_UPDATE", &update)
            .is_empty()
    );
    expected
        .get_mut(&a)
        .expect("a")
        .members
        .insert(updated, all_roles.clone());
    for guild in [a, b] {
        let mut newcomer = member_event(&mock, guild, 1);
        let newcomer_id = 1_000_000_000_000_000 + guild % 1000;
        newcomer["user"]["id"] = json!(newcomer_id.to_string());
        newcomer["user"]["username"] = json!("newcomer");
        newcomer["roles"] = json!([]);
        assert!(
            !mock
                .dispatch_to_guild(guild, "GUILD_MEMBER_ADD", &newcomer)
                .is_empty()
        );
        expected
            .get_mut(&guild)
            .expect("guild")
            .members
            .insert(newcomer_id, BTreeSet::new());
    }
    // Each of the two shards also joins a guild the world does not have.
    let mut extras = Vec::new();
    for guild in [a, b] {
        let (id, object, view) = extra_guild(&mock, guild);
        let shard = shard_for_guild(id, SHARDS);
        assert_eq!(shard, shard_for_guild(guild, SHARDS));
        assert!(
            !mock
                .dispatch(Some(&Target::Shard(shard)), "GUILD_CREATE", &object)
                .is_empty()
        );
        expected.insert(id, view);
        extras.push(id);
    }
    cache_matches(&cache, &expected).await;
    assert_eq!(ask(&bot, GuildCount).await, GUILDS as usize + 2);
    assert_eq!(
        ask(
            &bot,
            MemberRoles {
                guild: Id::new(a),
                user: Id::new(updated)
            }
        )
        .await
        .map(|roles| roles.len()),
        Some(all_roles.len())
    );

    // A resume: the connection of `a`'s shard closes with 4000 and an update
    // comes meanwhile. The session goes on, the cache keeps everything and
    // gets the update (live or replayed).
    mock.close(&Target::Shard(shard_a), 4000);
    let mut update = member_event(&mock, a, 2);
    let second = id_of(&update["user"]);
    update["roles"] = json!([]);
    mock.dispatch_to_guild(a, "GUILD_MEMBER_UPDATE", &update);
    expected
        .get_mut(&a)
        .expect("a")
        .members
        .insert(second, BTreeSet::new());
    eventually("the shard resumed", || async {
        let counts = ask(&bot, SessionCounts).await;
        match counts.get(&shard_a) {
            Some(&(1, 1)) => Ok(()),
            other => Err(format!("shard {shard_a}: (new, resumed) = {other:?}")),
        }
    })
    .await;
    let seen = mock.observed();
    assert!(
        seen.resumes
            .iter()
            .any(|r| matches!(r.outcome, ResumeOutcome::Resumed { .. })),
        "{:?}",
        seen.resumes
    );
    assert_eq!(seen.identifies_total(), SHARDS as usize, "no new identify");
    cache_matches(&cache, &expected).await;

    // A new session for `a`'s shard (op 9, not resumable): its guilds are
    // dropped and rebuilt from the new GUILD_CREATEs, so they are the world
    // again (newcomer and role changes gone), and the guild its new READY
    // does not list is gone (no GUILD_DELETE will ever say so); `b`'s shard
    // kept its session and its cache, newcomer and extra guild included.
    mock.invalid_session(&Target::Shard(shard_a), false);
    expected.remove(&extras[0]);
    for &guild in &guilds {
        if shard_for_guild(guild, SHARDS) == shard_a {
            expected.insert(guild, world_view(&mock, guild));
        }
    }
    eventually("the shard started a new session", || async {
        let counts = ask(&bot, SessionCounts).await;
        match counts.get(&shard_a) {
            Some(&(2, _)) => Ok(()),
            other => Err(format!("shard {shard_a}: (new, resumed) = {other:?}")),
        }
    })
    .await;
    cache_matches(&cache, &expected).await;
    let counts = ask(&bot, SessionCounts).await;
    for shard in (0..SHARDS).filter(|&s| s != shard_a) {
        assert_eq!(counts.get(&shard), Some(&(1, 0)), "shard {shard}");
    }
    assert_eq!(ask(&bot, GuildCount).await, GUILDS as usize + 1);
    assert!(mock.observed().violations.is_empty());

    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager running")
        .expect("shut down");
    env.stop().await;
}
