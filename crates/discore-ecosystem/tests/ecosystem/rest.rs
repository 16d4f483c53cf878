//! `!ping` answered through twilight-http pointed at the emulator: the REST
//! call reaches `POST /channels/{id}/messages`, the answer comes back over
//! the gateway, and the bot does not answer itself.

use crate::common::{Recorder, ask, eventually, settled_answers};
use actix::Actor as _;
use discore::{DispatchEvent, EventFilter, EventType, Intents};
use discore::{ShardManager, ShutdownFleet, StopMode, WaitUntilReady};
use discore_ecosystem::{
    Answers,
    ping::{GetAnswers, PING, PingBot},
    setup::Environment,
};
use discore_mock::MockConfig;
use std::sync::Arc;

#[actix_rt::test]
async fn ping_is_answered_through_twilight_http() {
    let env = Environment::emulator(MockConfig::new().guilds(4).max_guilds_per_shard(2))
        .await
        .expect("the emulator starts");
    let mock = env.mock().expect("on the emulator").clone();
    let http = Arc::new(env.http().expect("a twilight client"));
    let bot = PingBot::new(http).start();
    let recorder = Recorder::default();
    let record = recorder.clone().start();
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT;
    let config = env
        .manager_config(intents)
        .expect("config")
        .subscribe(bot.clone().recipient(), PingBot::filter())
        .subscribe(
            record.recipient(),
            EventFilter::only([EventType::MessageCreate]),
        );
    let manager = ShardManager::launch(config)
        .await
        .expect("the fleet starts");
    actix_rt::time::timeout(crate::common::PATIENCE, manager.send(WaitUntilReady))
        .await
        .expect("ready in time")
        .expect("manager running")
        .expect("ready");

    // A ping in a channel of each shard's guilds, and a message that is not.
    let guilds = mock.guild_ids();
    let pinged: Vec<u64> = [guilds[0], guilds[1]]
        .iter()
        .map(|&g| mock.text_channel_ids(g)[0])
        .collect();
    for &channel in &pinged {
        mock.post_message(channel, PING).expect("posted");
    }
    mock.post_message(mock.text_channel_ids(guilds[2])[0], "hello")
        .expect("posted");

    // The pongs come back over the gateway, from the bot, in the pinged
    // channels.
    let bot_id = mock.bot_id();
    eventually("both pongs arrive", || async {
        let pongs: Vec<u64> = recorder
            .seen()
            .iter()
            .filter_map(|(_, _, event)| match event.typed() {
                Some(DispatchEvent::MessageCreate(m))
                    if m.author.id.get() == bot_id && m.content == "pong" =>
                {
                    Some(m.channel_id.get())
                }
                _ => None,
            })
            .collect();
        let mut sorted = pongs.clone();
        sorted.sort_unstable();
        let mut want = pinged.clone();
        want.sort_unstable();
        (sorted == want)
            .then_some(())
            .ok_or(format!("pongs in {pongs:?}"))
    })
    .await;
    // Its own pongs went to the bot before this question: it started
    // exactly two answers (none to itself), and both requests succeed.
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
    for channel in &pinged {
        let path = format!("/api/v10/channels/{channel}/messages");
        assert!(
            seen.rest_requests
                .iter()
                .any(|r| r.method == "POST" && r.path == path && r.status == 200),
            "{path}: {:?}",
            seen.rest_requests
        );
    }
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);

    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager running")
        .expect("shut down");
    env.stop().await;
}
