//! Three gateway processes (real OS processes) share 24 shards through
//! Redis without an identify-concurrency violation; `kill -9` of one has its
//! shards resumed by the others once its leases expire, with no identify and
//! no shard ever run by two processes.

mod common;

use common::{Process, TIMEOUT};
use discore_cluster::RedisSessionStore;
use discore_manager::session_store::SessionStore as _;
use std::{collections::BTreeMap, time::Instant};

use common::fleet::{LEASE_TTL_MS, TOTAL, all_live_once, assert_clean, gateway, settled};

#[actix_rt::test]
async fn three_processes_share_24_shards_and_take_over_a_killed_one() {
    common::init_logging();
    let namespace = common::namespace("shards");
    let server = common::redis_server();
    let redis = common::redis(&server, &namespace).await;
    let mock = common::mock(48, 4).await;

    let started = Instant::now();
    let mut nodes: Vec<Process> = ["node-a", "node-b", "node-c"]
        .into_iter()
        .map(|name| gateway(name, &server.url(), &namespace, &mock))
        .collect();
    common::wait_mock(&mock, "24 shards run once each", all_live_once).await;
    let status = settled(&redis, &["node-a", "node-b", "node-c"]).await;
    println!("24 shards on 3 processes in {:?}", started.elapsed());
    let seen = mock.observed();
    assert_clean(&seen);
    assert_eq!(seen.identifies_total(), 24, "one identify per shard");

    // A crash right after READY, before the first checkpoint, must
    // identify: wait until every session is checkpointed.
    let store = RedisSessionStore::new(&redis);
    common::wait_for("every session is checkpointed", async || {
        let saved = store.load().await.ok()?;
        (saved.len() == TOTAL as usize).then_some(())
    })
    .await;

    // A crash: node-b's shards are resumed by node-a and node-c.
    let victims: Vec<u32> = status
        .iter()
        .filter(|r| r.node == "node-b")
        .map(|r| r.shard.number())
        .collect();
    let old_tokens: BTreeMap<u32, u64> = status
        .iter()
        .map(|r| (r.shard.number(), r.fencing_token))
        .collect();
    assert_eq!(victims.len(), 8);
    let resumes_before = seen.resumes_total();
    let killed = Instant::now();
    nodes[1].kill9();
    // The killed connections end first; then, after the lease TTL, the
    // shards come back on the survivors.
    common::wait_mock(&mock, "the killed shards are gone", |seen| {
        common::live_shards(seen, TOTAL).len() == 16
    })
    .await;
    common::wait_mock(&mock, "24 shards run once each again", all_live_once).await;
    let took = killed.elapsed();
    let status = settled(&redis, &["node-a", "node-c"]).await;
    println!("take-over of 8 shards after kill -9: {took:?} (lease ttl {LEASE_TTL_MS} ms)");
    let seen = mock.observed();
    for shard in &victims {
        let report = status
            .iter()
            .find(|r| r.shard.number() == *shard)
            .expect("reported");
        assert_ne!(report.node, "node-b");
        assert!(
            report.fencing_token > old_tokens[shard],
            "shard {shard}: the new owner's fencing token is larger: {report:?}"
        );
        assert!(
            report.resumes >= 1,
            "shard {shard} was not resumed: {report:?}\nresumes: {:#?}\nlogs: {:?}",
            seen.resumes,
            nodes.iter().map(|n| &n.log).collect::<Vec<_>>()
        );
        assert_eq!(
            report.identifies, 0,
            "shard {shard} did not identify: {report:?}"
        );
    }
    assert_clean(&seen);
    assert_eq!(seen.identifies_total(), 24, "the take-over identified");
    assert!(seen.resumes_total() >= resumes_before + 8);
    assert!(took < TIMEOUT / 2, "take-over took {took:?}");

    for node in nodes.iter_mut().filter(|n| n.name != "node-b") {
        node.terminate().await;
        assert!(
            node.printed(&format!("STOPPED {}", node.name)),
            "{} printed {:?}; see {}",
            node.name,
            node.lines(),
            node.log.display()
        );
    }
    mock.stop().await;
    redis.delete_namespace().await.expect("cleanup");
}
