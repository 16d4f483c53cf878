//! A whole fleet starting at once, the manager told the same identify
//! window as the emulator enforces, on a machine made busy by a CPU hog:
//! the emulator records no violation and exactly one Identify per shard.
//! Then identifies the emulator refuses: every refused shard gets a slot
//! again and becomes ready.

mod common;

use common::{init_logging, manager_config, shard_config, start_mock};
use discore_gateway::{Backoff, Compression, StopMode};
use discore_manager::{
    GetFleetStatus, IdentifyConfig, IdentifyLimits, ManagerConfig, ShardManager, ShutdownFleet,
    WaitUntilReady,
};
use discore_mock::{IdentifyOutcome, MockConfig, MockServer, Observed};
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

const MAX_CONCURRENCY: u32 = 16;

/// Keeps one core busy until dropped, so timers and sockets jitter as on a
/// loaded machine.
struct CpuHog {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl CpuHog {
    /// Spins for at most `limit`, or until dropped.
    fn start(limit: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + limit;
            let mut x: u64 = 1;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                for _ in 0..10_000 {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                }
                std::hint::black_box(x);
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn emulator(shards: u64, window: Duration) -> MockConfig {
    MockConfig::new()
        .guilds(shards)
        .max_guilds_per_shard(1)
        .members_per_guild(2)
        .channels_per_guild(1)
        .max_concurrency(MAX_CONCURRENCY)
        .identify_window(window)
        // A bot of this size has a daily budget to match: Discord raises it
        // for large bots. Its default of 1,000 would leave the queue's
        // reserve of 50 holding the last shards of a 1,000-shard fleet back
        // until the daily reset, as it should.
        .session_start_limit(10_000, 10_000, Duration::from_secs(86_400))
        // Long enough that heartbeats are not the load under test.
        .heartbeat_interval(Duration::from_secs(5))
        .heartbeat_grace(Duration::from_secs(5))
        .send_limit(120, common::SEND_WINDOW)
        .rest_rate_limit(None)
        .workers(2)
}

/// The manager told exactly the emulator's window and concurrency.
fn fleet(mock: &MockServer, window: Duration) -> ManagerConfig {
    manager_config(mock)
        .identify(IdentifyConfig::in_memory(IdentifyLimits {
            window,
            max_concurrency: Some(MAX_CONCURRENCY),
            ..IdentifyLimits::default()
        }))
        .shard_config(
            shard_config()
                // The emulator judges on two threads: without compression
                // it spends its time judging, not deflating.
                .compression(Compression::None)
                .backoff(Backoff {
                    base: Duration::from_millis(50),
                    cap: Duration::from_millis(500),
                }),
        )
}

/// Accepted identifies per shard, and the smallest gap between two
/// identifies that arrived in one bucket.
fn tally(seen: &Observed) -> (BTreeMap<u32, usize>, Option<Duration>) {
    let mut per_shard: BTreeMap<u32, usize> = BTreeMap::new();
    let mut last: BTreeMap<u32, Duration> = BTreeMap::new();
    let mut smallest: Option<Duration> = None;
    for identify in &seen.identifies {
        if identify.outcome == IdentifyOutcome::Accepted {
            *per_shard.entry(identify.shard[0]).or_default() += 1;
        }
        if let Some(previous) = last.insert(identify.bucket, identify.at) {
            let gap = identify.at.saturating_sub(previous);
            smallest = Some(smallest.map_or(gap, |s| s.min(gap)));
        }
    }
    (per_shard, smallest)
}

/// Gaps under `window` between identifies arriving in one bucket, in ms.
fn short_gaps(seen: &Observed, window: Duration) -> Vec<f64> {
    let mut last: BTreeMap<u32, Duration> = BTreeMap::new();
    let mut gaps = Vec::new();
    for identify in &seen.identifies {
        if let Some(previous) = last.insert(identify.bucket, identify.at) {
            let gap = identify.at.saturating_sub(previous);
            if gap < window {
                gaps.push(gap.as_secs_f64() * 1000.0);
            }
        }
    }
    gaps
}

async fn cold_start(shards: u32, window: Duration, ready_within: Duration) {
    init_logging();
    let mock = start_mock(emulator(u64::from(shards), window)).await;
    assert_eq!(mock.recommended_shards(), u64::from(shards));
    let hog = CpuHog::start(ready_within);
    let started = Instant::now();
    let manager = ShardManager::launch(fleet(&mock, window))
        .await
        .expect("the fleet starts");
    let waited = actix_rt::time::timeout(ready_within, manager.send(WaitUntilReady)).await;
    let Ok(answer) = waited else {
        let seen = mock.observed();
        let (per_shard, _) = tally(&seen);
        let status = manager.send(GetFleetStatus).await.expect("status");
        let stuck: Vec<_> = status
            .shards
            .iter()
            .filter(|r| r.status.as_ref().is_none_or(|s| !s.is_fully_loaded()))
            .map(|r| {
                (
                    r.shard,
                    r.state,
                    r.status
                        .as_ref()
                        .map(|s| (s.state, s.identifies, s.reconnects)),
                )
            })
            .take(10)
            .collect();
        panic!(
            "not ready within {ready_within:?}: {} identifies, {} shards accepted, {} violations, {} connections; stuck: {stuck:?}",
            seen.identifies.len(),
            per_shard.len(),
            seen.violations.len(),
            seen.connections.len()
        );
    };
    let progress = answer
        .expect("manager answers")
        .expect("the fleet becomes ready");
    let took = started.elapsed();
    drop(hog);
    assert_eq!(progress.shards_ready, shards);

    let seen = mock.observed();
    assert!(
        seen.violations.is_empty(),
        "{} violations; gaps under the window: {:?}",
        seen.violations.len(),
        short_gaps(&seen, window)
    );
    let (per_shard, smallest) = tally(&seen);
    assert_eq!(
        seen.identifies.len(),
        shards as usize,
        "exactly one identify per shard"
    );
    // The launch connects two shards per bucket ahead, not the whole fleet.
    let idle = seen.peak_idle_connections();
    assert!(
        idle <= 2 * MAX_CONCURRENCY as usize,
        "{idle} connections waited for their identify slot at once"
    );
    assert_eq!(per_shard.len(), shards as usize);
    assert!(per_shard.values().all(|n| *n == 1), "{per_shard:?}");
    log::info!(
        "{shards} shards ready in {took:?}; smallest gap within a bucket {smallest:?} for a {window:?} window"
    );
    let report = actix_rt::time::timeout(
        Duration::from_secs(30),
        manager.send(ShutdownFleet(StopMode::End)),
    )
    .await
    .expect("shutdown in time")
    .expect("manager answers")
    .expect("shutdown");
    assert_eq!(report.shards_stopped, shards as usize);
    mock.stop().await;
}

/// With a CPU hog beside it on 2 cores, the emulator (in this process)
/// stamps some Identifies milliseconds after they were written, tens of
/// milliseconds while hundreds of connections open at once: spacing by the
/// write would bring two Identifies of a bucket within a window, spacing
/// by the answer cannot.
#[actix_rt::test]
async fn two_hundred_fifty_six_shards_at_equal_windows() {
    // 16 windows of 100 ms: under two seconds when all goes well.
    cold_start(256, Duration::from_millis(100), Duration::from_secs(120)).await;
}

/// As above, with a thousand connections opening at once.
#[actix_rt::test]
async fn a_thousand_shards_at_equal_windows() {
    // 63 windows of 100 ms: under seven seconds when all goes well.
    cold_start(1000, Duration::from_millis(100), Duration::from_secs(240)).await;
}

/// The emulator refuses the first identifies with op 9: each refused shard
/// waits, gets a slot again and becomes ready, with one accepted Identify.
#[actix_rt::test]
async fn refused_identifies_get_a_slot_again() {
    init_logging();
    const SHARDS: u32 = 64;
    const REFUSED: u32 = 24;
    let window = Duration::from_millis(100);
    let mock = start_mock(emulator(u64::from(SHARDS), window)).await;
    mock.refuse_identifies(REFUSED);
    let hog = CpuHog::start(Duration::from_secs(120));
    let manager = ShardManager::launch(fleet(&mock, window))
        .await
        .expect("the fleet starts");
    let progress = actix_rt::time::timeout(Duration::from_secs(120), manager.send(WaitUntilReady))
        .await
        .expect("the fleet is ready in time")
        .expect("manager answers")
        .expect("the fleet becomes ready");
    drop(hog);
    assert_eq!(progress.shards_ready, SHARDS);
    let seen = mock.observed();
    // Overruns are the cold start tests' subject; here a refused shard
    // must come back whatever else happened.
    let refused: Vec<u32> = seen
        .identifies
        .iter()
        .filter(|i| i.outcome == IdentifyOutcome::Refused)
        .map(|i| i.shard[0])
        .collect();
    assert_eq!(refused.len(), REFUSED as usize);
    let (per_shard, _) = tally(&seen);
    for shard in &refused {
        assert_eq!(
            per_shard.get(shard),
            Some(&1),
            "refused shard {shard} identified again and was accepted"
        );
    }
    assert_eq!(per_shard.len(), SHARDS as usize);
    let _ = actix_rt::time::timeout(
        Duration::from_secs(30),
        manager.send(ShutdownFleet(StopMode::End)),
    )
    .await;
    mock.stop().await;
}
