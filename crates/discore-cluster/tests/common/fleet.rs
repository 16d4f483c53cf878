//! The gateway fleet both multi-process tests run: 24 shards over three
//! processes sharing Redis leases, and the checks they make.

use super::Process;
use discore_cluster::{ClusterRedis, ClusterShardReport, cluster_status};
use discore_mock::{MockServer, Observed};
use std::collections::BTreeMap;

pub const TOTAL: u32 = 24;
pub const LEASE_TTL_MS: u64 = 1000;

pub fn gateway(name: &str, redis: &str, namespace: &str, mock: &MockServer) -> Process {
    gateway_with(name, redis, namespace, mock, &[])
}

/// A gateway process with more flags (`range`, `nats`).
pub fn gateway_with(
    name: &str,
    redis: &str,
    namespace: &str,
    mock: &MockServer,
    extra: &[(&str, String)],
) -> Process {
    let mut args: Vec<(&str, String)> = extra.to_vec();
    args.extend([
        ("redis", redis.to_owned()),
        ("namespace", namespace.to_owned()),
        ("rest", mock.rest_url()),
        ("total", TOTAL.to_string()),
        ("node-id", name.to_owned()),
        ("lease-ttl-ms", LEASE_TTL_MS.to_string()),
        ("checkpoint-ms", "50".to_owned()),
        ("status-ms", "100".to_owned()),
        (
            "identify-window-ms",
            super::IDENTIFY_WINDOW.as_millis().to_string(),
        ),
        ("max-concurrency", "4".to_owned()),
        ("arbiters", "1".to_owned()),
    ]);
    Process::start(name, "gateway", &args)
}

/// Every shard live exactly once on the emulator.
pub fn all_live_once(seen: &Observed) -> bool {
    let live = super::live_shards(seen, TOTAL);
    live.len() == TOTAL as usize && live.values().all(|n| *n == 1)
}

/// The cluster status once every shard is active on one of `nodes`, each
/// holding its fair share.
pub async fn settled(redis: &ClusterRedis, nodes: &[&str]) -> Vec<ClusterShardReport> {
    super::wait_for("the cluster status shows every shard active", async || {
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

pub fn assert_clean(seen: &Observed) {
    assert!(
        seen.violations.is_empty(),
        "violations: {:#?}",
        seen.violations
    );
    super::assert_never_two_owners(seen);
}
