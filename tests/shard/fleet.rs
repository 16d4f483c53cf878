//! Standalone shards of one bot started the way `docs/shards.md` shows, in
//! a loop, share the process's identify queue for the bot: the emulator
//! sees no identify within a bucket's window, and only the shards next in
//! their bucket's line hold a connection while they wait.

use crate::harness::PATIENCE;
use discore::{
    Backoff, Compression, Intents, Shard, ShardConfig, ShardId, Shutdown, StopMode, Token,
    identify::{IdentifyFuture, IdentifyQueue, InMemoryIdentifyQueue},
};
use discore_mock::{IdentifyOutcome, MockConfig, MockServer};
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

/// A token of its own: the process's queue for this bot is created here.
const FLEET_TOKEN: &str = "discore-fleet-loop-token";
const WINDOW: Duration = Duration::from_millis(60);
const MAX_CONCURRENCY: u32 = 4;
const SHARDS: u32 = 16;

fn config(mock: &MockServer) -> ShardConfig {
    ShardConfig::new(Intents::GUILDS)
        .gateway_url(mock.gateway_url())
        .compression(Compression::None)
        .backoff(Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        })
        .invalid_session_delay(Duration::from_millis(10)..=Duration::from_millis(50))
        // The same limits as the emulator's: no queue is given, so every
        // shard of the bot uses the process's shared one.
        .identify_limits(MAX_CONCURRENCY, WINDOW)
}

/// The guide's loop of standalone shards at the emulator's own window: they
/// share the bot's identify queue, so no bucket is overrun. It passes with
/// three CPU hogs beside it on 2 cores; the margin it relies on is in
/// `docs/performance.md`, "Cold start".
#[actix_rt::test]
async fn the_seed_loop_of_standalone_shards_never_overruns_a_bucket() {
    let mock = MockServer::start(
        MockConfig::new()
            .token(FLEET_TOKEN)
            .guilds(u64::from(SHARDS))
            .max_guilds_per_shard(1)
            .max_concurrency(MAX_CONCURRENCY)
            .identify_window(WINDOW)
            .heartbeat_interval(Duration::from_secs(2)),
    )
    .await
    .expect("the emulator starts");
    let token = Token::new(FLEET_TOKEN).expect("token");
    // The guide's loop: one Shard per id, the same token and configuration.
    let shards: Vec<Shard> = (0..SHARDS)
        .map(|id| Shard::new(token.clone(), ShardId::new(id, SHARDS), config(&mock)))
        .collect();
    // Started together, as a loop of `start()` calls spawned at once.
    let starting: Vec<_> = shards
        .into_iter()
        .map(|shard| actix_rt::spawn(shard.start()))
        .collect();
    let mut addrs = Vec::new();
    for start in starting {
        let started = actix_rt::time::timeout(PATIENCE, start)
            .await
            .expect("the shard starts in time")
            .expect("the start task ends normally");
        addrs.push(started.expect("the shard starts"));
    }
    let seen = mock.observed();
    let arrivals: Vec<_> = seen
        .identifies
        .iter()
        .map(|i| (i.shard[0], i.bucket, i.at.as_secs_f64() * 1000.0, i.outcome))
        .collect();
    assert!(
        seen.violations.is_empty(),
        "identifies (shard, bucket, ms, outcome): {arrivals:?}"
    );
    assert_eq!(seen.identifies.len(), SHARDS as usize);
    assert!(
        seen.identifies
            .iter()
            .all(|i| i.outcome == IdentifyOutcome::Accepted)
    );
    // The shared queue lets two shards per bucket connect ahead of their
    // slot, not the whole loop.
    let idle = seen.peak_idle_connections();
    assert!(
        idle <= 2 * MAX_CONCURRENCY as usize,
        "{idle} connections waited for their identify slot at once"
    );
    for addr in addrs {
        let _ = actix_rt::time::timeout(PATIENCE, addr.send(Shutdown(StopMode::End))).await;
    }
    mock.stop().await;
}

/// Counts the requests it passes on.
#[derive(Debug)]
struct Counting {
    inner: InMemoryIdentifyQueue,
    asked: AtomicUsize,
}

impl IdentifyQueue for Counting {
    fn acquire(&self, shard: ShardId) -> IdentifyFuture {
        self.asked.fetch_add(1, Ordering::Relaxed);
        self.inner.acquire(shard)
    }
}

#[actix_rt::test]
async fn a_shard_given_its_own_queue_keeps_it() {
    let mock = MockServer::start(
        MockConfig::new()
            .token(FLEET_TOKEN)
            .guilds(1)
            .identify_window(WINDOW),
    )
    .await
    .expect("the emulator starts");
    let own = Arc::new(Counting {
        inner: InMemoryIdentifyQueue::with_window(1, WINDOW),
        asked: AtomicUsize::new(0),
    });
    let shard = Shard::new(
        Token::new(FLEET_TOKEN).expect("token"),
        ShardId::new(0, 1),
        config(&mock).identify_queue(own.clone()),
    );
    let addr = actix_rt::time::timeout(PATIENCE, shard.start())
        .await
        .expect("starts in time")
        .expect("starts");
    assert_eq!(
        own.asked.load(Ordering::Relaxed),
        1,
        "its own queue was asked"
    );
    let _ = actix_rt::time::timeout(PATIENCE, addr.send(Shutdown(StopMode::End))).await;
    mock.stop().await;
}
