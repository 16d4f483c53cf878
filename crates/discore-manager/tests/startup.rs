//! Starting a fleet against the emulator: the shard count, the identify
//! queue, readiness, and a rejected token.

mod common;

use common::{collector, init_logging, manager_config, mock_config, start_mock, wait_for};
use discore_gateway::StopMode;
use discore_gateway::{EventFilter, Token};
use discore_http::HttpError;
use discore_manager::{
    ConfigError, DiscoveryConfig, FleetEvent, GetFleetStatus, ManagerConfig, ManagerError,
    ReshardMode, ShardCount, ShardManager, ShardRunState, ShutdownFleet, SupervisionConfig,
    WaitUntilReady,
};
use discore_mock::{IdentifyOutcome, MockConfig};
use std::{collections::BTreeMap, time::Duration};

/// The shard count comes from `GET /gateway/bot`, and readiness means every
/// shard READY with all its guilds.
#[actix_rt::test]
async fn automatic_shard_count_from_gateway_bot() {
    init_logging();
    let mock = start_mock(mock_config().guilds(6).max_guilds_per_shard(2)).await;
    assert_eq!(mock.recommended_shards(), 3);
    let (bot, log) = collector();
    let manager = ShardManager::launch(
        manager_config(&mock)
            .subscribe(bot.clone().recipient(), EventFilter::all())
            .subscribe_fleet(bot.recipient()),
    )
    .await
    .expect("the fleet starts");

    let progress = actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("the fleet becomes ready");
    assert_eq!(progress.total, 3);
    assert_eq!(progress.shards, 3);
    assert_eq!(progress.shards_ready, 3);
    assert_eq!(progress.guilds_expected, 6);
    assert_eq!(progress.guilds_loaded, 6);

    let seen = mock.observed();
    assert!(
        seen.rest_requests
            .iter()
            .any(|r| r.path == "/api/v10/gateway/bot" && r.status == 200),
        "{:?}",
        seen.rest_requests
    );
    let mut tuples: Vec<[u32; 2]> = seen.identifies.iter().map(|i| i.shard).collect();
    tuples.sort_unstable();
    assert_eq!(tuples, [[0, 3], [1, 3], [2, 3]]);
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);

    // Every guild arrived, through the relays, exactly once.
    wait_for("six GUILD_CREATEs", || {
        log.events_named("GUILD_CREATE").len() == 6
    })
    .await;
    let fleet = log.fleet_events();
    let ready_at = fleet
        .iter()
        .position(|e| matches!(e, FleetEvent::Ready(p) if p.is_ready()))
        .expect("a Ready notification");
    assert!(
        fleet[..ready_at]
            .iter()
            .any(|e| matches!(e, FleetEvent::Progress(p) if !p.is_ready())),
        "progress came before readiness: {fleet:?}"
    );

    let status = manager.send(GetFleetStatus).await.expect("status");
    assert_eq!(status.total, 3);
    assert_eq!(status.shard_ids, 0..3);
    assert!(status.ready);
    for report in &status.shards {
        assert_eq!(report.state, ShardRunState::Running);
        let shard = report.status.as_ref().expect("a running shard answers");
        assert_eq!(shard.identifies, 1);
        assert_eq!(shard.guilds, 2);
    }

    let report = manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    assert_eq!(report.shards_stopped, 3);
    mock.stop().await;
}

