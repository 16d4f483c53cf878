//! Events published by gateway processes reach a worker fleet (real OS
//! processes) through NATS JetStream exactly once per dispatch, in order per
//! shard; a worker killed mid-stream loses nothing; commands go back to the
//! process that owns the shard.

mod common;

use common::Process;
use discore_cluster::{CommandClient, RemoteCommandError, cluster_status};
use discore_gateway::Command;
use discore_manager::CommandTarget;
use discore_mock::{MockServer, Target};
use discore_test_services::{NatsServer, RedisServer};
use std::{collections::BTreeMap, time::Duration};

const TOTAL: u32 = 4;
const EVENT: &str = "DISCORE_BUS_TEST";

fn gateway(
    name: &str,
    services: &(RedisServer, NatsServer),
    namespace: &str,
    mock: &MockServer,
) -> Process {
    Process::start(
        name,
        "gateway",
        &[
            ("redis", services.0.url()),
            ("nats", services.1.url()),
            ("namespace", namespace.to_owned()),
            ("rest", mock.rest_url()),
            ("total", TOTAL.to_string()),
            ("node-id", name.to_owned()),
            ("lease-ttl-ms", "1000".to_owned()),
            ("checkpoint-ms", "50".to_owned()),
            ("status-ms", "100".to_owned()),
            (
                "identify-window-ms",
                common::IDENTIFY_WINDOW.as_millis().to_string(),
            ),
            ("max-concurrency", "4".to_owned()),
        ],
    )
}

fn worker(name: &str, services: &(RedisServer, NatsServer), namespace: &str) -> Process {
    Process::start(
        name,
        "worker",
        &[
            ("redis", services.0.url()),
            ("nats", services.1.url()),
            ("namespace", namespace.to_owned()),
            ("total", TOTAL.to_string()),
            ("node-id", name.to_owned()),
            ("lease-ttl-ms", "1000".to_owned()),
            ("handle-ms", "5".to_owned()),
        ],
    )
}

/// One handled test event: `(shard, marker, handled at µs, worker)`.
type Handled = (u32, u64, u128, String);

/// Every test event the workers printed.
fn handled(workers: &[Process]) -> Vec<Handled> {
    let mut all = Vec::new();
    for worker in workers {
        for line in worker.lines() {
            let parts: Vec<&str> = line.splitn(6, ' ').collect();
            let ["EVENT", shard, _sequence, name, at, data] = parts[..] else {
                continue;
            };
            if name != EVENT {
                continue;
            }
            let data: serde_json::Value = serde_json::from_str(data).expect("json data");
            let marker = data["n"].as_u64().expect("marker");
            all.push((
                shard.parse().expect("shard"),
                marker,
                at.parse().expect("time"),
                worker.name.clone(),
            ));
        }
    }
    all
}

/// Dispatches markers `range` to every shard, interleaved.
fn dispatch(mock: &MockServer, range: std::ops::Range<u64>) {
    for n in range {
        for shard in 0..TOTAL {
            let deliveries = mock.dispatch(
                Some(&Target::Shard(shard)),
                EVENT,
                &serde_json::json!({ "n": n, "shard": shard }),
            );
            assert_eq!(deliveries.len(), 1, "shard {shard} has one session");
        }
    }
}

/// Per shard, the markers in the order they were first handled.
fn first_seen(all: &[Handled]) -> BTreeMap<u32, Vec<u64>> {
    let mut sorted = all.to_vec();
    sorted.sort_by_key(|h| h.2);
    let mut per_shard: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (shard, marker, _, _) in sorted {
        let seen = per_shard.entry(shard).or_default();
        if !seen.contains(&marker) {
            seen.push(marker);
        }
    }
    per_shard
}

