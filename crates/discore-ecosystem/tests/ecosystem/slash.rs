//! Slash commands end to end offline: INTERACTION_CREATE from the
//! emulator, the answer through twilight-http's interaction client to the
//! callback route, once per interaction.

use crate::common::{ask, eventually, settled_answers};
use actix::Actor as _;
use discore::Intents;
use discore::{ShardManager, ShutdownFleet, StopMode, WaitUntilReady};
use discore_ecosystem::{
    Answers,
    setup::Environment,
    slash::{GetAnswers, SlashBot},
};
use discore_mock::MockConfig;
use serde_json::json;
use std::sync::Arc;

#[actix_rt::test]
async fn slash_commands_are_answered_through_the_interaction_client() {
    let env = Environment::emulator(MockConfig::new().guilds(2).max_guilds_per_shard(1))
        .await
        .expect("the emulator starts");
    let mock = env.mock().expect("on the emulator").clone();
    let http = Arc::new(env.http().expect("a twilight client"));
    let bot = SlashBot::new(http).start();
    let config = env
        .manager_config(Intents::GUILDS)
        .expect("config")
        .subscribe(bot.clone().recipient(), SlashBot::filter());
    let manager = ShardManager::launch(config)
        .await
        .expect("the fleet starts");
    actix_rt::time::timeout(crate::common::PATIENCE, manager.send(WaitUntilReady))
        .await
        .expect("ready in time")
        .expect("manager running")
        .expect("ready");

    // One command per shard, after one the bot does not know on the same
    // shard (so the bot has handled it when the answers are in).
    let guilds = mock.guild_ids();
    let channel = |g: usize| mock.text_channel_ids(guilds[g])[0];
    let unknown = mock
        .create_interaction(channel(0), "nope", &json!([]))
        .expect("dispatched");
    let ping = mock
        .create_interaction(channel(0), "ping", &json!([]))
        .expect("dispatched");
    let echo = mock
        .create_interaction(
            channel(1),
            "echo",
            &json!([{"name": "text", "type": 3, "value": "hello there"}]),
        )
        .expect("dispatched");
    assert!(!ping.deliveries.is_empty() && !echo.deliveries.is_empty());

    let callbacks = eventually("both callbacks arrive", || async {
        let seen = mock.observed();
        (seen.interaction_callbacks.len() >= 2)
            .then_some(seen.interaction_callbacks)
            .ok_or("waiting".to_owned())
    })
    .await;
    for (created, content) in [(&ping, "pong"), (&echo, "hello there")] {
        let callback = callbacks
            .iter()
            .find(|c| c.interaction_id == created.id)
            .unwrap_or_else(|| panic!("a callback for {}", created.id));
        assert_eq!(callback.interaction_token, created.token);
        assert_eq!(callback.body["type"], 4, "ChannelMessageWithSource");
        assert_eq!(callback.body["data"]["content"], content);
    }
    assert!(callbacks.iter().all(|c| c.interaction_id != unknown.id));
    // The unknown command came first on its shard: the bot had handled it
    // when it answered `/ping`, without starting an answer.
    assert_eq!(ask(&bot, GetAnswers).await.started, 2);
    assert_eq!(
        settled_answers(&bot.clone().recipient()).await,
        Answers {
            started: 2,
            answered: 2,
            failed: 0
        }
    );
    let seen = mock.observed();
    assert_eq!(seen.interaction_callbacks.len(), 2);
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);

    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager running")
        .expect("shut down");
    env.stop().await;
}
