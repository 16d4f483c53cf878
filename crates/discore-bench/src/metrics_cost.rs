//! What metrics cost: one shard's per-event hot path with a Prometheus
//! scraper running and without, and the time to encode `/metrics`
//! (prometheus-client's OpenMetrics text) for 1, 16 and 1000 shards.
//!
//! discore's metrics are the shard's own counters, read on a scrape: the
//! hot path counts events whether anyone scrapes or not. What a scraper
//! adds is the scrape itself, on the same runtime: a status request to the
//! shard (its counters copied), the snapshot, the encoding. The "on" runs
//! scrape every [`SCRAPE_EVERY`], 150 times as often as Prometheus' default
//! 15 s, so the cost shows above noise; "off" and "on" runs alternate on
//! one shard so both see the same machine.

use crate::{
    decode::Codec,
    discore_side::{self, Counter},
    emulator::Emulator,
    harness,
    report::{Section, thousands},
    stats::Throughput,
};
use actix::prelude::*;
use discore_admin::{
    FleetSnapshot, LatencySnapshot, ShardSnapshot, ShardSource, StatusSource, TileState, metrics,
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// How often the "on" runs scrape.
pub const SCRAPE_EVERY: Duration = Duration::from_millis(100);

/// Fleet sizes whose encoding is timed.
const ENCODED_SHARDS: [u32; 3] = [1, 16, 1000];

/// Both tables: the hot path with and without scraping, and the encode
/// times.
pub async fn run(
    emulator: &mut Emulator,
    codec: Codec,
    events: u64,
    runs: usize,
    smoke: bool,
) -> anyhow::Result<(Section, Section)> {
    let hot = hot_path(emulator, codec, events, runs).await?;
    let encode = encode_times(smoke)?;
    Ok((hot, encode))
}

/// Alternating floods without and with a scraper, on one shard.
async fn hot_path(
    emulator: &mut Emulator,
    codec: Codec,
    events: u64,
    runs: usize,
) -> anyhow::Result<Section> {
    let counter = Counter::default().start();
    let shard = discore_side::start_shard(
        discore_side::config(
            emulator.gateway_url(),
            codec,
            discore_side::immediate_queue(),
        ),
        0,
        1,
        Some((counter.clone().recipient(), discore_side::messages_only())),
    )
    .await?;
    harness::check_compression(emulator, codec).await?;

    // The scraper: a loop on this runtime, scraping while `scraping` is set.
    let scraping = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let scrape_time = Arc::new(AtomicU64::new(0));
    let scraper = {
        let source = ShardSource::new(vec![shard.clone()]);
        let (scraping, stop, scrapes, scrape_time) = (
            Arc::clone(&scraping),
            Arc::clone(&stop),
            Arc::clone(&scrapes),
            Arc::clone(&scrape_time),
        );
        actix_rt::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                actix_rt::time::sleep(SCRAPE_EVERY).await;
                if !scraping.load(Ordering::Relaxed) {
                    continue;
                }
                let started = Instant::now();
                let Ok(snapshot) = source.snapshot().await else {
                    continue;
                };
                if metrics::encode(snapshot).is_ok() {
                    scrapes.fetch_add(1, Ordering::Relaxed);
                    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    scrape_time.fetch_add(nanos, Ordering::Relaxed);
                }
            }
        })
    };

    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        for scrape in [false, true] {
            scraping.store(scrape, Ordering::Relaxed);
            let armed = Counter::arm(&counter, events, false).await?;
            let run = harness::flood_run(emulator, vec![armed], events, events).await?;
            if scrape { &mut on } else { &mut off }.push(run);
        }
    }
    scraping.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let _ = actix_rt::time::timeout(Duration::from_secs(5), scraper).await;
    discore_side::shutdown(&[shard]).await;
    emulator.settle(0, Duration::from_secs(5)).await?;

    let (off, on) = (Throughput::best(&off), Throughput::best(&on));
    let us = |t: Throughput| t.cpu_per_event.as_secs_f64() * 1e6;
    let mut table = Section::new(
        format!(
            "Metrics on the hot path, one shard, {} (best of runs)",
            codec.label()
        ),
        &["scraper", "events per second", "client CPU per event (µs)"],
    );
    table.row(vec![
        "off".into(),
        thousands(off.rate),
        format!("{:.2}", us(off)),
    ]);
    table.row(vec![
        format!("every {} ms", SCRAPE_EVERY.as_millis()),
        thousands(on.rate),
        format!("{:.2}", us(on)),
    ]);
    let scrapes = scrapes.load(Ordering::Relaxed);
    let per_scrape = Duration::from_nanos(scrape_time.load(Ordering::Relaxed) / scrapes.max(1));
    table.note(format!(
        "{events} MESSAGE_CREATEs per run, {runs} runs of each, alternating. CPU per event: \
         on − off = {:+.2} µs. {scrapes} scrapes, {:.0} µs each (status request, snapshot, \
         encoding). The shard counts every event with or without a scraper; the difference is \
         the scrapes' share of the runtime.",
        us(on) - us(off),
        per_scrape.as_secs_f64() * 1e6,
    ));
    Ok(table)
}

