//! Re-sharding a running cluster without downtime: three gateway processes
//! serve 8 shards, two workers consume their events through NATS
//! JetStream, messages flow into every guild, and a `Reshard` request over
//! the bus moves the cluster to 12 shards. Every message the gateway
//! delivered reaches the workers exactly once, in order per guild (one
//! worker is slow, so the other takes new partitions while it still has
//! old events to handle); no
//! GUILD_CREATE is repeated; the new generation's leases are spread over
//! the three processes; the identifies stay within the emulator's limits
//! (8 + 12 sessions, no violation); the old sessions end.

mod common;

use common::{IDENTIFY_WINDOW, Process, TIMEOUT};
use discore_cluster::{CommandClient, cluster_status};
use discore_mock::{IdentifyOutcome, MockConfig, MockServer};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

const FROM: u32 = 8;
const TO: u32 = 12;
const GUILDS: u64 = 24;
const LEASE_TTL_MS: u64 = 1000;

fn gateway(name: &str, redis: &str, nats: &str, namespace: &str, mock: &MockServer) -> Process {
    gateway_of(name, redis, nats, namespace, mock, FROM)
}

fn gateway_of(
    name: &str,
    redis: &str,
    nats: &str,
    namespace: &str,
    mock: &MockServer,
    total: u32,
) -> Process {
    Process::start(
        name,
        "gateway",
        &[
            ("redis", redis.to_owned()),
            ("nats", nats.to_owned()),
            ("namespace", namespace.to_owned()),
            ("rest", mock.rest_url()),
            ("total", total.to_string()),
            ("node-id", name.to_owned()),
            ("lease-ttl-ms", LEASE_TTL_MS.to_string()),
            ("checkpoint-ms", "50".to_owned()),
            ("status-ms", "100".to_owned()),
            (
                "identify-window-ms",
                IDENTIFY_WINDOW.as_millis().to_string(),
            ),
            ("max-concurrency", "4".to_owned()),
            ("arbiters", "1".to_owned()),
        ],
    )
}

/// A worker whose handler takes `handle_ms` per event.
fn worker(name: &str, redis: &str, nats: &str, namespace: &str, handle_ms: u64) -> Process {
    worker_of(name, redis, nats, namespace, FROM, handle_ms)
}

fn worker_of(
    name: &str,
    redis: &str,
    nats: &str,
    namespace: &str,
    total: u32,
    handle_ms: u64,
) -> Process {
    Process::start(
        name,
        "worker",
        &[
            ("redis", redis.to_owned()),
            ("nats", nats.to_owned()),
            ("namespace", namespace.to_owned()),
            ("total", total.to_string()),
            ("node-id", name.to_owned()),
            ("lease-ttl-ms", LEASE_TTL_MS.to_string()),
            ("handle-ms", handle_ms.to_string()),
        ],
    )
}

