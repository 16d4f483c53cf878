//! A rolling restart of every gateway process (a replacement starts, the
//! old process stops cleanly) hands every shard over by resume: zero
//! identifies beyond the first one per shard, no shard ever run by two
//! processes.

mod common;

use common::Process;
use discore_cluster::cluster_status;
use std::time::Instant;

use common::fleet::{all_live_once, assert_clean, gateway, settled};

#[actix_rt::test]
async fn a_rolling_restart_of_every_process_costs_no_identify() {
    common::init_logging();
    let namespace = common::namespace("rolling");
    let server = common::redis_server();
    let redis = common::redis(&server, &namespace).await;
    let mock = common::mock(48, 4).await;

    let mut old: Vec<Process> = ["node-a", "node-b", "node-c"]
        .into_iter()
        .map(|name| gateway(name, &server.url(), &namespace, &mock))
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
        new.push(gateway(&replacement, &server.url(), &namespace, &mock));
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
