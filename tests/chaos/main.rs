//! Chaos soak: a fleet on the emulator while faults are injected at random
//! (seeded, reproducible), then every user-visible guarantee is checked.
//!
//! The suite runs a short soak. The long run is one command away:
//!
//! ```sh
//! DISCORE_CHAOS_SECONDS=600 DISCORE_CHAOS_SEED=42 cargo test --release --test chaos -- --nocapture
//! ```
//!
//! `DISCORE_CHAOS_COMPRESSION=zstd` (or `none`) runs it on another
//! transport than zlib-stream. The emulator runs in a process of its own
//! ([`emulator`]), so the memory the soak bounds is the client's.

mod emulator;

use actix::prelude::*;
use discore::{
    Backoff, Compression, DiscoveryConfig, DispatchEvent, GatewayEvent, GetFleetStatus,
    IdentifyConfig, IdentifyLimits, Intents, ManagerConfig, Placement, RestartPolicy, ShardConfig,
    ShardCount, ShardManager, SupervisionConfig, Token,
};
use discore_mock::{Fault, Target, TrafficConfig};
use emulator::EmulatorProcess;
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

/// Records what the user saw. Event names are interned: hundreds of
/// thousands of events in the long run must not make the test's own log
/// the memory it measures.
struct Collector {
    log: Arc<Mutex<Vec<Seen>>>,
    names: std::collections::HashMap<String, Arc<str>>,
}

