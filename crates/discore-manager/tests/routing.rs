//! Commands reach the right shard: by guild, by id, or all of them.

mod common;

use common::{collector, init_logging, manager_config, mock_config, start_mock, wait_for};
use discore_gateway::{Command, StopMode};
use discore_manager::{
    CommandTarget, ReshardMode, RouteError, SendCommandTo, ShardCount, ShardManager, ShutdownFleet,
    WaitUntilReady,
};
use discore_mock::MockServer;
use discore_protocol::{OpCode, shard_for_guild};
use twilight_model::{
    gateway::{
        payload::outgoing::{RequestGuildMembers, update_presence::UpdatePresencePayload},
        presence::{ActivityType, MinimalActivity, Status},
    },
    id::Id,
};

/// The shard ids whose connections received a payload with opcode `op`
/// mentioning `needle`.
fn receivers(mock: &MockServer, op: OpCode, needle: &str) -> Vec<u32> {
    let mut shards: Vec<u32> = mock.with_observed(|seen| {
        seen.connections
            .iter()
            .filter(|c| {
                c.received
                    .iter()
                    .any(|p| p.op == Some(u8::from(op)) && p.json.contains(needle))
            })
            .filter_map(|c| c.shard.map(|[id, _]| id))
            .collect()
    });
    shards.sort_unstable();
    shards
}

/// A member request for each guild goes to `(guild_id >> 22) % total`, and
/// its answer comes back from that shard.
#[actix_rt::test]
async fn guild_commands_reach_the_guilds_shard() {
    init_logging();
    let mock = start_mock(mock_config().guilds(6).max_guilds_per_shard(2)).await;
    let (bot, log) = collector();
    let manager = ShardManager::start(manager_config(&mock), bot.recipient())
        .await
        .expect("the fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");

    for guild in mock.guild_ids() {
        let member = mock.member_ids(guild)[0];
        let request = RequestGuildMembers::builder(Id::new(guild))
            .nonce(format!("n{guild}"))
            .user_ids(vec![Id::new(member)])
            .expect("one user id");
        let queued = manager
            .send(SendCommandTo::guild(Id::new(guild), request))
            .await
            .expect("manager answers")
            .expect("routed");
        assert_eq!(queued, 1);
    }
    for guild in mock.guild_ids() {
        let expected = shard_for_guild(guild, 3);
        let nonce = format!("\"n{guild}\"");
        wait_for("the member request to arrive", || {
            !receivers(&mock, OpCode::RequestGuildMembers, &nonce).is_empty()
        })
        .await;
        assert_eq!(
            receivers(&mock, OpCode::RequestGuildMembers, &nonce),
            [expected],
            "guild {guild}"
        );
    }
    // Each answer came back through the shard that asked.
    wait_for("six member chunks", || {
        log.events_named("GUILD_MEMBERS_CHUNK").len() == 6
    })
    .await;
    for chunk in log.events_named("GUILD_MEMBERS_CHUNK") {
        let common::Seen::Event { shard, .. } = chunk else {
            unreachable!("events_named returns events");
        };
        assert_eq!(shard.total(), 3);
    }
    assert!(mock.observed().violations.is_empty());
    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    mock.stop().await;
}

/// A presence goes to every shard; a shard id outside the fleet is refused.
#[actix_rt::test]
async fn presence_goes_to_all_shards_and_unknown_shards_are_refused() {
    init_logging();
    let mock = start_mock(mock_config().guilds(6).max_guilds_per_shard(2)).await;
    let (bot, _log) = collector();
    let manager = ShardManager::start(manager_config(&mock), bot.recipient())
        .await
        .expect("the fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");

    let activity = MinimalActivity {
        kind: ActivityType::Playing,
        name: "routing-test".into(),
        url: None,
    };
    let presence = UpdatePresencePayload::new(vec![activity.into()], false, None, Status::Idle)
        .expect("valid presence");
    let command =
        SendCommandTo::routed(Command::UpdatePresence(presence)).expect("a presence routes");
    assert_eq!(command.target, CommandTarget::AllShards);
    let queued = manager
        .send(command)
        .await
        .expect("manager answers")
        .expect("broadcast");
    assert_eq!(queued, 3);
    wait_for("every shard to send the presence", || {
        receivers(&mock, OpCode::PresenceUpdate, "routing-test") == [0, 1, 2]
    })
    .await;

    let error = manager
        .send(SendCommandTo::shard(
            7,
            Command::Raw(r#"{"op":3,"d":{}}"#.into()),
        ))
        .await
        .expect("manager answers")
        .expect_err("there is no shard 7");
    assert_eq!(
        error,
        RouteError::NotOwned {
            shard: 7,
            owned: 0..3
        }
    );
    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    mock.stop().await;
}

/// A manager running shards 1..3 of 3 refuses a guild held by shard 0.
#[actix_rt::test]
async fn a_shard_range_refuses_guilds_of_other_processes() {
    init_logging();
    let mock = start_mock(mock_config().guilds(6).max_guilds_per_shard(2)).await;
    let (bot, _log) = collector();
    let manager = ShardManager::start(
        manager_config(&mock)
            .shard_count(ShardCount::Range {
                ids: 1..3,
                total: 3,
            })
            .resharding(ReshardMode::Disabled),
        bot.recipient(),
    )
    .await
    .expect("the fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");
    let mut tuples: Vec<[u32; 2]> = mock.observed().identifies.iter().map(|i| i.shard).collect();
    tuples.sort_unstable();
    assert_eq!(tuples, [[1, 3], [2, 3]]);

    let foreign = mock
        .guild_ids()
        .into_iter()
        .find(|g| shard_for_guild(*g, 3) == 0)
        .expect("shard 0 holds a guild");
    let request = RequestGuildMembers::builder(Id::new(foreign))
        .user_ids(vec![Id::new(1)])
        .expect("one user id");
    let error = manager
        .send(SendCommandTo::guild(Id::new(foreign), request))
        .await
        .expect("manager answers")
        .expect_err("shard 0 runs elsewhere");
    assert_eq!(
        error,
        RouteError::NotOwned {
            shard: 0,
            owned: 1..3
        }
    );
    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    mock.stop().await;
}
