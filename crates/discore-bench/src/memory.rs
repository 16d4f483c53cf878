//! Memory per idle shard: RSS growth per connected, heartbeating shard.
//!
//! Each measurement runs in a fresh process (the hidden `memory-probe`
//! subcommand), because a process never gives freed heap back reliably and
//! one library's leftovers would hide the other's growth; the emulator runs
//! in its own process too. The probe starts `warmup` shards first (none:
//! the reading is taken before the first shard), reads VmRSS, starts the
//! rest in batches of `batch` (each batch waits for its READYs; a batch of
//! every shard starts them all at once, as a fleet starts), waits a few
//! heartbeat intervals, and reads VmRSS again. The parent then checks with
//! the emulator that every shard is still connected (a shard that stopped
//! heartbeating would have been closed) before it ends the probe.
//!
//! The two ways of starting differ by what the allocator keeps: shards
//! started together hold their handshakes' buffers at the same time, and
//! glibc keeps the freed memory between the long-lived allocations that
//! followed it (it returns only whole free pages at the top of a heap, or
//! on `malloc_trim`); shards started in batches reuse the same freed
//! memory batch after batch.

use crate::{
    Lib,
    decode::Codec,
    discore_side,
    emulator::{Emulator, read_lines, wait_or_kill},
    twilight_side::TwilightShard,
};
use actix::Actor as _;
use anyhow::{Context as _, anyhow, bail};
use std::{
    process::{Command, Stdio},
    time::Duration,
};

/// The `memory-probe` subcommand's flags.
#[derive(Clone, Debug, clap::Args)]
pub struct ProbeArgs {
    /// Which client.
    #[arg(long, value_enum)]
    pub client: Lib,
    /// Transport compression.
    #[arg(long = "compression", value_enum)]
    pub codec: Codec,
    /// Shards in all.
    #[arg(long)]
    pub shards: u32,
    /// Shards started before the first reading.
    #[arg(long)]
    pub warmup: u32,
    /// Shards started at once after it.
    #[arg(long)]
    pub batch: u32,
    /// The emulator's gateway URL.
    #[arg(long)]
    pub url: String,
    /// How long the shards idle before the second reading, in ms.
    #[arg(long)]
    pub settle_ms: u64,
}

/// The process's resident set, in KiB.
pub fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS in /proc/self/status")
}

/// The probe process: prints `ok <rss before> <rss after>` and idles until
/// its standard input closes.
pub fn probe(args: &ProbeArgs) -> anyhow::Result<()> {
    actix_rt::System::new().block_on(probe_async(args.clone()))
}

async fn probe_async(args: ProbeArgs) -> anyhow::Result<()> {
    let warmup = args.warmup.min(args.shards.saturating_sub(1));
    let mut discore = Vec::new();
    let mut twilight = Vec::new();
    let counter = discore_side::Counter::default().start();
    let queue = discore_side::immediate_queue();
    let start = |from: u32, to: u32| {
        let url = args.url.clone();
        let counter = counter.clone();
        let queue = queue.clone();
        let (lib, codec, total) = (args.client, args.codec, args.shards);
        async move {
            match lib {
                Lib::Discore => {
                    let starts = (from..to).map(|id| {
                        let config = discore_side::config(&url, codec, queue.clone());
                        let subscriber =
                            (counter.clone().recipient(), discore_side::messages_only());
                        discore_side::start_shard(config, id, total, Some(subscriber))
                    });
                    let started = futures_util::future::join_all(starts).await;
                    started
                        .into_iter()
                        .map(|s| s.map(Started::Discore))
                        .collect::<anyhow::Result<Vec<_>>>()
                }
                Lib::Twilight => {
                    let starts = (from..to).map(|id| TwilightShard::start(&url, codec, id, total));
                    let started = futures_util::future::join_all(starts).await;
                    started
                        .into_iter()
                        .map(|s| s.map(Started::Twilight))
                        .collect::<anyhow::Result<Vec<_>>>()
                }
            }
        }
    };
    let mut keep = |started: Vec<Started>| {
        for shard in started {
            match shard {
                Started::Discore(addr) => discore.push(addr),
                Started::Twilight(shard) => twilight.push(shard),
            }
        }
    };
    if warmup > 0 {
        keep(start(0, warmup).await?);
    }
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib()?;
    let mut next = warmup;
    while next < args.shards {
        let to = (next + args.batch.max(1)).min(args.shards);
        keep(start(next, to).await?);
        next = to;
    }
    let cpu = crate::stats::cpu_time();
    actix_rt::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let cpu = crate::stats::cpu_time().saturating_sub(cpu);
    let after = rss_kib()?;
    println!("ok {before} {after} {}", cpu.as_micros());
    let mut stdin = read_lines(std::io::stdin());
    let _ = actix_rt::time::timeout(Duration::from_secs(120), stdin.recv()).await;
    drop((discore, twilight));
    Ok(())
}