/// A shard as a busy fleet's status shows it: a few dozen event names,
/// a latency histogram, close codes.
fn busy_shard(id: u32, total: u32) -> ShardSnapshot {
    let mut shard = ShardSnapshot::bare(id, total, TileState::Active);
    shard.latency = Some(LatencySnapshot {
        last: Some(Duration::from_millis(41)),
        average: Some(Duration::from_millis(43)),
        samples: 120,
        buckets: vec![0, 2, 30, 70, 15, 3, 0, 0, 0, 0, 0],
        sum: Some(Duration::from_millis(5160)),
    });
    for (i, name) in [
        "MESSAGE_CREATE",
        "MESSAGE_UPDATE",
        "MESSAGE_DELETE",
        "MESSAGE_REACTION_ADD",
        "MESSAGE_REACTION_REMOVE",
        "TYPING_START",
        "PRESENCE_UPDATE",
        "GUILD_CREATE",
        "GUILD_UPDATE",
        "GUILD_MEMBER_ADD",
        "GUILD_MEMBER_UPDATE",
        "GUILD_MEMBER_REMOVE",
        "CHANNEL_CREATE",
        "CHANNEL_UPDATE",
        "THREAD_CREATE",
        "THREAD_UPDATE",
        "VOICE_STATE_UPDATE",
        "INTERACTION_CREATE",
        "READY",
        "RESUMED",
    ]
    .iter()
    .enumerate()
    {
        shard
            .events_by_type
            .insert((*name).to_owned(), 1000 * (i as u64 + 1));
    }
    shard.close_codes.insert(1006, 2);
    shard.close_codes.insert(4000, 1);
    shard.last_close_code = Some(4000);
    shard.guilds = 2500;
    shard.guilds_loaded = 2500;
    shard.identifies = 1;
    shard.resumes = 3;
    shard.reconnects = 3;
    shard.reconnects_resumed = 3;
    shard
}

/// Encode times of synthetic fleets.
fn encode_times(smoke: bool) -> anyhow::Result<Section> {
    let mut table = Section::new(
        "Encoding /metrics (prometheus-client, OpenMetrics text)",
        &["shards", "bytes", "µs per encode (median)", "µs per shard"],
    );
    for shards in ENCODED_SHARDS {
        let snapshot = Arc::new(FleetSnapshot {
            total: shards,
            ready: true,
            shards: (0..shards).map(|id| busy_shard(id, shards)).collect(),
            ..FleetSnapshot::default()
        });
        let bytes = metrics::encode(Arc::clone(&snapshot))?.len();
        // Enough encodes for a stable median, bounded in time.
        let budget = if smoke {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(2)
        };
        let mut samples = Vec::new();
        let started = Instant::now();
        while samples.len() < 5 || (started.elapsed() < budget && samples.len() < 10_000) {
            let one = Instant::now();
            let text = metrics::encode(Arc::clone(&snapshot))?;
            samples.push(one.elapsed());
            std::hint::black_box(text);
        }
        let median = crate::stats::percentile(&mut samples, 50.0);
        let us = median.as_secs_f64() * 1e6;
        table.row(vec![
            shards.to_string(),
            thousands(bytes as f64),
            format!("{us:.0}"),
            format!("{:.1}", us / f64::from(shards)),
        ]);
    }
    table.note(
        "Each shard: 20 event names, a latency histogram, two close codes: about what a busy \
         shard reports. The encoder runs on the scrape, never on the event path.",
    );
    Ok(table)
}
