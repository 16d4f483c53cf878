//! Fixed ranges across processes (a StatefulSet's pods): two processes run
//! shards 0..12 and 12..24; a third asking for 0..12 waits while the first
//! holds it, and takes the range over by resuming when the first is killed
//! with `kill -9`. No shard ever runs twice, nothing identifies again.

mod common;

use common::fleet::{TOTAL, all_live_once, assert_clean, gateway_with};
use discore_cluster::{RedisSessionStore, cluster_status};
use discore_manager::session_store::SessionStore as _;
use std::collections::BTreeMap;

/// Which node runs each shard, from the cluster status, once every shard is
/// active.
async fn owners(redis: &discore_cluster::ClusterRedis) -> BTreeMap<u32, String> {
    common::wait_for("every shard active in the status", async || {
        let status = cluster_status(redis).await.ok()?;
        let active: BTreeMap<u32, String> = status
            .iter()
            .filter(|r| r.state.as_deref() == Some("Active"))
            .map(|r| (r.shard.number(), r.node.clone()))
            .collect();
        (active.len() == TOTAL as usize).then_some(active)
    })
    .await
}

#[actix_rt::test]
async fn a_range_waits_for_its_holder_and_is_resumed_after_a_kill_9() {
    common::init_logging();
    let namespace = common::namespace("range");
    let server = common::redis_server();
    let redis = common::redis(&server, &namespace).await;
    let mock = common::mock(48, 4).await;
    let range = |r: &str| [("range", r.to_owned())];

    let mut low = gateway_with("low", &server.url(), &namespace, &mock, &range("0..12"));
    let mut high = gateway_with("high", &server.url(), &namespace, &mock, &range("12..24"));
    common::wait_mock(&mock, "24 shards run once each", all_live_once).await;
    let first = owners(&redis).await;
    for (shard, node) in &first {
        let expected = if *shard < 12 { "low" } else { "high" };
        assert_eq!(node, expected, "shard {shard}");
    }
    let store = RedisSessionStore::new(&redis);
    common::wait_for("every session is checkpointed", async || {
        let saved = store.load().await.ok()?;
        (saved.len() == TOTAL as usize).then_some(())
    })
    .await;

    // A second pod with the same range (a stuck terminating pod's
    // successor) claims nothing while the first holds the leases.
    let mut successor = gateway_with(
        "successor",
        &server.url(),
        &namespace,
        &mock,
        &range("0..12"),
    );
    common::wait_for("the successor registered", async || {
        successor.printed("STARTED successor").then_some(())
    })
    .await;
    // Over several lease renewals (TTL 1 s, renewed every third of it),
    // nothing moves.
    let watched = std::time::Instant::now();
    while watched.elapsed() < std::time::Duration::from_millis(1500) {
        assert_eq!(owners(&redis).await, first, "nothing moves while held");
        actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    low.kill9();
    common::wait_for("the successor runs 0..12", async || {
        let now = owners(&redis).await;
        now.iter()
            .all(|(shard, node)| node == if *shard < 12 { "successor" } else { "high" })
            .then_some(())
    })
    .await;
    common::wait_mock(&mock, "24 shards run once each again", all_live_once).await;
    let seen = mock.observed();
    assert_clean(&seen);
    assert_eq!(seen.identifies_total(), 24, "the take-over resumed");
    let reports = cluster_status(&redis).await.expect("status");
    for report in reports.iter().filter(|r| r.node == "successor") {
        assert!(report.resumes >= 1 && report.identifies == 0, "{report:?}");
    }

    for node in [&mut high, &mut successor] {
        node.terminate().await;
    }
    mock.stop().await;
    redis.delete_namespace().await.expect("cleanup");
}
