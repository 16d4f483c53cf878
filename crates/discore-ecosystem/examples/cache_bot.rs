//! A bot that keeps `twilight-cache-inmemory` up to date from every event
//! of a fleet and answers questions from it.
//!
//! ```sh
//! cargo run -p discore-ecosystem --example cache_bot
//! DISCORD_TOKEN=... cargo run -p discore-ecosystem --example cache_bot
//! ```
//!
//! On the embedded emulator (6 guilds, 3 shards) it asks the cache a few
//! questions, changes a member's roles through the emulator, makes shard 0
//! start a new session to show its guilds being rebuilt, and exits. On
//! Discord it reports what the cache holds every 30 s until Ctrl-C.

use actix::prelude::*;
use anyhow::Context as _;
use discore::Intents;
use discore::{ShardManager, ShutdownFleet, StopMode, WaitUntilReady};
use discore_ecosystem::{
    cache::{CacheBot, ChannelName, GuildCount, MemberRoles, SessionCounts},
    setup::Environment,
};
use discore_mock::{MockConfig, MockServer, Target};
use serde_json::json;
use std::time::Duration;
use twilight_model::id::Id;

#[actix::main]
async fn main() -> anyhow::Result<()> {
    discore_ecosystem::setup::init_logging();
    let env = Environment::from_env(MockConfig::new().guilds(6).max_guilds_per_shard(2)).await?;
    // GUILD_PRESENCES makes GUILD_CREATE carry every member (privileged:
    // enable it for the application on Discord, or request members).
    let intents = Intents::GUILDS | Intents::GUILD_MEMBERS | Intents::GUILD_PRESENCES;

    let bot = CacheBot::default();
    let cache = bot.cache();
    let bot = bot.start();
    let manager =
        ShardManager::start(env.manager_config(intents)?, bot.clone().recipient()).await?;
    let progress = manager.send(WaitUntilReady).await??;
    log::info!("fleet ready: {progress}");

    match env.mock() {
        Some(mock) => {
            actix_rt::time::timeout(Duration::from_secs(30), tour(mock, &bot))
                .await
                .context("the tour took too long")??;
        }
        None => {
            while !ctrl_c_within(Duration::from_secs(30)).await {
                let stats = cache.stats();
                log::info!(
                    "cached: {} guilds, {} channels, {} members, {} roles",
                    bot.send(GuildCount).await?,
                    stats.channels(),
                    stats.members(),
                    stats.roles()
                );
            }
        }
    }
    manager.send(ShutdownFleet(StopMode::End)).await??;
    env.stop().await;
    Ok(())
}

/// Waits up to `period`; whether Ctrl-C came meanwhile.
async fn ctrl_c_within(period: Duration) -> bool {
    actix_rt::time::timeout(period, actix_rt::signal::ctrl_c())
        .await
        .is_ok()
}

/// Asks again every 10 ms until `check` holds (at most 10 s).
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) -> anyhow::Result<()> {
    for _ in 0..1000 {
        if check().await {
            return Ok(());
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("{what} did not happen")
}

/// The emulator tour: questions, a member update, a new session.
async fn tour(mock: &MockServer, bot: &Addr<CacheBot>) -> anyhow::Result<()> {
    let guilds = mock.guild_ids();
    until("every guild cached", async || {
        bot.send(GuildCount).await.is_ok_and(|n| n == guilds.len())
    })
    .await?;
    let guild = guilds[0];
    let channel = mock.text_channel_ids(guild)[0];
    let member = mock.member_ids(guild)[0];
    log::info!("guilds cached: {}", bot.send(GuildCount).await?);
    log::info!(
        "channel {channel} is #{}",
        bot.send(ChannelName(Id::new(channel)))
            .await?
            .unwrap_or_default()
    );
    let ask = MemberRoles {
        guild: Id::new(guild),
        user: Id::new(member),
    };
    log::info!("member {member} has roles {:?}", bot.send(ask).await?);

    // GUILD_MEMBER_UPDATE from the emulator: no roles any more.
    let object = mock.guild_object(guild).context("a guild of the world")?;
    let mut update = object["members"]
        .as_array()
        .and_then(|members| {
            members
                .iter()
                .find(|m| m["user"]["id"] == json!(member.to_string()))
        })
        .cloned()
        .context("the member")?;
    update["guild_id"] = json!(guild.to_string());
    update["roles"] = json!([]);
    mock.dispatch_to_guild(guild, "GUILD_MEMBER_UPDATE", &update);
    until("the update cached", async || {
        bot.send(ask).await.is_ok_and(|r| r == Some(Vec::new()))
    })
    .await?;
    log::info!(
        "after GUILD_MEMBER_UPDATE: roles {:?}",
        bot.send(ask).await?
    );

    // Shard 0 starts a new session: its guilds are dropped and rebuilt.
    mock.invalid_session(&Target::Shard(0), false);
    until("shard 0's new session", async || {
        bot.send(SessionCounts)
            .await
            .is_ok_and(|c| c.get(&0).is_some_and(|&(new, _)| new == 2))
    })
    .await?;
    until("every guild cached again", async || {
        bot.send(GuildCount).await.is_ok_and(|n| n == guilds.len())
    })
    .await?;
    log::info!(
        "after shard 0's new session: {} guilds, sessions (new, resumed) per shard {:?}",
        bot.send(GuildCount).await?,
        bot.send(SessionCounts).await?
    );
    Ok(())
}