/// 32 shards at max_concurrency 4: the emulator sees no identify within its
/// bucket's window, and each bucket's shards identify in id order.
#[actix_rt::test]
async fn thirty_two_shards_respect_the_identify_buckets() {
    init_logging();
    let mock = start_mock(
        MockConfig::new()
            .guilds(32)
            .max_guilds_per_shard(1)
            .max_concurrency(4)
            .identify_window(Duration::from_millis(150))
            .heartbeat_interval(Duration::from_millis(500))
            .heartbeat_grace(Duration::from_secs(2))
            .send_limit(120, common::SEND_WINDOW)
            .rest_rate_limit(None),
    )
    .await;
    let (bot, _log) = collector();
    let manager = ShardManager::launch(
        manager_config(&mock)
            .identify(common::identify_window(Duration::from_millis(150)))
            .supervision(SupervisionConfig {
                status_interval: Duration::from_millis(50),
                ..common::supervision()
            })
            .subscribe_fleet(bot.recipient()),
    )
    .await
    .expect("the fleet starts");
    let progress = actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("the fleet becomes ready");
    assert_eq!(progress.shards, 32);

    let seen = mock.observed();
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
    let accepted: Vec<[u32; 2]> = seen
        .identifies
        .iter()
        .filter(|i| i.outcome == IdentifyOutcome::Accepted)
        .map(|i| i.shard)
        .collect();
    assert_eq!(accepted.len(), 32, "{:?}", seen.identifies);
    assert_eq!(seen.identifies.len(), 32, "no identify was refused");
    let mut per_bucket: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for [id, total] in &accepted {
        assert_eq!(*total, 32);
        per_bucket.entry(id % 4).or_default().push(*id);
    }
    for (bucket, ids) in &per_bucket {
        let expected: Vec<u32> = (0..8).map(|k| bucket + 4 * k).collect();
        assert_eq!(ids, &expected, "bucket {bucket} started out of order");
    }
    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    mock.stop().await;
}

/// A rejected token is a clear error at start, without the token in it.
#[actix_rt::test]
async fn a_rejected_token_fails_the_start() {
    init_logging();
    let mock = start_mock(mock_config()).await;
    let config = ManagerConfig::new(
        Token::new("wrong-secret-token").expect("valid"),
        common::INTENTS,
    )
    .discovery(DiscoveryConfig::at(mock.rest_url()));
    let error = ShardManager::launch(config)
        .await
        .expect_err("the token is rejected");
    assert_eq!(error, ManagerError::Discovery(HttpError::Unauthorized));
    assert!(!error.to_string().contains("wrong-secret"), "{error}");
    assert_eq!(mock.observed().identifies.len(), 0);
    mock.stop().await;
}

/// A configuration that cannot work is refused before anything starts
/// (every case is a unit test of `ManagerConfig::validate`).
#[actix_rt::test]
async fn impossible_configurations_are_refused() {
    let config = ManagerConfig::new(Token::new("t").expect("valid"), common::INTENTS).shard_count(
        ShardCount::Range {
            ids: 0..2,
            total: 4,
        },
    );
    assert_eq!(
        ShardManager::launch(config).await.map(drop),
        Err(ManagerError::InvalidConfig(ConfigError::RangeReshards {
            ids: 0..2,
            total: 4,
            mode: ReshardMode::ZeroDowntime,
        }))
    );
}

/// A guild in an outage while the fleet loads arrives as GUILD_DELETE with
/// `unavailable: true`: its shard counts it as settled at once, and the
/// fleet is ready without waiting for the guild load timeout (an hour here).
#[actix_rt::test]
async fn a_guild_that_arrives_unavailable_does_not_hold_readiness() {
    init_logging();
    let mock = start_mock(mock_config().guilds(4).max_guilds_per_shard(2)).await;
    let out = mock.guild_ids()[1];
    mock.set_guilds_unavailable(&[out], true);
    let manager = ShardManager::launch(manager_config(&mock).supervision(SupervisionConfig {
        guild_load_timeout: Duration::from_secs(3600),
        ..common::supervision()
    }))
    .await
    .expect("the fleet starts");
    let progress = actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("ready without waiting for the guild load timeout")
        .expect("manager answers")
        .expect("the fleet becomes ready");
    assert_eq!(progress.shards_ready, 2);
    assert_eq!(progress.guilds_loaded, progress.guilds_expected);
    let _ =
        actix_rt::time::timeout(common::TIMEOUT, manager.send(ShutdownFleet(StopMode::End))).await;
    mock.stop().await;
}