#[actix_rt::test]
async fn a_worker_fleet_gets_every_dispatch_once_in_order_and_survives_a_kill_9() {
    common::init_logging();
    let namespace = common::namespace("bus");
    let services = (common::redis_server(), common::nats_server());
    let redis = common::redis(&services.0, &namespace).await;
    let bus = common::bus(&services.1, &namespace).await;
    let mock = common::mock(8, 4).await;

    let mut gateways = [
        gateway("gw-a", &services, &namespace, &mock),
        gateway("gw-b", &services, &namespace, &mock),
    ];
    let mut workers = vec![
        worker("worker-1", &services, &namespace),
        worker("worker-2", &services, &namespace),
        worker("worker-3", &services, &namespace),
    ];
    common::wait_mock(&mock, "4 shards run", |seen| {
        common::live_shards(seen, TOTAL).len() == TOTAL as usize
    })
    .await;
    common::wait_for("every shard is active", async || {
        let status = cluster_status(&redis).await.ok()?;
        (status.len() == TOTAL as usize
            && status.iter().all(|r| r.state.as_deref() == Some("Active")))
        .then_some(())
    })
    .await;

    // A worker gets Discord's bytes: the data exactly as the emulator sent
    // it (member order, unknown fields, non-ASCII text), not twilight-model's
    // re-serialization of the typed event.
    let guild = mock
        .guild_ids()
        .into_iter()
        .find(|g| discore_protocol::shard_for_guild(*g, TOTAL) == 1)
        .expect("a guild on shard 1");
    let channel = serde_json::json!({
        "id": "4242",
        "type": 0,
        "guild_id": guild.to_string(),
        "name": "bytes-as-sent",
        "position": 3,
        "discore_unknown_field": { "nested": [1, 2.5, "caf\u{e9} \u{1f980}"], "flag": null },
    });
    let sent = channel.to_string();
    let deliveries = mock.dispatch(Some(&Target::Shard(1)), "CHANNEL_UPDATE", &channel);
    assert_eq!(deliveries.len(), 1, "shard 1 has one session");
    let received = common::wait_for("a worker handled the CHANNEL_UPDATE", async || {
        workers.iter().flat_map(Process::lines).find_map(|line| {
            let parts: Vec<&str> = line.splitn(6, ' ').collect();
            match parts[..] {
                ["EVENT", "1", _, "CHANNEL_UPDATE", _, data] => Some(data.to_owned()),
                _ => None,
            }
        })
    })
    .await;
    assert_eq!(received, sent, "byte-identical to what the emulator sent");
    let typed: twilight_model::channel::Channel =
        serde_json::from_str(&sent).expect("twilight-model reads it");
    assert_ne!(
        serde_json::to_string(&typed).expect("serializes"),
        sent,
        "a re-serialization would have lost the unknown field"
    );

    // Exactly once, in order per shard.
    dispatch(&mock, 0..25);
    common::wait_for("the workers handled 100 events", async || {
        (handled(&workers).len() >= 100).then_some(())
    })
    .await;
    // A moment for duplicates, if any, to show up.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let all = handled(&workers);
    assert_eq!(
        all.len(),
        100,
        "each dispatch handled exactly once: {all:?}"
    );
    for (shard, markers) in first_seen(&all) {
        assert_eq!(
            markers,
            (0..25).collect::<Vec<_>>(),
            "shard {shard} in order"
        );
    }

    // Commands go back to the process owning the shard.
    let commands = CommandClient::new(bus.clone(), TOTAL).timeout(Duration::from_secs(5));
    let presence = r#"{"op":3,"d":{"since":null,"activities":[],"status":"idle","afk":false}}"#;
    let queued = commands
        .send(CommandTarget::Shard(2), Command::Raw(presence.to_owned()))
        .await
        .expect("shard 2 queues the command");
    assert_eq!(queued, 1);
    common::wait_mock(&mock, "shard 2 sent the presence update", |seen| {
        seen.connections.iter().any(|c| {
            c.is_open() && c.shard == Some([2, TOTAL]) && c.received.iter().any(|p| p.op == Some(3))
        })
    })
    .await;
    let nobody = commands
        .send(CommandTarget::Shard(7), Command::Raw(presence.to_owned()))
        .await;
    assert_eq!(nobody, Err(RemoteCommandError::NoOwner { shard: 7 }));

    // A worker killed mid-stream loses nothing.
    dispatch(&mock, 25..85);
    let victim = common::wait_for("a worker is handling the second batch", async || {
        let all = handled(&workers);
        all.iter()
            .filter(|h| h.1 >= 25)
            .nth(20)
            .and_then(|h| workers.iter().position(|w| w.name == h.3))
    })
    .await;
    workers[victim].kill9();
    println!("killed {}", workers[victim].name);
    common::wait_for("every event of the second batch was handled", async || {
        let firsts = first_seen(&handled(&workers));
        (firsts.values().map(Vec::len).sum::<usize>() == 4 * 85).then_some(())
    })
    .await;
    let all = handled(&workers);
    for (shard, markers) in first_seen(&all) {
        assert_eq!(
            markers,
            (0..85).collect::<Vec<_>>(),
            "shard {shard} in order, none lost"
        );
    }
    // Only the event a killed handler was on can come twice: one per shard.
    let mut counts: BTreeMap<(u32, u64), usize> = BTreeMap::new();
    for (shard, marker, _, _) in &all {
        *counts.entry((*shard, *marker)).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.len() <= TOTAL as usize && twice.iter().all(|(_, n)| **n == 2),
        "duplicates beyond the events the killed worker was on: {twice:?}"
    );
    println!("redelivered after the kill: {twice:?}");
    let seen = mock.observed();
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);

    for process in workers.iter_mut().chain(gateways.iter_mut()) {
        if process.name != workers_name(victim) {
            process.terminate().await;
        }
    }
    mock.stop().await;
    bus.delete_stream().await.expect("cleanup stream");
    redis.delete_namespace().await.expect("cleanup");
}

fn workers_name(index: usize) -> String {
    format!("worker-{}", index + 1)
}
