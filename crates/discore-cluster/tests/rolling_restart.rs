//! A rolling restart of every gateway process (a replacement starts, the
//! old process stops cleanly) hands every shard over by resume: zero
//! identifies beyond the first one per shard, no shard ever run by two
//! processes.

mod common;

use common::{Process, REDIS_URL};
use discore_cluster::{ClusterRedis, ClusterShardReport, cluster_status};
use discore_mock::{MockServer, Observed};
use std::{collections::BTreeMap, time::Instant};

const TOTAL: u32 = 24;
const LEASE_TTL_MS: u64 = 1000;

fn gateway(name: &str, namespace: &str, mock: &MockServer) -> Process {
    Process::start(
        name,
        "gateway",
        &[
            ("redis", REDIS_URL.to_owned()),
            ("namespace", namespace.to_owned()),
            ("rest", mock.rest_url()),
            ("total", TOTAL.to_string()),
            ("node-id", name.to_owned()),
            ("lease-ttl-ms", LEASE_TTL_MS.to_string()),
            ("checkpoint-ms", "50".to_owned()),
            ("status-ms", "100".to_owned()),
            ("identify-window-ms", "250".to_owned()),
            ("max-concurrency", "4".to_owned()),
            ("arbiters", "1".to_owned()),
        ],
    )
}

/// Every shard live exactly once on the emulator.
fn all_live_once(seen: &Observed) -> bool {
    let live = common::live_shards(seen, TOTAL);
    live.len() == TOTAL as usize && live.values().all(|n| *n == 1)
}

/// The cluster status once every shard is active on one of `nodes`, each
/// holding its fair share.
async fn settled(redis: &ClusterRedis, nodes: &[&str]) -> Vec<ClusterShardReport> {
    common::wait_for("the cluster status shows every shard active", async || {
        let status = cluster_status(redis).await.ok()?;
        let active = status
            .iter()
            .filter(|r| r.state.as_deref() == Some("Active"));
        let mut per_node: BTreeMap<&str, u32> = BTreeMap::new();
        for report in active {
            *per_node.entry(report.node.as_str()).or_default() += 1;
        }
        let share = TOTAL / u32::try_from(nodes.len()).ok()?;
        let fair = status.len() == TOTAL as usize
            && per_node.len() == nodes.len()
            && nodes.iter().all(|n| per_node.get(n) == Some(&share));
        fair.then_some(status)
    })
    .await
}

fn assert_clean(seen: &Observed) {
    assert!(
        seen.violations.is_empty(),
        "violations: {:#?}",
        seen.violations
    );
    common::assert_never_two_owners(seen);
}

#[actix_rt::test]
async fn a_rolling_restart_of_every_process_costs_no_identify() {
    common::init_logging();
    let namespace = common::namespace("rolling");
    let redis = common::redis(&namespace).await;
    let mock = common::mock(48, 4).await;

    let mut old: Vec<Process> = ["node-a", "node-b", "node-c"]
        .into_iter()
        .map(|name| gateway(name, &namespace, &mock))
        .collect();
    common::wait_mock(&mock, "24 shards run once each", all_live_once).await;
    settled(&redis, &["node-a", "node-b", "node-c"]).await;
    assert_eq!(mock.observed().identifies_total(), 24);

    let restart = Instant::now();
    let mut live: Vec<String> = old.iter().map(|p| p.name.clone()).collect();
    let mut new = Vec::new();
    for process in &mut old {
        // Surge: the replacement takes its share from the others by
        // hand-over, then the old process hands its shards over and stops.
        let replacement = format!("{}-2", process.name);
        new.push(gateway(&replacement, &namespace, &mock));
        live.push(replacement);
        let names: Vec<&str> = live.iter().map(String::as_str).collect();
        settled(&redis, &names).await;
        process.terminate().await;
        live.retain(|n| *n != process.name);
        let names: Vec<&str> = live.iter().map(String::as_str).collect();
        settled(&redis, &names).await;
        common::wait_mock(&mock, "24 shards run once each", all_live_once).await;
    }
    println!("rolling restart of 3 processes: {:?}", restart.elapsed());
    let seen = mock.observed();
    assert_clean(&seen);
    assert_eq!(
        seen.identifies_total(),
        24,
        "the rolling restart identified"
    );
    let status = cluster_status(&redis).await.expect("status");
    assert!(status.iter().all(|r| r.identifies == 0), "{status:#?}");

    for process in &mut new {
        process.terminate().await;
    }
    mock.stop().await;
    redis.delete_namespace().await.expect("cleanup");
}