/// Posts a message into every guild, round after round, until stopped;
/// keeps `(guild, message id)` of every message the gateway delivered to
/// at least one session, in posting order.
struct Emitter {
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    posted: Arc<Mutex<Vec<(u64, u64)>>>,
    rounds: Arc<Mutex<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emitter {
    fn start(mock: MockServer) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(AtomicBool::new(false));
        let posted = Arc::new(Mutex::new(Vec::new()));
        let rounds = Arc::new(Mutex::new(0));
        let (flag, paused, record, count) =
            (stop.clone(), pause.clone(), posted.clone(), rounds.clone());
        // Bounded: the test stops it, and it gives up after the timeout.
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + TIMEOUT * 3;
            while !flag.load(Ordering::Acquire) && Instant::now() < deadline {
                // A round holds the record, and the pause is checked under
                // it: once `pause(true)` got the record, no round runs.
                let mut posted = record.lock().expect("lock");
                if paused.load(Ordering::Acquire) {
                    drop(posted);
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                for guild in mock.guild_ids() {
                    let channel = mock.text_channel_ids(guild)[0];
                    let (message, deliveries) =
                        mock.post_message(channel, "reshard").expect("posted");
                    let id = message["id"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .expect("a message id");
                    if !deliveries.is_empty() {
                        posted.push((guild, id));
                    }
                }
                drop(posted);
                *count.lock().expect("lock") += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            stop,
            pause,
            posted,
            rounds,
            thread: Some(thread),
        }
    }

    /// Pauses (once the round under way ends, before this returns) or
    /// resumes.
    fn pause(&self, paused: bool) {
        self.pause.store(paused, Ordering::Release);
        // Waits for the round under way, if any.
        drop(self.posted.lock().expect("lock"));
    }

    /// What was posted so far.
    fn posted(&self) -> Vec<(u64, u64)> {
        self.posted.lock().expect("lock").clone()
    }

    fn rounds(&self) -> u64 {
        *self.rounds.lock().expect("lock")
    }

    fn finish(mut self) -> Vec<(u64, u64)> {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the emitter");
        }
        self.posted.lock().expect("lock").clone()
    }
}

/// One MESSAGE_CREATE a worker handled.
#[derive(Clone, Debug)]
struct Handled {
    shard: u32,
    guild: u64,
    id: u64,
    at_us: u128,
}

/// What the workers printed: the messages, and the GUILD_CREATEs per guild.
fn handled(workers: &[Process]) -> (Vec<Handled>, HashMap<u64, usize>) {
    let mut messages = Vec::new();
    let mut creates: HashMap<u64, usize> = HashMap::new();
    for worker in workers {
        for line in worker.lines() {
            let parts: Vec<&str> = line.splitn(6, ' ').collect();
            let ["EVENT", shard, _sequence, name, at, data] = parts[..] else {
                continue;
            };
            let data: serde_json::Value = serde_json::from_str(data)
                .unwrap_or_else(|_| panic!("{}: not JSON: {data}", worker.name));
            let snowflake = |field: &str| -> u64 {
                data[field]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{name} without {field}: {data}"))
            };
            match name {
                "MESSAGE_CREATE" => messages.push(Handled {
                    shard: shard.parse().expect("shard"),
                    guild: snowflake("guild_id"),
                    id: snowflake("id"),
                    at_us: at.parse().expect("time"),
                }),
                "GUILD_CREATE" => *creates.entry(snowflake("id")).or_default() += 1,
                _ => {}
            }
        }
    }
    messages.sort_by_key(|m| m.at_us);
    (messages, creates)
}

#[actix_rt::test]
async fn a_running_cluster_reshards_from_8_to_12_shards_without_loss_or_duplicates() {
    common::init_logging();
    let namespace = common::namespace("reshard");
    let redis_server = common::redis_server();
    let nats_server = common::nats_server();
    let redis = common::redis(&redis_server, &namespace).await;
    let bus = common::bus(&nats_server, &namespace).await;
    let mock = common::mock(GUILDS, 4).await;
    let (redis_url, nats_url) = (redis_server.url(), nats_server.url());

    let mut gateways: Vec<Process> = ["g-0", "g-1", "g-2"]
        .into_iter()
        .map(|name| gateway(name, &redis_url, &nats_url, &namespace, &mock))
        .collect();
    // One worker is slow: its partitions have a backlog at the switch, so
    // a guild's last old events could come after its first new ones on the
    // other worker, were the old partitions not drained first.
    let mut workers: Vec<Process> = [("w-0", 0), ("w-1", 6)]
        .into_iter()
        .map(|(name, handle_ms)| worker(name, &redis_url, &nats_url, &namespace, handle_ms))
        .collect();
    common::wait_mock(&mock, "8 shards run once each", |seen| {
        let live = common::live_shards(seen, FROM);
        live.len() == FROM as usize && live.values().all(|n| *n == 1)
    })
    .await;
    // Every guild's GUILD_CREATE reached a worker: the cluster serves.
    common::wait_for("the workers handled every GUILD_CREATE", async || {
        let (_, creates) = handled(&workers);
        (creates.len() == GUILDS as usize).then_some(())
    })
    .await;

    let emitter = Emitter::start(mock.clone());
    common::wait_for("three rounds of messages", async || {
        (emitter.rounds() >= 3).then_some(())
    })
    .await;
    CommandClient::new(bus.clone(), FROM)
        .reshard(TO)
        .await
        .expect("the cluster accepts the re-sharding");
    // A second request while it runs is refused.
    assert!(
        CommandClient::new(bus.clone(), FROM)
            .reshard(16)
            .await
            .is_err()
    );

    common::wait_mock(&mock, "12 new shards run and the old ones ended", |seen| {
        let new = common::live_shards(seen, TO);
        let old = common::live_shards(seen, FROM);
        new.len() == TO as usize && new.values().all(|n| *n == 1) && old.is_empty()
    })
    .await;
    let switched_at = emitter.rounds();
    common::wait_for("five rounds after the switch", async || {
        (emitter.rounds() >= switched_at + 5).then_some(())
    })
    .await;
    let posted = emitter.finish();

    let deadline = Instant::now() + TIMEOUT;
    let expected: HashSet<(u64, u64)> = posted.iter().copied().collect();
    loop {
        let (messages, _) = handled(&workers);
        let seen: HashSet<(u64, u64)> = messages.iter().map(|m| (m.guild, m.id)).collect();
        if expected.is_subset(&seen) {
            break;
        }
        if Instant::now() >= deadline {
            let mut missing: BTreeMap<(u32, u32), (usize, usize, usize)> = BTreeMap::new();
            for (i, message) in posted.iter().enumerate() {
                if seen.contains(message) {
                    continue;
                }
                let shards = (
                    discore_protocol::shard_for_guild(message.0, FROM),
                    discore_protocol::shard_for_guild(message.0, TO),
                );
                let entry = missing.entry(shards).or_insert((0, i, i));
                entry.0 += 1;
                entry.2 = i;
            }
            let lost: Vec<String> = posted
                .iter()
                .enumerate()
                .filter(|(_, m)| !seen.contains(m))
                .map(|(i, (g, id))| format!("{i} {g} {id}"))
                .collect();
            let _ = std::fs::write(workers[0].log.with_extension("missing"), lost.join("\n"));
            for worker in &workers {
                let _ = std::fs::write(worker.log.with_extension("out"), worker.lines().join("\n"));
            }
            panic!(
                "messages never handled (switch after round {switched_at}, {} posted), \
                 by (old shard, new shard): (count, first, last) {missing:?}",
                posted.len()
            );
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing more trickles in.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let (messages, creates) = handled(&workers);

    // Exactly once.
    let mut counts: HashMap<(u64, u64), usize> = HashMap::new();
    for message in &messages {
        *counts.entry((message.guild, message.id)).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    assert_eq!(messages.len(), posted.len(), "every message exactly once");
    // In order per guild, in the order the workers handled them.
    let mut by_guild: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for message in &messages {
        by_guild.entry(message.guild).or_default().push(message.id);
    }
    let mut sent: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (guild, id) in &posted {
        sent.entry(*guild).or_default().push(*id);
    }
    assert_eq!(by_guild.len(), GUILDS as usize);
    for (guild, ids) in &sent {
        if by_guild.get(guild) != Some(ids) {
            let trace: Vec<String> = messages
                .iter()
                .filter(|m| m.guild == *guild)
                .map(|m| {
                    let position = ids.iter().position(|id| *id == m.id);
                    format!("#{position:?} shard {} at {}", m.shard, m.at_us)
                })
                .collect();
            panic!(
                "guild {guild}: out of order, as handled:\n{}",
                trace.join("\n")
            );
        }
    }
    // Messages after the switch came from the new generation's shard ids.
    let new_shards: HashSet<u32> = messages.iter().map(|m| m.shard).collect();
    assert!(new_shards.iter().any(|s| *s >= FROM), "{new_shards:?}");
    // The new sessions' GUILD_CREATEs were not published again.
    let repeated: Vec<_> = creates.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        repeated.is_empty(),
        "GUILD_CREATE handled again: {repeated:?}"
    );

    // The new generation's leases are spread over the three processes.
    let status = cluster_status(&redis).await.expect("status");
    let mut per_node: BTreeMap<String, u32> = BTreeMap::new();
    for report in status.iter().filter(|r| r.shard.total() == TO) {
        *per_node.entry(report.node.clone()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|n| *n == TO / 3), "{per_node:?}");
    assert!(
        status.iter().all(|r| r.shard.total() == TO),
        "old reports withdrawn"
    );

    let seen = mock.observed();
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
    let accepted: Vec<[u32; 2]> = seen
        .identifies
        .iter()
        .filter(|i| i.outcome == IdentifyOutcome::Accepted)
        .map(|i| i.shard)
        .collect();
    assert_eq!(accepted.len(), (FROM + TO) as usize, "{accepted:?}");
    for connection in seen
        .connections
        .iter()
        .filter(|c| c.shard.is_some_and(|[_, t]| t == FROM) && c.session_id.is_some())
    {
        assert_eq!(connection.close_received, Some(1000), "{connection:?}");
    }

    for process in workers.iter_mut().chain(gateways.iter_mut()) {
        process.terminate().await;
    }
    mock.stop().await;
    redis.delete_namespace().await.expect("cleanup");
    let _ = bus.delete_stream().await;
}

/// Waits (bounded) until the workers handled every message of `expected`,
/// then checks each was handled exactly once and, per guild, in order.
async fn assert_handled_once_in_order(workers: &[Process], expected: &[(u64, u64)]) {
    let wanted: HashSet<(u64, u64)> = expected.iter().copied().collect();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (messages, _) = handled(workers);
        let seen: HashSet<(u64, u64)> = messages.iter().map(|m| (m.guild, m.id)).collect();
        if wanted.is_subset(&seen) {
            break;
        }
        if Instant::now() >= deadline {
            for worker in workers {
                let _ = std::fs::write(worker.log.with_extension("out"), worker.lines().join("\n"));
            }
            let missing: Vec<(usize, &(u64, u64))> = expected
                .iter()
                .enumerate()
                .filter(|(_, m)| !seen.contains(m))
                .collect();
            panic!(
                "{} of {} messages never handled: {missing:?}",
                missing.len(),
                expected.len()
            );
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let (messages, _) = handled(workers);
    assert_eq!(messages.len(), expected.len(), "every message exactly once");
    let mut by_guild: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for message in &messages {
        by_guild.entry(message.guild).or_default().push(message.id);
    }
    let mut sent: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (guild, id) in expected {
        sent.entry(*guild).or_default().push(*id);
    }
    assert_eq!(by_guild, sent, "per guild, every message once and in order");
}

/// The guilds outgrow the shards: the emulator closes the overflowing
/// shard with 4011, its node asks `/gateway/bot` for the count and the
/// cluster re-shards to it by itself. The guilds of the refused shard are
/// dark until the new generation serves; every message the gateway
/// delivered reaches the worker once and in order, and each guild's
/// GUILD_CREATE once (the added guilds' from the new generation).
#[actix_rt::test]
async fn a_4011_reshards_the_cluster_to_the_recommended_count() {
    common::init_logging();
    let namespace = common::namespace("reshard-4011");
    let redis_server = common::redis_server();
    let nats_server = common::nats_server();
    let redis = common::redis(&redis_server, &namespace).await;
    let bus = common::bus(&nats_server, &namespace).await;
    let mock = MockServer::start(
        MockConfig::new()
            .guilds(4)
            .max_guilds_per_shard(2)
            .max_concurrency(4)
            .heartbeat_interval(Duration::from_millis(1000))
            .identify_window(IDENTIFY_WINDOW)
            .send_limit(120, Duration::from_secs(6))
            .rest_rate_limit(None),
    )
    .await
    .expect("the emulator starts");
    let (redis_url, nats_url) = (redis_server.url(), nats_server.url());
    let mut gateways: Vec<Process> = ["a", "b"]
        .into_iter()
        .map(|name| gateway_of(name, &redis_url, &nats_url, &namespace, &mock, 2))
        .collect();
    let mut workers = vec![worker_of("w", &redis_url, &nats_url, &namespace, 2, 0)];
    common::wait_for("the worker handled every GUILD_CREATE", async || {
        let (_, creates) = handled(&workers);
        (creates.len() == 4).then_some(())
    })
    .await;

    let emitter = Emitter::start(mock.clone());
    common::wait_for("three rounds of messages", async || {
        (emitter.rounds() >= 3).then_some(())
    })
    .await;
    // The emulator drops what it had queued for a session it closes with
    // 4011: pause while the guilds grow, so every message counted was sent.
    emitter.pause(true);
    let before: HashSet<(u64, u64)> = emitter.posted().into_iter().collect();
    common::wait_for("the messages so far", async || {
        let (messages, _) = handled(&workers);
        let seen: HashSet<(u64, u64)> = messages.iter().map(|m| (m.guild, m.id)).collect();
        before.is_subset(&seen).then_some(())
    })
    .await;
    let added = mock.add_guilds(2);
    assert_eq!(added.len(), 2);
    common::wait_mock(&mock, "the 4011 close of the overflowing shard", |seen| {
        seen.connections.iter().any(|c| c.close_sent == Some(4011))
    })
    .await;
    emitter.pause(false);
    assert_eq!(mock.recommended_shards(), 3);

    common::wait_mock(&mock, "3 new shards run and the old ones ended", |seen| {
        let new = common::live_shards(seen, 3);
        new.len() == 3 && new.values().all(|n| *n == 1) && common::live_shards(seen, 2).is_empty()
    })
    .await;
    let switched_at = emitter.rounds();
    common::wait_for("five rounds after the switch", async || {
        (emitter.rounds() >= switched_at + 5).then_some(())
    })
    .await;
    let posted = emitter.finish();
    assert_handled_once_in_order(&workers, &posted).await;
    let (_, creates) = handled(&workers);
    assert_eq!(creates.len(), 6, "{creates:?}");
    assert!(creates.values().all(|n| *n == 1), "{creates:?}");
    let seen = mock.observed();
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);

    for process in workers.iter_mut().chain(gateways.iter_mut()) {
        process.terminate().await;
    }
    mock.stop().await;
    redis.delete_namespace().await.expect("cleanup");
    let _ = bus.delete_stream().await;
}
