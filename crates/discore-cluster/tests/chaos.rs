//! Chaos across processes: 5 gateway processes run 64 shards, 3 workers
//! consume their events through NATS JetStream, traffic flows, and faults
//! hit in random order: `kill -9` of nodes and workers (restarted at once,
//! as an orchestrator would), a node stopped with SIGSTOP past its lease
//! TTL and then continued, Redis restarted twice, NATS restarted twice, and
//! once a re-sharding from 64 to 80 shards (requested over the bus; the
//! next fault waits for its switch). The test's own `redis-server` and
//! `nats-server` are restarted; the machine's are never touched.
//!
//! The traffic is marker events into the guilds, round robin (during the
//! re-sharding the emulator sends each to both generations' sessions, as
//! Discord does). Checks, once the traffic stopped and the cluster caught
//! up:
//! - every marker the gateway delivered reaches the workers, in order per
//!   guild; twice only where a worker was killed with the event in hand, or
//!   NATS restarted with its acknowledgement in flight, or a node's shards
//!   were being taken over while the re-sharding ran (counted apart);
//! - never two owners of a shard at once: a connection that lost its shard
//!   to another one sends nothing after the other's Resume (the fenced,
//!   stopped owner writes nothing when it wakes up);
//! - no identify beyond the first of each shard of each generation (every
//!   session survives);
//! - the figures (faults, events, identifies, resumes, the longest time an
//!   event took to reach a worker) are printed.
//!
//! `DISCORE_CHAOS_SECS` sets the duration (default 60); every 60 s runs the
//! whole set of faults once more.

mod common;

use common::{Process, TIMEOUT};
use discore_cluster::{CommandClient, RedisSessionStore};
use discore_manager::session_store::SessionStore as _;
use discore_mock::{MockServer, Observed, ViolationKind};
use discore_test_services::{NatsServer, RedisServer};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

const TOTAL: u32 = 64;
/// The total of the re-sharding in the middle.
const RESHARD_TO: u32 = 80;
const NODES: usize = 5;
const WORKERS: usize = 3;
const EVENT: &str = "DISCORE_CHAOS";
const LEASE_TTL: Duration = Duration::from_secs(2);
/// Dispatches per second, over all shards.
const RATE: u64 = 40;

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

struct Services {
    redis: RedisServer,
    nats: NatsServer,
}

fn gateway(name: &str, services: &Services, namespace: &str, mock: &MockServer) -> Process {
    Process::start(
        name,
        "gateway",
        &[
            ("redis", services.redis.url()),
            ("nats", services.nats.url()),
            ("namespace", namespace.to_owned()),
            ("rest", mock.rest_url()),
            ("total", TOTAL.to_string()),
            ("node-id", name.to_owned()),
            ("lease-ttl-ms", LEASE_TTL.as_millis().to_string()),
            ("checkpoint-ms", "100".to_owned()),
            ("status-ms", "250".to_owned()),
            (
                "identify-window-ms",
                common::IDENTIFY_WINDOW.as_millis().to_string(),
            ),
            ("max-concurrency", "4".to_owned()),
            ("arbiters", "1".to_owned()),
        ],
    )
}

fn worker(name: &str, services: &Services, namespace: &str) -> Process {
    Process::start(
        name,
        "worker",
        &[
            ("redis", services.redis.url()),
            ("nats", services.nats.url()),
            ("namespace", namespace.to_owned()),
            ("total", TOTAL.to_string()),
            ("node-id", name.to_owned()),
            ("lease-ttl-ms", LEASE_TTL.as_millis().to_string()),
        ],
    )
}

/// One marker event the test dispatched: where it went and when.
#[derive(Clone, Debug)]
struct Sent {
    guild: u64,
    session: String,
    at_us: u128,
}

/// One marker a worker handled.
#[derive(Clone, Debug)]
struct Handled {
    shard: u32,
    guild: u64,
    n: u64,
    at_us: u128,
    worker: String,
}

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
            let Ok(data) = serde_json::from_str::<serde_json::Value>(data) else {
                panic!("{}: not JSON: {data}", worker.name);
            };
            all.push(Handled {
                shard: shard.parse().expect("shard"),
                guild: data["guild_id"]
                    .as_str()
                    .and_then(|g| g.parse().ok())
                    .expect("a guild"),
                n: data["n"].as_u64().expect("marker"),
                at_us: at.parse().expect("time"),
                worker: worker.name.clone(),
            });
        }
    }
    all
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Fault {
    KillNode,
    KillWorker,
    StopNode,
    RestartRedis,
    RestartNats,
    Reshard,
}