impl Collector {
    fn new(log: Arc<Mutex<Vec<Seen>>>) -> Self {
        Self {
            log,
            names: std::collections::HashMap::new(),
        }
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(interned) = self.names.get(name) {
            return Arc::clone(interned);
        }
        let interned: Arc<str> = Arc::from(name);
        self.names.insert(name.to_owned(), Arc::clone(&interned));
        interned
    }
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for Collector {
    type Result = ();

    fn handle(&mut self, message: GatewayEvent, _: &mut Context<Self>) {
        let session = match message.typed() {
            Some(DispatchEvent::Ready(ready)) => Some(ready.session_id.clone()),
            _ => None,
        };
        let seen = Seen {
            shard: message.shard.number(),
            sequence: message.sequence,
            name: self.intern(message.name()),
            session,
        };
        let mut log = self.log.lock().expect("log");
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

/// This process's resident set, in KiB.
fn rss_kib() -> Option<u64> {
    rss_kib_of("/proc/self/status")
}

/// `VmRSS` of a `/proc/<pid>/status` file, in KiB.
fn rss_kib_of(status_path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Messages no gateway should send: invalid UTF-8, a sequence number past
/// `u64::MAX`, an opcode over 255.
const BAD_PAYLOADS: [&[u8]; 3] = [
    b"{\"t\":\"MESSAGE_CREATE\",\"s\":1,\"op\":0,\"d\":{\"content\":\"\xff\"}}",
    br#"{"t":"MESSAGE_CREATE","s":18446744073709551616,"op":0,"d":{}}"#,
    br#"{"t":null,"s":null,"op":256,"d":null}"#,
];

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
        94..=96 => Fault::MalformedDispatchData,
        _ => Fault::Payload {
            bytes: BAD_PAYLOADS[rng.usize(0..BAD_PAYLOADS.len())].to_vec(),
        },
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

/// The last sequence the bot saw in each session: events after a READY
/// belong to its session until the shard's next READY (resumes continue it).
fn last_sequences(events: &[Seen]) -> BTreeMap<String, u64> {
    let mut current: BTreeMap<u32, String> = BTreeMap::new();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for event in events {
        if let Some(session) = &event.session {
            current.insert(event.shard, session.clone());
        }
        if let Some(session) = current.get(&event.shard) {
            let entry = last.entry(session.clone()).or_default();
            *entry = (*entry).max(event.sequence);
        }
    }
    last
}

/// Seeded random faults against a 4-shard fleet with live traffic: every
/// dispatch of a session arrives exactly once and in order, each live
/// session's last sequence seen by the bot is the emulator's, the emulator
/// records no violation of any kind, sessions are resumed, memory stays
/// bounded, the token never appears in a log line, and every shard is
/// READY again after the last fault and receives events.
#[actix_rt::test]
async fn chaos_soak() {
    let logger = capture_logs();
    let seconds = env_number("DISCORE_CHAOS_SECONDS", 20);
    let seed = env_number("DISCORE_CHAOS_SEED", 1);
    // zlib-stream unless DISCORE_CHAOS_COMPRESSION says `zstd` or `none`.
    let compression = match std::env::var("DISCORE_CHAOS_COMPRESSION").as_deref() {
        Ok("zstd") => Compression::ZstdStream,
        Ok("none") => Compression::None,
        _ => Compression::ZlibStream,
    };
    let mut rng = fastrand::Rng::with_seed(seed);

    let mock = EmulatorProcess::spawn();
    let log = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector::new(Arc::clone(&log)).start();
    let shard_config = ShardConfig::new(Intents::GUILDS)
        .compression(compression)
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
        .discovery(DiscoveryConfig::at(mock.rest_url()))
        .shard_count(ShardCount::Fixed(SHARDS))
        .identify(IdentifyConfig::in_memory(IdentifyLimits {
            window: emulator::IDENTIFY_WINDOW,
            ..IdentifyLimits::default()
        }))
        .shard_config(shard_config)
        .placement(Placement::Arbiters(2))
        .supervision(SupervisionConfig {
            restart: RestartPolicy {
                backoff: Backoff {
                    base: Duration::from_millis(20),
                    cap: Duration::from_millis(200),
                },
                max_restarts: 50,
                window: Duration::from_secs(10),
            },
            ..SupervisionConfig::default()
        });
    let manager = ShardManager::start(config, collector.recipient())
        .await
        .expect("fleet starts");
    mock.start_traffic(TrafficConfig::per_shard(100.0)).await;
    let rss_before = rss_kib();

    // RSS over the run, twenty samples: a slope that goes on after warm-up
    // is a leak per connection; a plateau is the allocator keeping what it
    // got.
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let sample_every = Duration::from_secs(seconds) / 20;
    let mut next_sample = started + sample_every;
    // (seconds in, client KiB, emulator KiB)
    let mut rss_samples: Vec<(u64, Option<u64>, Option<u64>)> = Vec::new();
    let mut faults = 0u64;
    let mut outages = 0u64;
    while Instant::now() < end {
        let shard = rng.u32(0..SHARDS);
        if rng.u32(0..1000) == 0 {
            mock.outage(Duration::from_millis(rng.u64(300..1500))).await;
            outages += 1;
        } else {
            mock.fault(&Target::Shard(shard), &random_fault(&mut rng))
                .await;
        }
        faults += 1;
        if Instant::now() >= next_sample {
            rss_samples.push((started.elapsed().as_secs(), rss_kib(), mock.rss_kib()));
            next_sample += sample_every;
        }
        actix_rt::time::sleep(Duration::from_millis(rng.u64(1..10))).await;
    }
    mock.stop_traffic().await;

    // Every shard is READY (active) again after the last fault.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = manager.send(GetFleetStatus).await.expect("status");
        if status.active_shards() == SHARDS as usize {
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
    mock.start_traffic(TrafficConfig::per_shard(100.0)).await;
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    mock.stop_traffic().await;
    // Until every shard got events after the faults, within a bound.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shards_reached: std::collections::BTreeSet<u32> = log.lock().expect("log")[before..]
            .iter()
            .map(|e| e.shard)
            .collect();
        if shards_reached.len() == SHARDS as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shards that received events after the faults: {shards_reached:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    actix_rt::time::sleep(Duration::from_millis(200)).await;

    // Read before the emulator's records are fetched and parsed, which take
    // memory of their own.
    let rss_after = rss_kib();
    let emulator_rss = mock.rss_kib();
    // Taken, not cloned: the checks below need no second copy.
    let events = std::mem::take(&mut *log.lock().expect("log"));
    assert!(events.len() > before, "events flow after the chaos");
    // The test's own record of every event, which grows with the run.
    let event_log_kib = (events.capacity() * std::mem::size_of::<Seen>()
        + events
            .iter()
            .filter_map(|e| e.session.as_ref())
            .map(String::capacity)
            .sum::<usize>())
        / 1024;
    let seen = mock.observed().await;
    mock.stop();
    let resumed: BTreeMap<String, Vec<u64>> = seen
        .sessions
        .iter()
        .map(|session| (session.id.clone(), session.resumed_sequences.clone()))
        .collect();
    let stats = check_sessions(&events, &resumed);
    // No violation of any kind, InvalidSequence and HeartbeatSequenceAhead
    // included.
    let violations: Vec<_> = seen.violations.iter().collect();
    assert!(violations.is_empty(), "{violations:#?}");
    // The sessions attached to a connection at the end are the shards'
    // current ones: one per shard, and the bot saw every event of each. A
    // detached session the bot gave up (its READY lost to a fault, so the
    // shard identified anew) buffers events until it expires, as Discord's
    // does, and is not compared.
    let last_seen = last_sequences(&events);
    let attached: Vec<_> = seen
        .sessions
        .iter()
        .filter(|s| s.alive && s.connection.is_some())
        .collect();
    let attached_shards: std::collections::BTreeSet<u32> =
        attached.iter().map(|s| s.shard[0]).collect();
    assert_eq!(
        (attached.len(), attached_shards.len()),
        (SHARDS as usize, SHARDS as usize),
        "one attached session per shard at the end: {attached:#?}"
    );
    for session in attached {
        assert_eq!(
            last_seen.get(&session.id).copied(),
            Some(session.sequence),
            "session {} of shard {:?}: the bot's last sequence is not the emulator's",
            session.id,
            session.shard
        );
    }
    assert!(seen.resumes_total() > 0, "the faults led to resumes");
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
        "chaos: seed {seed}, {compression:?}, {seconds} s, {faults} faults ({outages} outages), {} events, \
         {} connections ({} open at the end), {} identifies, {} resumes, sessions per shard {:?}, client RSS {:?} -> {:?} KiB \
         (the test's event log {event_log_kib} KiB of it), samples (s, client KiB, emulator KiB) {:?}, \
         emulator process RSS {:?} KiB, {} log lines searched, \
         the emulator's records {} KiB as JSON\n",
        events.len(),
        seen.connections.len(),
        seen.open_connections(),
        seen.identifies_total(),
        seen.resumes_total(),
        stats
            .values()
            .map(|(_, sessions)| *sessions)
            .collect::<Vec<_>>(),
        rss_before,
        rss_after,
        rss_samples,
        emulator_rss,
        log_lines,
        serde_json::to_vec(&seen).map_or(0, |json| json.len() / 1024),
    );
    let _ = std::io::stderr().write_all(summary.as_bytes());
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        // Bounded: the client's RSS grows by its warm-up (thread-local
        // buffers, the allocator's arenas) and by the test's event log;
        // the long run measured +26 MiB in all (docs/reliability.md). More
        // than 64 MiB beyond the event log would be buffers that never
        // drain or state kept per connection.
        assert!(
            after < before + 64 * 1024 + event_log_kib as u64,
            "RSS grew from {before} KiB to {after} KiB (the event log: {event_log_kib} KiB)"
        );
    }
}

/// The emulator's process: this binary run again by
/// [`EmulatorProcess::spawn`]; without its environment variable it does
/// nothing.
#[test]
#[ignore = "the chaos soak's emulator process, started by chaos_soak itself"]
fn emulator_process() {
    if std::env::var_os(emulator::CHILD_ENV).is_some() {
        emulator::serve(TOKEN, u64::from(SHARDS) * 3);
    }
}
