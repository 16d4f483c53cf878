//! Recipients come and go at run time, each with its own filter.

mod common;

use common::{Log, collector, init_logging, manager_config, mock_config, start_mock, wait_for};
use discore_gateway::{EventFilter, EventType, StopMode, Subscribe, Unsubscribe};
use discore_manager::{ShardManager, ShutdownFleet, WaitUntilReady};
use discore_mock::MockServer;
use serde_json::json;

fn names(log: &Log) -> Vec<String> {
    log.lock()
        .iter()
        .filter_map(|s| match s {
            common::Seen::Event { name, .. } => Some(name.clone()),
            common::Seen::Fleet(_) => None,
        })
        .collect()
}

fn post(mock: &MockServer, guild: u64) {
    let channel = mock.text_channel_ids(guild)[0];
    mock.post_message(channel, "hello").expect("posted");
}

fn custom(mock: &MockServer, guild: u64) {
    let deliveries = mock.dispatch_to_guild(
        guild,
        "DISCORE_TEST_EVENT",
        &json!({"guild_id": guild.to_string(), "n": 1}),
    );
    assert_eq!(deliveries.len(), 1);
}

/// A recipient gets what its filter selects; recipients added later get
/// what theirs selects; a removed one gets nothing more.
#[actix_rt::test]
async fn recipients_with_filters_come_and_go() {
    init_logging();
    let mock = start_mock(mock_config().guilds(2).max_guilds_per_shard(2)).await;
    let guild = mock.guild_ids()[0];
    let (first, first_log) = collector();
    let manager = ShardManager::launch(manager_config(&mock).subscribe(
        first.clone().recipient(),
        EventFilter::only([EventType::MessageCreate]),
    ))
    .await
    .expect("the fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");
    assert!(
        names(&first_log).is_empty(),
        "no GUILD_CREATE for a messages-only filter"
    );

    custom(&mock, guild);
    post(&mock, guild);
    wait_for("the first message", || names(&first_log).len() == 1).await;
    assert_eq!(names(&first_log), ["MESSAGE_CREATE"]);

    // A second recipient that wants everything, unknown events included.
    let (second, second_log) = collector();
    manager
        .send(Subscribe {
            recipient: second.clone().recipient(),
            filter: EventFilter::all(),
        })
        .await
        .expect("manager answers");
    custom(&mock, guild);
    post(&mock, guild);
    wait_for("both events for the second recipient", || {
        names(&second_log).len() == 2
    })
    .await;
    assert_eq!(names(&second_log), ["DISCORE_TEST_EVENT", "MESSAGE_CREATE"]);
    wait_for("the second message", || names(&first_log).len() == 2).await;
    assert_eq!(names(&first_log), ["MESSAGE_CREATE", "MESSAGE_CREATE"]);

    // The first recipient leaves.
    manager
        .send(Unsubscribe(first.clone().recipient()))
        .await
        .expect("manager answers");
    post(&mock, guild);
    wait_for("the third message", || names(&second_log).len() == 3).await;
    assert_eq!(
        names(&first_log).len(),
        2,
        "an unsubscribed recipient gets nothing"
    );

    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    mock.stop().await;
}
