//! Timed runs shared by both clients: a flood counted by armed handlers,
//! and a paced stream of latency probes.

use crate::{
    decode::Codec,
    emulator::Emulator,
    stats::{self, Throughput},
    tally::Outcome,
};
use anyhow::{Context as _, anyhow, bail};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Longest a flood of `events` may take before the run is abandoned.
pub fn flood_deadline(events: u64) -> Duration {
    Duration::from_secs(30) + Duration::from_micros(events.saturating_mul(200))
}

/// Floods `per_connection` MESSAGE_CREATEs to every connection and waits
/// for the armed handlers (`armed`, expecting `total` in all) to see them.
/// Returns events per second, from the flood command to the last handler,
/// and this process's CPU time per event.
pub async fn flood_run(
    emulator: &mut Emulator,
    armed: Vec<oneshot::Receiver<Outcome>>,
    total: u64,
    per_connection: u64,
) -> anyhow::Result<Throughput> {
    let deadline = Instant::now() + flood_deadline(total);
    let cpu = stats::cpu_time();
    let emulator_cpu = emulator.cpu_time();
    let started = Instant::now();
    emulator.send(&format!("flood {per_connection}"))?;
    let mut content = 0;
    for receiver in armed {
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome = actix_rt::time::timeout(left, receiver)
            .await
            .map_err(|_| anyhow!("the handlers did not see the flood in time"))?
            .context("a handler went away")?;
        content += outcome.content_bytes;
    }
    let elapsed = started.elapsed();
    let cpu = stats::cpu_time().saturating_sub(cpu);
    let emulator_cpu = emulator.cpu_time().saturating_sub(emulator_cpu);
    let report = emulator.reply(Duration::from_secs(60)).await?;
    let sent: u64 = report
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if sent != total {
        bail!("the emulator sent {sent} events, the handlers expected {total}");
    }
    if content == 0 {
        bail!("the handlers saw no message content");
    }
    Ok(Throughput {
        rate: stats::rate(total, elapsed),
        cpu_per_event: cpu / u32::try_from(total.max(1)).unwrap_or(u32::MAX),
        emulator_cpu_per_event: emulator_cpu / u32::try_from(total.max(1)).unwrap_or(u32::MAX),
    })
}

/// Has the emulator post `count` messages at `rate` per second, each with
/// its send time, and returns the armed handler's latencies.
pub async fn latency_run(
    emulator: &mut Emulator,
    armed: oneshot::Receiver<Outcome>,
    rate: f64,
    count: u64,
) -> anyhow::Result<Vec<Duration>> {
    let pacing = Duration::from_secs_f64(count as f64 / rate.max(1.0));
    emulator
        .call(
            &format!("ticker {rate} {count}"),
            pacing + Duration::from_secs(30),
        )
        .await?;
    let outcome = actix_rt::time::timeout(Duration::from_secs(10), armed)
        .await
        .map_err(|_| anyhow!("the handler did not see every latency probe"))?
        .context("the handler went away")?;
    if outcome.latencies.len() as u64 != count {
        bail!(
            "{} of {count} latency probes carried a timestamp",
            outcome.latencies.len()
        );
    }
    Ok(outcome.latencies)
}

/// What the shards' latency probes look like, byte for byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streams {
    /// Each shard's probes have a length of their own, as different
    /// channels' traffic would.
    Varied,
    /// Every session gets the same bytes, so every session's compressor
    /// slides its window at the same moment.
    Identical,
}

/// A fleet latency run's samples, measured from two starting points.
#[derive(Debug, Default)]
pub struct FleetLatency {
    /// From the stamp each probe carries, read as the emulator built it, to
    /// the handler: includes the emulator's own queueing and compression.
    pub from_build: Vec<Duration>,
    /// From the moment the emulator's socket writer took the probe's frame
    /// (in the turn in which it writes it) to the handler.
    pub from_send: Vec<Duration>,
}

/// Has the emulator dispatch `count` messages at `rate` per second to
/// `shards` shards in turn, each with its send time, and gathers the armed
/// handlers' latencies, from the build and from the send.
pub async fn fleet_latency_run(
    emulator: &mut Emulator,
    armed: Vec<oneshot::Receiver<Outcome>>,
    rate: f64,
    count: u64,
    shards: u64,
    streams: Streams,
) -> anyhow::Result<FleetLatency> {
    let pacing = Duration::from_secs_f64(count as f64 / rate.max(1.0));
    let streams = match streams {
        Streams::Varied => "varied",
        Streams::Identical => "identical",
    };
    let delivered = emulator
        .call(
            &format!("ticker-shards {rate} {count} {shards} {streams}"),
            pacing + Duration::from_secs(60),
        )
        .await?;
    if delivered.trim().parse::<u64>().ok() != Some(count) {
        bail!("the emulator delivered {delivered:?} of {count} probes");
    }
    let mut latency = FleetLatency::default();
    let mut receipts = Vec::with_capacity(usize::try_from(count)?);
    for receiver in armed {
        let outcome = actix_rt::time::timeout(Duration::from_secs(30), receiver)
            .await
            .map_err(|_| anyhow!("the handlers did not see every latency probe"))?
            .context("a handler went away")?;
        latency.from_build.extend(outcome.latencies);
        receipts.extend(outcome.receipts);
    }
    if latency.from_build.len() as u64 != count || receipts.len() as u64 != count {
        bail!(
            "{} of {count} latency probes carried a timestamp, {} named their dispatch",
            latency.from_build.len(),
            receipts.len()
        );
    }
    // Every handler has its probe, so every probe has been handed over.
    let path = std::env::temp_dir().join(format!("discore-bench-sent-{}.txt", std::process::id()));
    let noted = emulator
        .call(
            &format!("sent-at {}", path.display()),
            Duration::from_secs(60),
        )
        .await?;
    let sent = crate::emulator::read_sent_at(&path);
    let _ = std::fs::remove_file(&path);
    let sent = sent?;
    if noted.split(' ').nth(1) != Some("0") {
        bail!("the emulator lost send times: {noted}");
    }
    for receipt in &receipts {
        let Some(&at) = sent.get(&(receipt.shard, receipt.sequence)) else {
            bail!(
                "no send time for dispatch {} of shard {}",
                receipt.sequence,
                receipt.shard
            );
        };
        let nanos = receipt.at_nanos.saturating_sub(at);
        latency.from_send.push(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ));
    }
    Ok(latency)
}

/// Checks that the emulator serves every open connection with `codec`.
pub async fn check_compression(emulator: &mut Emulator, codec: Codec) -> anyhow::Result<()> {
    let expected = match codec {
        Codec::None => "None",
        Codec::Zlib => "ZlibStream",
        Codec::Zstd => "ZstdStream",
    };
    let open = emulator.compressions().await?;
    if open.is_empty() || open.iter().any(|c| c != expected) {
        bail!("expected {expected} connections, the emulator has {open:?}");
    }
    Ok(())
}
