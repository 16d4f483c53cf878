//! Chaos soak: a fleet on the emulator while faults are injected at random
//! (seeded, reproducible), then every user-visible guarantee is checked.
//!
//! The suite runs a short soak. The long run is one command away:
//!
//! ```sh
//! DISCORE_CHAOS_SECONDS=600 DISCORE_CHAOS_SEED=42 cargo test --release --test chaos -- --nocapture
//! ```

use actix::prelude::*;
use discore::gateway::{
    Compression, DispatchEvent, GatewayEvent, Intents, ShardConfig, ShardState, Token,
    backoff::Backoff,
};
use discore_manager::{GetFleetStatus, ManagerConfig, RestartPolicy, ShardCount, ShardManager};
use discore_mock::{Fault, MockConfig, MockServer, Target, TrafficConfig, ViolationKind};
use std::{
    collections::BTreeMap,
    io::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const SHARDS: u32 = 4;
const TOKEN: &str = "chaos-token";

/// One event as the user saw it.
#[derive(Clone, Debug)]
struct Seen {
    shard: u32,
    sequence: u64,
    name: Arc<str>,
    /// READY's session id.
    session: Option<String>,
}

struct Collector(Arc<Mutex<Vec<Seen>>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for Collector {
    type Result = ();

    fn handle(&mut self, message: GatewayEvent, _: &mut Context<Self>) {
        let session = match message.event.typed() {
            Some(DispatchEvent::Ready(ready)) => Some(ready.session_id.clone()),
            _ => None,
        };
        let seen = Seen {
            shard: message.shard.number(),
            sequence: message.sequence,
            name: Arc::from(message.name()),
            session,
        };
        let mut log = self.0.lock().expect("log");
        log::trace!(target: "collector", "got {} shard {} #{} index {}", seen.name, seen.shard, seen.sequence, log.len());
        log.push(seen);
    }
}

/// Lines kept for diagnostics: the most recent ones.
const LINES_KEPT: usize = 20_000;

/// Every log line at every level, searched for the token as it is logged;
/// the most recent [`LINES_KEPT`] are kept for diagnostics. Keeping them all
/// would make a long run's memory measure the logger, not discore.
#[derive(Default)]
struct Captured {
    recent: std::collections::VecDeque<String>,
    total: u64,
    leaks: Vec<String>,
}

struct CapturingLogger(Mutex<Captured>);

impl log::Log for CapturingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        let mut captured = self.0.lock().expect("log lines");
        captured.total += 1;
        if line.contains(TOKEN) && captured.leaks.len() < 10 {
            captured.leaks.push(line.clone());
        }
        if captured.recent.len() == LINES_KEPT {
            captured.recent.pop_front();
        }
        captured.recent.push_back(line);
    }

    fn flush(&self) {}
}

static LOGGER: std::sync::OnceLock<&'static CapturingLogger> = std::sync::OnceLock::new();

fn capture_logs() -> &'static CapturingLogger {
    LOGGER.get_or_init(|| {
        let logger: &'static CapturingLogger =
            Box::leak(Box::new(CapturingLogger(Mutex::new(Captured::default()))));
        log::set_logger(logger).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        logger
    })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Every fault of the issue, weighted towards the common ones.
fn random_fault(rng: &mut fastrand::Rng) -> Fault {
    match rng.u32(0..100) {
        0..=14 => Fault::Reconnect,
        15..=22 => Fault::InvalidSession { resumable: true },
        23..=27 => Fault::InvalidSession { resumable: false },
        28..=42 => Fault::DropTcp,
        43..=50 => Fault::Stall {
            millis: rng.u64(20..200),
        },
        51..=56 => Fault::HeartbeatAcks { enabled: false },
        57..=76 => Fault::Close {
            code: [4000, 4001, 4002, 4008, 4009][rng.usize(0..5)],
            reason: None,
        },
        77..=86 => Fault::CorruptNextFrame,
        87..=93 => Fault::MalformedJson,
        _ => Fault::MalformedDispatchData,
    }
}