enum Started {
    Discore(actix::Addr<discore_gateway::Shard>),
    Twilight(TwilightShard),
}

/// How a probe starts its shards.
#[derive(Clone, Copy, Debug)]
pub enum Start {
    /// Every shard at once, the reading taken before the first.
    Together,
    /// `warmup` shards before the reading, then batches of `batch`.
    Batched {
        /// Shards started before the first reading.
        warmup: u32,
        /// Shards per batch.
        batch: u32,
    },
}

/// One idle-memory measurement.
#[derive(Debug)]
pub struct Idle {
    /// RSS growth per shard, in KiB.
    pub per_shard_kib: f64,
    /// Connections the emulator counted open at the end.
    pub connected: usize,
    /// The probe's CPU time while every shard idled (heartbeats, their
    /// ACKs and the timers).
    pub idle_cpu: Duration,
}

/// Runs one probe process against `emulator`.
pub async fn measure(
    emulator: &mut Emulator,
    lib: Lib,
    codec: Codec,
    shards: u32,
    start: Start,
    settle: Duration,
) -> anyhow::Result<Idle> {
    let (warmup, batch) = match start {
        Start::Together => (0, shards),
        Start::Batched { warmup, batch } => (warmup, batch),
    };
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("memory-probe")
        .args(["--client", lib.name(), "--compression", codec_flag(codec)])
        .args(["--shards", &shards.to_string()])
        .args(["--warmup", &warmup.to_string()])
        .args(["--batch", &batch.to_string()])
        .args(["--url", emulator.gateway_url()])
        .args(["--settle-ms", &settle.as_millis().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a memory probe")?;
    let stdout = child.stdout.take().context("probe stdout")?;
    let mut lines = read_lines(stdout);
    let line = actix_rt::time::timeout(Duration::from_secs(300), lines.recv())
        .await
        .map_err(|_| anyhow!("the memory probe did not report within 300 s"));
    let line = match line {
        Ok(Some(line)) => line,
        Ok(None) => {
            wait_or_kill(&mut child, Duration::from_secs(5)).await;
            bail!("the memory probe ended without a report")
        }
        Err(error) => {
            wait_or_kill(&mut child, Duration::ZERO).await;
            return Err(error);
        }
    };
    let connected = emulator.connections().await;
    // Closing its standard input ends the probe.
    drop(child.stdin.take());
    wait_or_kill(&mut child, Duration::from_secs(10)).await;
    emulator.settle(0, Duration::from_secs(30)).await?;
    let connected = connected?;
    let numbers: Vec<u64> = line
        .strip_prefix("ok ")
        .with_context(|| format!("probe: {line}"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [before, after, cpu_micros] = numbers[..] else {
        bail!("probe: {line}");
    };
    let measured = shards.saturating_sub(warmup.min(shards.saturating_sub(1)));
    Ok(Idle {
        per_shard_kib: after.saturating_sub(before) as f64 / f64::from(measured.max(1)),
        connected,
        idle_cpu: Duration::from_micros(cpu_micros),
    })
}

fn codec_flag(codec: Codec) -> &'static str {
    match codec {
        Codec::None => "none",
        Codec::Zlib => "zlib",
        Codec::Zstd => "zstd",
    }
}
