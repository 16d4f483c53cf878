//! A bot that answers `!ping` with `pong` through twilight-http.
//!
//! ```sh
//! cargo run -p discore-ecosystem --example rest_bot
//! DISCORD_TOKEN=... cargo run -p discore-ecosystem --example rest_bot
//! # against the emulator binary: configuration only
//! cargo run -p discore-mock -- --guilds 4
//! DISCORD_TOKEN=mock-token DISCORE_REST_URL=http://127.0.0.1:PORT/api/v10 \
//!     cargo run -p discore-ecosystem --example rest_bot
//! ```
//!
//! The bot's code is the same everywhere: the token and the REST base URL
//! (`Environment`) are the only difference between the embedded emulator,
//! the emulator binary and Discord. On the embedded emulator a member says
//! `!ping` in two channels, the bot answers, and the example exits; on
//! Discord it answers until Ctrl-C (MESSAGE_CONTENT must be enabled for the
//! application to read commands).

use actix::prelude::*;
use anyhow::Context as _;
use discore::Intents;
use discore::{ShardManager, ShutdownFleet, StopMode, WaitUntilReady};
use discore_ecosystem::{
    ping::{GetAnswers, PING, PingBot},
    setup::Environment,
};
use discore_mock::MockConfig;
use std::{sync::Arc, time::Duration};

#[actix::main]
async fn main() -> anyhow::Result<()> {
    discore_ecosystem::setup::init_logging();
    let env = Environment::from_env(MockConfig::new().guilds(4).max_guilds_per_shard(2)).await?;
    log::info!("REST base: {}", env.rest_url());
    let http = Arc::new(env.http()?);
    let bot = PingBot::new(http).start();
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT;
    let config = env
        .manager_config(intents)?
        .subscribe(bot.clone().recipient(), PingBot::filter());
    let manager = ShardManager::launch(config).await?;
    log::info!("fleet ready: {}", manager.send(WaitUntilReady).await??);

    match env.mock() {
        Some(mock) => {
            let guilds = mock.guild_ids();
            for guild in &guilds[..2] {
                let channel = mock.text_channel_ids(*guild)[0];
                mock.post_message(channel, PING)?;
                log::info!("a member said {PING} in channel {channel}");
            }
            let mut answers = bot.send(GetAnswers).await?;
            for _ in 0..1000 {
                if answers.started == 2 && answers.settled() {
                    break;
                }
                actix_rt::time::sleep(Duration::from_millis(10)).await;
                answers = bot.send(GetAnswers).await?;
            }
            log::info!("answered {}, failed {}", answers.answered, answers.failed);
            let posted: Vec<String> = mock
                .observed()
                .rest_requests
                .iter()
                .filter(|r| r.method == "POST")
                .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
                .collect();
            log::info!("the emulator saw: {posted:?}");
            anyhow::ensure!(answers.answered == 2, "not every ping was answered");
        }
        None => {
            actix_rt::signal::ctrl_c().await.context("Ctrl-C")?;
        }
    }
    manager.send(ShutdownFleet(StopMode::End)).await??;
    env.stop().await;
    Ok(())
}