/// Within a session (from one READY to the next) a shard's sequence numbers
/// go up by exactly one: every dispatch once, in order, no gap.
fn check_sessions(
    events: &[Seen],
    resumed: &BTreeMap<String, Vec<u64>>,
) -> BTreeMap<u32, (usize, usize)> {
    let mut by_shard: BTreeMap<u32, Vec<(usize, &Seen)>> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        by_shard
            .entry(event.shard)
            .or_default()
            .push((index, event));
    }
    let mut stats = BTreeMap::new();
    for (shard, seen) in by_shard {
        let mut previous: Option<u64> = None;
        let mut sessions = 0;
        let mut skippable: &[u64] = &[];
        for (index, (global, event)) in seen.iter().enumerate() {
            if &*event.name == "READY" {
                sessions += 1;
                previous = Some(event.sequence);
                skippable = event
                    .session
                    .as_ref()
                    .and_then(|id| resumed.get(id))
                    .map_or(&[], Vec::as_slice);
                continue;
            }
            // A RESUMED that went to a connection that died before
            // delivering it took a number no replay carries: not an event.
            let mut expected = previous.map(|p| p + 1);
            while let Some(next) = expected {
                if next < event.sequence && skippable.contains(&next) {
                    expected = Some(next + 1);
                } else {
                    break;
                }
            }
            if Some(event.sequence) != expected {
                let around: Vec<String> = seen
                    [index.saturating_sub(8)..(index + 3).min(seen.len())]
                    .iter()
                    .map(|(_, e)| format!("{}#{}", e.name, e.sequence))
                    .collect();
                let lines = LOGGER
                    .get()
                    .map(|l| {
                        let captured = l.0.lock().expect("lines");
                        captured.recent.iter().cloned().collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                let tag = format!("shard [{shard}, {SHARDS}]");
                let mine = format!("shard {shard} #");
                let anchor = format!("index {}", global.saturating_sub(1));
                let start = lines
                    .iter()
                    .position(|l| l.contains("collector") && l.ends_with(&anchor))
                    .unwrap_or(0);
                let related: Vec<&String> = lines[start.saturating_sub(40)..]
                    .iter()
                    .filter(|l| (l.contains(&tag) || l.contains(&mine)) && !l.contains("heartbeat"))
                    .take(40)
                    .collect();
                panic!(
                    "shard {shard}: {} #{} after #{previous:?}: lost, duplicated or reordered; \
                     around: {around:?}\nlog: {related:#?}",
                    event.name, event.sequence
                );
            }
            previous = Some(event.sequence);
        }
        stats.insert(shard, (seen.len(), sessions));
    }
    stats
}

/// Seeded random faults against a 4-shard fleet with live traffic: every
/// dispatch of a session arrives exactly once and in order, the emulator
/// records no violation, memory stays bounded, the token never appears in
/// a log line, and every shard is READY again after the last fault.
#[actix_rt::test]
async fn chaos_soak() {
    let logger = capture_logs();
    let seconds = env_number("DISCORE_CHAOS_SECONDS", 20);
    let seed = env_number("DISCORE_CHAOS_SEED", 1);
    let mut rng = fastrand::Rng::with_seed(seed);

    let mock = MockServer::start(
        MockConfig::new()
            .token(TOKEN)
            .guilds(u64::from(SHARDS) * 3)
            .max_guilds_per_shard(3)
            .heartbeat_interval(Duration::from_millis(100))
            .identify_window(Duration::from_millis(20))
            .send_limit(120, Duration::from_secs(6))
            .session_keep_alive(Duration::from_secs(60))
            // At this fault rate a shard starts a new session about every
            // 2.5 s: the long run spends ~1,000 identifies in 10 minutes.
            // Discord's daily budget of 1,000 would make the queue pause
            // identifies at its reserve (as it must, or the token is reset)
            // and leave the shards waiting for the daily reset.
            .session_start_limit(1_000_000, 1_000_000, Duration::from_secs(24 * 60 * 60))
            .rest_rate_limit(None)
            // The emulator runs in this process: keep its per-connection
            // record of received payloads short, so the RSS check below
            // mostly sees the client (tens of thousands of connections in
            // the long run).
            .max_recorded_payloads(8),
    )
    .await
    .expect("emulator");
    let log = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector(Arc::clone(&log)).start();
    let shard_config = ShardConfig::new(Intents::GUILDS)
        .compression(Compression::ZlibStream)
        .backoff(Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(300),
        })
        .invalid_session_delay(Duration::from_millis(10)..=Duration::from_millis(50))
        .handshake_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .send_rate_limit(120, Duration::from_millis(6300));
    let intents = Intents::GUILDS
        | Intents::GUILD_MESSAGES
        | Intents::GUILD_MESSAGE_REACTIONS
        | Intents::GUILD_MESSAGE_TYPING;
    let config = ManagerConfig::new(Token::new(TOKEN).expect("token"), intents)
        .rest_url(mock.rest_url())
        .shard_count(ShardCount::Fixed(SHARDS))
        .identify_window(Duration::from_millis(35))
        .shard_config(shard_config)
        .arbiters(2)
        .restart_policy(RestartPolicy {
            backoff: Backoff {
                base: Duration::from_millis(20),
                cap: Duration::from_millis(200),
            },
            max_restarts: 50,
            window: Duration::from_secs(10),
        });
    let manager = ShardManager::start(config, collector.recipient())
        .await
        .expect("fleet starts");
    mock.start_traffic(TrafficConfig::per_shard(100.0));
    let rss_before = rss_kib();

    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let third = started + Duration::from_secs(seconds) / 3;
    let mut rss_third = None;
    let mut faults = 0u64;
    let mut outages = 0u64;
    while Instant::now() < end {
        let shard = rng.u32(0..SHARDS);
        if rng.u32(0..1000) == 0 {
            mock.outage(Duration::from_millis(rng.u64(300..1500)));
            outages += 1;
        } else {
            mock.fault(&Target::Shard(shard), random_fault(&mut rng));
        }
        faults += 1;
        if rss_third.is_none() && Instant::now() >= third {
            rss_third = rss_kib();
        }
        actix_rt::time::sleep(Duration::from_millis(rng.u64(1..10))).await;
    }
    mock.stop_traffic();

    // Every shard is READY (active) again after the last fault.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = manager.send(GetFleetStatus).await.expect("status");
        let active = status
            .shards
            .iter()
            .filter(|s| {
                s.status
                    .as_ref()
                    .is_some_and(|st| st.state == ShardState::Active)
            })
            .count();
        if active == SHARDS as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stuck shards: {:#?}",
            status.shards
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // A last round of traffic reaches every shard after recovery.
    let before = log.lock().expect("log").len();
    mock.start_traffic(TrafficConfig::per_shard(100.0));
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    mock.stop_traffic();
    actix_rt::time::sleep(Duration::from_millis(200)).await;

    // Taken, not cloned: a copy of every event would count in the RSS below.
    let events = std::mem::take(&mut *log.lock().expect("log"));
    assert!(events.len() > before, "events flow after the chaos");
    let seen = mock.observed();
    let resumed: BTreeMap<String, Vec<u64>> = seen
        .sessions
        .iter()
        .map(|session| (session.id.clone(), session.resumed_sequences.clone()))
        .collect();
    let stats = check_sessions(&events, &resumed);
    for kind in [
        ViolationKind::IdentifyConcurrencyExceeded,
        ViolationKind::SendRateExceeded,
        ViolationKind::PresenceRateExceeded,
        ViolationKind::PayloadBeforeIdentify,
        ViolationKind::PayloadTooLarge,
        ViolationKind::MalformedPayload,
        ViolationKind::UnknownOpcode,
        ViolationKind::InvalidPayload,
        ViolationKind::AlreadyAuthenticated,
        ViolationKind::AuthenticationFailed,
        ViolationKind::ResumeOnDiscoveryUrl,
        ViolationKind::SessionBudgetExhausted,
    ] {
        let found: Vec<_> = seen.violations_of(kind).collect();
        assert!(found.is_empty(), "{kind:?}: {found:#?}");
    }
    let rss_after = rss_kib();
    let (log_lines, leaks) = {
        let captured = logger.0.lock().expect("log lines");
        (captured.total, captured.leaks.clone())
    };
    assert!(log_lines > 0, "logs were captured");
    assert!(
        leaks.is_empty(),
        "the token leaked into a log line: {leaks:#?}"
    );

    let summary = format!(
        "chaos: seed {seed}, {seconds} s, {faults} faults ({outages} outages), {} events, \
         {} connections, {} identifies, {} resumes, sessions per shard {:?}, RSS {:?} -> {:?} (a third in) -> {:?} KiB, {} log lines searched, \
         the emulator's records {} KiB as JSON\n",
        events.len(),
        seen.connections.len(),
        seen.identifies_total(),
        seen.resumes_total(),
        stats
            .values()
            .map(|(_, sessions)| *sessions)
            .collect::<Vec<_>>(),
        rss_before,
        rss_third,
        rss_after,
        log_lines,
        serde_json::to_vec(&seen).map_or(0, |json| json.len() / 1024),
    );
    let _ = std::io::stderr().write_all(summary.as_bytes());
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        // Bounded: the event log itself grows; anything beyond ~200 MiB
        // would mean buffers that never drain.
        assert!(
            after < before + 200 * 1024,
            "RSS grew from {before} KiB to {after} KiB"
        );
    }
}