/// When a fault hit, for classifying redeliveries.
#[derive(Clone, Debug)]
struct Hit {
    fault: Fault,
    at_us: u128,
    target: String,
}

/// A connection that sent something after another connection of its shard
/// authenticated: two owners at once.
fn second_owners(seen: &Observed) -> Vec<String> {
    let mut by_shard: BTreeMap<[u32; 2], Vec<(Duration, &discore_mock::ConnectionRecord)>> =
        BTreeMap::new();
    for connection in &seen.connections {
        let Some(shard) = connection.shard else {
            continue;
        };
        let Some(start) = connection
            .received
            .iter()
            .find(|p| matches!(p.op, Some(2 | 6)))
            .map(|p| p.at)
        else {
            continue;
        };
        by_shard.entry(shard).or_default().push((start, connection));
    }
    let mut found = Vec::new();
    for (shard, mut spans) in by_shard {
        spans.sort_by_key(|(start, _)| *start);
        for pair in spans.windows(2) {
            let ((_, old), (new_start, new)) = (pair[0], pair[1]);
            if let Some(late) = old.received.iter().find(|p| p.at > new_start) {
                found.push(format!(
                    "shard {shard:?}: connection {} sent op {:?} at {:?}, after connection {} authenticated at {new_start:?}",
                    old.id.0, late.op, late.at, new.id.0
                ));
            }
        }
    }
    found
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

#[actix_rt::test]
async fn five_nodes_and_three_workers_survive_kills_stops_and_service_restarts() {
    common::init_logging();
    let seconds: u64 = std::env::var("DISCORE_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
        .max(30);
    let seed = std::env::var("DISCORE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    println!("chaos: {seconds} s, seed {seed} (DISCORE_CHAOS_SEED replays the order)");
    let namespace = common::namespace("chaos");
    let mut services = Services {
        redis: common::redis_server(),
        nats: common::nats_server(),
    };
    let redis = common::redis(&services.redis, &namespace).await;
    let bus = common::bus(&services.nats, &namespace).await;
    let mock = common::mock(u64::from(TOTAL) * 2, 4).await;
    // The emulator's clock counts from its start.
    let mock_epoch_us = now_us();

    let mut nodes: Vec<Process> = (0..NODES)
        .map(|i| gateway(&format!("node-{i}"), &services, &namespace, &mock))
        .collect();
    let mut workers: Vec<Process> = (0..WORKERS)
        .map(|i| worker(&format!("worker-{i}"), &services, &namespace))
        .collect();
    // Processes that were killed: their output still counts.
    let mut dead: Vec<Process> = Vec::new();
    common::wait_mock(&mock, "64 shards run once each", |seen| {
        let live = common::live_shards(seen, TOTAL);
        live.len() == TOTAL as usize && live.values().all(|n| *n == 1)
    })
    .await;
    // A crash before a session's first checkpoint would identify again.
    let store = RedisSessionStore::new(&redis);
    common::wait_for("every session is checkpointed", async || {
        let saved = store.load().await.ok()?;
        (saved.len() == TOTAL as usize).then_some(())
    })
    .await;
    println!("64 shards up on {NODES} nodes");

    // Traffic: markers into every guild in turn, RATE per second.
    let guilds = mock.guild_ids();
    let sent: Arc<Mutex<HashMap<u64, Sent>>> = Arc::default();
    let unsent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (stop_traffic, mut traffic_stopped) = tokio::sync::watch::channel(false);
    let traffic = {
        let sent = Arc::clone(&sent);
        let unsent = Arc::clone(&unsent);
        let mock = mock.clone();
        actix_rt::spawn(async move {
            let mut n: u64 = 0;
            let mut tick = actix_rt::time::interval(Duration::from_micros(1_000_000 / RATE));
            while !*traffic_stopped.borrow() {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = traffic_stopped.changed() => break,
                }
                let guild = guilds[usize::try_from(n).unwrap_or(0) % guilds.len()];
                let deliveries = mock.dispatch_to_guild(
                    guild,
                    EVENT,
                    &serde_json::json!({ "n": n, "guild_id": guild.to_string() }),
                );
                match deliveries.first() {
                    Some(delivery) => {
                        sent.lock().expect("sent").insert(
                            n,
                            Sent {
                                guild,
                                session: delivery.session_id.clone(),
                                at_us: now_us(),
                            },
                        );
                    }
                    None => {
                        unsent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                n += 1;
            }
        })
    };

    // The faults, in random order, spread over the run.
    let rounds = (seconds / 60).max(1);
    let mut faults = Vec::new();
    for _ in 0..rounds {
        faults.extend([
            Fault::KillNode,
            Fault::KillNode,
            Fault::KillWorker,
            Fault::KillWorker,
            Fault::StopNode,
            Fault::RestartRedis,
            Fault::RestartRedis,
            Fault::RestartNats,
            Fault::RestartNats,
        ]);
    }
    rng.shuffle(&mut faults);
    // One re-sharding, in the middle.
    faults.insert(faults.len() / 2, Fault::Reshard);
    let gap = Duration::from_secs(seconds) / u32::try_from(faults.len() + 1).unwrap_or(1);
    let mut hits: Vec<Hit> = Vec::new();
    // When a node was stopped and continued: it misses heartbeats then.
    let mut stops: Vec<(u128, u128)> = Vec::new();
    // From the re-sharding request to its switch.
    let mut overlap: Option<(u128, u128)> = None;
    let run_started = Instant::now();
    for fault in faults {
        actix_rt::time::sleep(gap).await;
        let at_us = now_us();
        let target = match fault {
            Fault::KillNode => {
                let i = rng.usize(..nodes.len());
                let name = nodes[i].name.clone();
                nodes[i].kill9();
                let replacement = gateway(&name, &services, &namespace, &mock);
                dead.push(std::mem::replace(&mut nodes[i], replacement));
                name
            }
            Fault::KillWorker => {
                let i = rng.usize(..workers.len());
                let name = workers[i].name.clone();
                workers[i].kill9();
                let replacement = worker(&name, &services, &namespace);
                dead.push(std::mem::replace(&mut workers[i], replacement));
                name
            }
            Fault::StopNode => {
                let i = rng.usize(..nodes.len());
                let stopped = now_us();
                nodes[i].signal("STOP");
                // Past the lease TTL: the others take its shards over.
                actix_rt::time::sleep(LEASE_TTL * 5 / 2).await;
                nodes[i].signal("CONT");
                stops.push((stopped, now_us()));
                nodes[i].name.clone()
            }
            Fault::RestartRedis => {
                services.redis.restart().expect("redis-server restarts");
                "redis".to_owned()
            }
            Fault::RestartNats => {
                services.nats.restart().expect("nats-server restarts");
                "nats".to_owned()
            }
            Fault::Reshard => {
                CommandClient::new(bus.clone(), TOTAL)
                    .reshard(RESHARD_TO)
                    .await
                    .expect("the cluster accepts the re-sharding");
                common::wait_mock(&mock, "the new generation serves alone", |seen| {
                    let new = common::live_shards(seen, RESHARD_TO);
                    new.len() == RESHARD_TO as usize
                        && new.values().all(|n| *n == 1)
                        && common::live_shards(seen, TOTAL).is_empty()
                })
                .await;
                overlap = Some((at_us, now_us()));
                format!("{TOTAL} -> {RESHARD_TO} shards")
            }
        };
        println!(
            "{:>6.1} s  {fault:?} {target}",
            run_started.elapsed().as_secs_f64()
        );
        hits.push(Hit {
            fault,
            at_us,
            target,
        });
    }
    actix_rt::time::sleep(gap).await;
    let _ = stop_traffic.send(true);
    let _ = traffic.await;
    let load = load_average();

    // Everything dispatched reaches the workers.
    let expected: HashMap<u64, Sent> = sent.lock().expect("sent").clone();
    let all_processes = |workers: &[Process], dead: &[Process]| -> Vec<Handled> {
        let mut all = handled(workers);
        all.extend(handled(dead));
        all
    };
    let deadline = Instant::now() + TIMEOUT * 3;
    let mut all;
    loop {
        all = all_processes(&workers, &dead);
        let seen: std::collections::HashSet<u64> = all.iter().map(|h| h.n).collect();
        let missing: Vec<u64> = expected
            .keys()
            .filter(|n| !seen.contains(n))
            .copied()
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} dispatches never reached a worker, e.g. {:?}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(20)]
        );
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    // A moment for late duplicates to show.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    all = all_processes(&workers, &dead);

    for h in &all {
        if let Some(s) = expected.get(&h.n) {
            assert_eq!(h.guild, s.guild, "marker {} of the wrong guild", h.n);
            let owners = [
                discore_protocol::shard_for_guild(s.guild, TOTAL),
                discore_protocol::shard_for_guild(s.guild, RESHARD_TO),
            ];
            assert!(
                owners.contains(&h.shard),
                "marker {} on shard {}",
                h.n,
                h.shard
            );
        }
    }
    // Order per guild: first deliveries in dispatch order.
    all.sort_by_key(|h| h.at_us);
    let mut first: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut times: HashMap<u64, Vec<&Handled>> = HashMap::new();
    for h in &all {
        let entry = times.entry(h.n).or_default();
        if entry.is_empty() {
            first.entry(h.guild).or_default().push(h.n);
        }
        entry.push(h);
    }
    for (guild, markers) in &first {
        let mut sorted = markers.clone();
        sorted.sort_unstable();
        assert_eq!(markers, &sorted, "guild {guild}: out of order");
    }
    // Twice only where a fault explains it.
    let mut after_worker_kill = 0;
    let mut after_nats_restart = 0;
    let mut across_reshard_takeover = 0;
    // A node's shards taken over while the re-sharding ran: the new owner's
    // record misses what the old one published (docs/cluster.md, section 4).
    let takeover_during_reshard = overlap.is_some_and(|(from, to)| {
        hits.iter().any(|hit| {
            matches!(hit.fault, Fault::KillNode | Fault::StopNode)
                && hit.at_us <= to
                && hit.at_us + 3 * LEASE_TTL.as_micros() >= from
        })
    });
    let mut unexplained = Vec::new();
    for (n, handlings) in &times {
        for pair in handlings.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let between = |fault: Fault| {
                hits.iter()
                    .any(|hit| hit.fault == fault && hit.at_us >= a.at_us && hit.at_us <= b.at_us)
            };
            let killed_holder = hits.iter().any(|hit| {
                hit.fault == Fault::KillWorker
                    && hit.target == a.worker
                    && hit.at_us >= a.at_us
                    && hit.at_us <= b.at_us
            });
            let in_overlap =
                overlap.is_some_and(|(from, to)| a.at_us >= from && a.at_us <= to + 1_000_000);
            if killed_holder {
                after_worker_kill += 1;
            } else if between(Fault::RestartNats) {
                after_nats_restart += 1;
            } else if takeover_during_reshard && in_overlap {
                across_reshard_takeover += 1;
            } else {
                unexplained.push((*n, a.worker.clone(), b.worker.clone()));
            }
        }
    }
    let longest = expected
        .iter()
        .filter_map(|(n, s)| {
            let first = times.get(n)?.first()?;
            Some(first.at_us.saturating_sub(s.at_us))
        })
        .max()
        .unwrap_or(0);
    let seen = mock.observed();
    let sessions: std::collections::HashSet<&str> =
        expected.values().map(|s| s.session.as_str()).collect();
    println!("chaos figures ({seconds} s, seed {seed}, load average at the end {load}):");
    println!(
        "  faults: {} ({:?})",
        hits.len(),
        hits.iter()
            .map(|h| (h.fault, h.target.as_str()))
            .collect::<Vec<_>>()
    );
    println!(
        "  events: {} dispatched to {} sessions, {} handled, {} not sent (no session at that instant)",
        expected.len(),
        sessions.len(),
        all.len(),
        unsent.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "  redelivered: {after_worker_kill} after a worker was killed with it, {after_nats_restart} across a NATS restart, {across_reshard_takeover} by a take-over during the re-sharding"
    );
    if let Some((from, to)) = overlap {
        println!(
            "  re-sharding {TOTAL} -> {RESHARD_TO}: {:.2} s from the request to the switch",
            (to - from) as f64 / 1e6
        );
    }
    println!(
        "  identifies: {}, resumes: {}, longest dispatch-to-worker time: {:.2} s",
        seen.identifies_total(),
        seen.resumes_total(),
        longest as f64 / 1e6
    );
    assert!(
        unexplained.is_empty(),
        "handled twice without a fault to explain it: {unexplained:?}"
    );
    let two = second_owners(&seen);
    assert!(two.is_empty(), "two owners at once: {two:#?}");
    // A stopped process misses its heartbeats (the emulator closes those
    // connections, as Discord does): the fault itself, not a broken rule.
    let during_stop = |v: &discore_mock::Violation| {
        let at = mock_epoch_us + v.at.as_micros();
        v.kind == ViolationKind::HeartbeatMissed
            && stops
                .iter()
                .any(|(from, to)| at + 1_000_000 >= *from && at <= to + 5_000_000)
    };
    let (stop_misses, violations): (Vec<_>, Vec<_>) =
        seen.violations.iter().partition(|v| during_stop(v));
    println!(
        "  heartbeats missed by the stopped node: {}",
        stop_misses.len()
    );
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!(
        seen.identifies_total(),
        (TOTAL + RESHARD_TO) as usize,
        "every session survived: no identify after the first of each shard of each generation"
    );

    for process in nodes.iter_mut().chain(workers.iter_mut()) {
        process.terminate().await;
    }
    mock.stop().await;
    // The test's Redis and NATS go with their data when `services` drops.
}
