//! Slash commands end to end: INTERACTION_CREATE over the gateway, the
//! answer through twilight-http's interaction client.
//!
//! ```sh
//! cargo run -p discore-ecosystem --example slash_command
//! DISCORD_TOKEN=... cargo run -p discore-ecosystem --example slash_command
//! ```
//!
//! On the embedded emulator a member runs `/ping` and `/echo text:hello`,
//! the bot answers both, and the example prints what the emulator's
//! callback route received and exits. On Discord it first registers the
//! two global commands (the emulator needs no registration), then answers
//! until Ctrl-C.

use actix::prelude::*;
use anyhow::Context as _;
use discore::Intents;
use discore::{ShardManager, ShutdownFleet, StopMode, WaitUntilReady};
use discore_ecosystem::{
    setup::Environment,
    slash::{GetAnswers, SlashBot, register},
};
use discore_mock::MockConfig;
use serde_json::json;
use std::{sync::Arc, time::Duration};

#[actix::main]
async fn main() -> anyhow::Result<()> {
    discore_ecosystem::setup::init_logging();
    let env = Environment::from_env(MockConfig::new().guilds(2).max_guilds_per_shard(1)).await?;
    let http = Arc::new(env.http()?);
    let bot = SlashBot::new(Arc::clone(&http)).start();
    // INTERACTION_CREATE needs no intent.
    let config = env
        .manager_config(Intents::GUILDS)?
        .subscribe(bot.clone().recipient(), SlashBot::filter());
    let manager = ShardManager::launch(config).await?;
    log::info!("fleet ready: {}", manager.send(WaitUntilReady).await??);

    match env.mock() {
        Some(mock) => {
            let channel = mock.text_channel_ids(mock.guild_ids()[0])[0];
            mock.create_interaction(channel, "ping", &json!([]))?;
            mock.create_interaction(
                channel,
                "echo",
                &json!([{"name": "text", "type": 3, "value": "hello"}]),
            )?;
            let mut answers = bot.send(GetAnswers).await?;
            for _ in 0..1000 {
                if answers.started == 2 && answers.settled() {
                    break;
                }
                actix_rt::time::sleep(Duration::from_millis(10)).await;
                answers = bot.send(GetAnswers).await?;
            }
            for callback in mock.observed().interaction_callbacks {
                log::info!(
                    "callback for interaction {}: {}",
                    callback.interaction_id,
                    callback.body
                );
            }
            anyhow::ensure!(answers.answered == 2, "not every command was answered");
        }
        None => {
            let application = http.current_user_application().await?.model().await?.id;
            register(&http, application).await?;
            log::info!("/ping and /echo registered; Ctrl-C to stop");
            actix_rt::signal::ctrl_c().await.context("Ctrl-C")?;
        }
    }
    manager.send(ShutdownFleet(StopMode::End)).await??;
    env.stop().await;
    Ok(())
}
