//! Supervision against the emulator: crashed shards restart and resume,
//! crash loops escalate, fatal close codes do not loop.

mod common;

use actix::Arbiter;
use common::{
    PanicFor, collector, init_logging, manager_config, mock_config, start_mock, wait_for,
};
use discore_gateway::{Backoff, InMemoryIdentifyQueue, ShardFailureReason, StopMode};
use discore_manager::{
    FleetEvent, FleetStop, GetFleetStatus, IdentifyConfig, ManagerError, Placement, ReshardMode,
    RestartPolicy, ShardCount, ShardFailure, ShardManager, ShardRunState, ShutdownFleet,
    SupervisionConfig, WaitUntilReady,
};
use discore_mock::{IdentifyOutcome, ResumeOutcome, Target};
use discore_protocol::shard_for_guild;
use std::{sync::Arc, time::Duration};

/// A shard whose arbiter (thread) dies is restarted on another one from its
/// session, resumes it, and delivers what happened meanwhile.
#[actix_rt::test]
async fn a_crashed_shard_is_restarted_and_resumes() {
    init_logging();
    let mock = start_mock(mock_config().guilds(4).max_guilds_per_shard(2)).await;
    let arbiters = [Arbiter::new(), Arbiter::new()];
    let (bot, log) = collector();
    let manager = ShardManager::launch(
        manager_config(&mock)
            .placement(Placement::Given(
                arbiters.iter().map(Arbiter::handle).collect(),
            ))
            .subscribe(bot.clone().recipient(), discore_gateway::EventFilter::all())
            .subscribe_fleet(bot.recipient()),
    )
    .await
    .expect("the fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");
    let status = manager.send(GetFleetStatus).await.expect("status");
    assert_eq!(status.shards[1].arbiter, 1, "shard 1 runs on arbiter 1");

    // Shard 1's thread goes away: its actor is dropped without a shutdown.
    arbiters[1].stop();
    wait_for("the restart notification", || {
        log.has_fleet(|e| {
            matches!(e, FleetEvent::ShardRestarted { shard, resuming: true, attempt: 1 } if shard.number() == 1)
        })
    })
    .await;
    // Something happens in shard 1's guild while it is away or back.
    let guild = mock
        .guild_ids()
        .into_iter()
        .find(|g| shard_for_guild(*g, 2) == 1)
        .expect("shard 1 holds a guild");
    let channel = mock.text_channel_ids(guild)[0];
    let (message, _) = mock
        .post_message(channel, "after the crash")
        .expect("posted");
    let message_id: u64 = message["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("an id");

    mock.wait_until(common::TIMEOUT, |seen| {
        seen.resumes
            .iter()
            .any(|r| matches!(r.outcome, ResumeOutcome::Resumed { .. }))
    })
    .await
    .expect("shard 1 resumed");
    wait_for("the message", || {
        log.messages().contains(&(guild, message_id))
    })
    .await;

    let seen = mock.observed();
    assert_eq!(seen.identifies.len(), 2, "the restart did not identify");
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
    let status = manager.send(GetFleetStatus).await.expect("status");
    let shard = &status.shards[1];
    assert_eq!(shard.state, ShardRunState::Running);
    assert_eq!(shard.restarts, 1);
    assert_eq!(shard.arbiter, 0, "restarted on the arbiter still alive");
    assert!(shard.status.as_ref().is_some_and(|s| s.resumes == 1));
    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    arbiters[0].stop();
    mock.stop().await;
}

/// A shard that panics every time it identifies is restarted up to the
/// policy's limit, then given up with a failure notification.
#[actix_rt::test]
async fn repeated_crashes_escalate_instead_of_looping() {
    init_logging();
    let mock = start_mock(mock_config().guilds(4).max_guilds_per_shard(2)).await;
    let (bot, log) = collector();
    let queue = Arc::new(PanicFor {
        inner: Arc::new(InMemoryIdentifyQueue::with_window(
            1,
            Duration::from_millis(60),
        )),
        shard: 1,
    });
    let manager = ShardManager::launch(
        manager_config(&mock)
            .identify(IdentifyConfig::queue(queue))
            .supervision(SupervisionConfig {
                restart: RestartPolicy {
                    backoff: Backoff {
                        base: Duration::from_millis(10),
                        cap: Duration::from_millis(40),
                    },
                    max_restarts: 3,
                    window: Duration::from_secs(60),
                },
                ..common::supervision()
            })
            .subscribe_fleet(bot.recipient()),
    )
    .await
    .expect("the fleet starts");

    let error = actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect_err("shard 1 never becomes ready");
    let ManagerError::ShardFailed { shard, failure } = error else {
        panic!("expected ShardFailed, got {error:?}");
    };
    assert_eq!(shard.number(), 1);
    assert_eq!(
        failure,
        ShardFailure::RestartIntensity {
            restarts: 3,
            window: Duration::from_secs(60)
        }
    );
    let restarts: Vec<u32> = log
        .fleet_events()
        .iter()
        .filter_map(|e| match e {
            FleetEvent::ShardRestarted { shard, attempt, .. } if shard.number() == 1 => {
                Some(*attempt)
            }
            _ => None,
        })
        .collect();
    assert_eq!(restarts, [1, 2, 3]);
    assert!(log.has_fleet(|e| matches!(
        e,
        FleetEvent::ShardFailed { shard, failure: ShardFailure::RestartIntensity { .. } } if shard.number() == 1
    )));

    let status = manager.send(GetFleetStatus).await.expect("status");
    assert!(matches!(
        status.shards[1].state,
        ShardRunState::Failed(ShardFailure::RestartIntensity { .. })
    ));
    assert_eq!(status.shards[1].restarts, 3);
    assert_eq!(status.shards[0].state, ShardRunState::Running);
    // Shard 1 never got as far as an identify; shard 0 is unharmed.
    let seen = mock.observed();
    assert!(
        seen.identifies.iter().all(|i| i.shard == [0, 2]),
        "{:?}",
        seen.identifies
    );
    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    mock.stop().await;
}

/// A close code every shard would share (4004: the token was rejected)
/// stops the whole fleet; nothing reconnects.
#[actix_rt::test]
async fn a_fatal_code_stops_the_fleet_without_looping() {
    init_logging();
    let mock = start_mock(mock_config().guilds(4).max_guilds_per_shard(2)).await;
    let (bot, log) = collector();
    let manager = ShardManager::launch(manager_config(&mock).subscribe_fleet(bot.recipient()))
        .await
        .expect("the fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");
    let connections_before = mock.observed().connections.len();
    assert_eq!(mock.close(&Target::Shard(1), 4004), 1);

    wait_for("the fleet to stop", || {
        log.has_fleet(|e| {
            *e == FleetEvent::Stopped(FleetStop::Fatal(ShardFailureReason::AuthenticationFailed))
        })
    })
    .await;
    wait_for("the manager to go away", || !manager.connected()).await;
    mock.wait_until(common::TIMEOUT, |seen| seen.open_connections() == 0)
        .await
        .expect("every shard closed its connection");
    let seen = mock.observed();
    // No connection after the fault, one identify per shard: no retry.
    assert_eq!(
        seen.connections.len(),
        connections_before,
        "{:#?}",
        seen.connections
    );
    assert_eq!(seen.identifies.len(), 2);
    assert!(
        !log.fleet_events()
            .iter()
            .any(|e| matches!(e, FleetEvent::ShardRestarted { .. }))
    );
    mock.stop().await;
}

/// In a manager that does not re-shard (a shard range), 4011 stops that
/// shard for good and reports it; the others keep running.
#[actix_rt::test]
async fn a_fatal_code_stops_only_its_shard_when_the_fleet_can_go_on() {
    init_logging();
    let mock = start_mock(mock_config().guilds(4).max_guilds_per_shard(2)).await;
    let (bot, log) = collector();
    let manager = ShardManager::launch(
        manager_config(&mock)
            .shard_count(ShardCount::Range {
                ids: 0..2,
                total: 2,
            })
            .resharding(ReshardMode::Disabled)
            .subscribe(bot.clone().recipient(), discore_gateway::EventFilter::all())
            .subscribe_fleet(bot.recipient()),
    )
    .await
    .expect("the fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");
    assert_eq!(mock.close(&Target::Shard(1), 4011), 1);

    wait_for("the failure notification", || {
        log.has_fleet(|e| {
            matches!(
                e,
                FleetEvent::ReshardingRequired { shard, reason: ShardFailureReason::ShardingRequired }
                    if shard.number() == 1
            )
        })
    })
    .await;
    assert!(log.has_fleet(|e| matches!(
        e,
        FleetEvent::ShardFailed {
            shard,
            failure: ShardFailure::Fatal(ShardFailureReason::ShardingRequired)
        } if shard.number() == 1
    )));
    let status = manager.send(GetFleetStatus).await.expect("status");
    assert!(matches!(
        status.shards[1].state,
        ShardRunState::Failed(ShardFailure::Fatal(ShardFailureReason::ShardingRequired))
    ));
    assert_eq!(status.shards[0].state, ShardRunState::Running);
    mock.wait_until(common::TIMEOUT, |seen| {
        seen.connections_of_shard(1).all(|c| !c.is_open())
    })
    .await
    .expect("shard 1's connection is closed");
    // Shard 0 still serves: an event of its guild arrives.
    let seen = mock.observed();
    assert_eq!(
        seen.connections_of_shard(1).count(),
        1,
        "shard 1 never reconnected"
    );
    assert_eq!(
        seen.identifies
            .iter()
            .filter(|i| i.outcome == IdentifyOutcome::Accepted)
            .count(),
        2
    );
    let guild = mock
        .guild_ids()
        .into_iter()
        .find(|g| shard_for_guild(*g, 2) == 0)
        .expect("shard 0 holds a guild");
    let (message, _) = mock
        .post_message(mock.text_channel_ids(guild)[0], "still serving")
        .expect("posted");
    let id: u64 = message["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("an id");
    wait_for("shard 0's message", || {
        log.messages().contains(&(guild, id))
    })
    .await;
    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    mock.stop().await;
}
