//! `discore-bench`: the benchmark suite, side by side with
//! twilight-gateway, against the emulator on loopback.
//!
//! ```text
//! cargo run --release -p discore-bench -- all            # the full suite, a few minutes
//! cargo run --release -p discore-bench -- all --smoke    # every case tiny, seconds
//! cargo run --release -p discore-bench -- throughput --codec zlib --events 50000
//! ```
//!
//! It prints Markdown tables with the machine, the date and the commit;
//! `docs/performance.md` explains them.

mod capture;
mod decode;
mod discore_side;
mod emulator;
mod harness;
mod limit;
mod memory;
mod metrics_cost;
mod micro;
mod report;
mod socket_loop;
mod stats;
mod tally;
mod twilight_side;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use decode::Codec;
use emulator::{Emulator, EmulatorArgs};
use report::{Report, Section, percent, thousands};
use stats::Throughput;
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};
use twilight_model::gateway::Intents;

/// The intents every benchmark client identifies with.
pub fn intents() -> Intents {
    Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT
}

/// A gateway client under test.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
pub enum Lib {
    /// discore's `Shard` actor.
    Discore,
    /// twilight-gateway 0.18.
    Twilight,
}

impl Lib {
    /// Its flag value.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Discore => "discore",
            Self::Twilight => "twilight",
        }
    }
}

/// Which clients to run.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
enum Libs {
    Both,
    Discore,
    Twilight,
}

impl Libs {
    fn has(self, lib: Lib) -> bool {
        matches!(
            (self, lib),
            (Self::Both, _) | (Self::Discore, Lib::Discore) | (Self::Twilight, Lib::Twilight)
        )
    }
}

/// The discore benchmark suite.
#[derive(Debug, Parser)]
#[command(name = "discore-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Run every case tiny (seconds), to prove the suite still works.
    #[arg(long, global = true)]
    smoke: bool,
    /// Timed runs per throughput case; the best counts. Default 5 (smoke 1);
    /// the memory, cold start and latency cases and each fleet latency rate
    /// default to 3.
    #[arg(long, global = true)]
    runs: Option<usize>,
    /// MESSAGE_CREATEs per throughput run. Default 200000 (smoke 2000).
    #[arg(long, global = true)]
    events: Option<u64>,
    /// Which clients to run.
    #[arg(long, global = true, value_enum, default_value_t = Libs::Both)]
    lib: Libs,
    /// Transport compressions for the throughput cases (repeat the flag).
    /// Default all three.
    #[arg(long, global = true, value_enum)]
    codec: Vec<Codec>,
    /// Shards of the large fleet in the fleet case (measured against one
    /// shard). Default 16 and 1000 (smoke 4).
    #[arg(long, global = true)]
    fleet_shards: Option<u32>,
    /// Total MESSAGE_CREATEs per second of the fleet latency case (repeat
    /// the flag). Default 10000, 25000 and 50000 (smoke 2000).
    #[arg(long, global = true)]
    fleet_rate: Vec<f64>,
    /// The largest fleet of the growth case (1, 10, 100, … up to it).
    /// Default 1000 (smoke 10).
    #[arg(long, global = true)]
    growth_max: Option<u32>,
    /// Idle shards in the memory case. Default 1000 (smoke 20).
    #[arg(long, global = true)]
    idle_shards: Option<u32>,
    /// Resume rounds. Default 50 (smoke 5).
    #[arg(long, global = true)]
    rounds: Option<usize>,
    /// Also write the report to this file.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every case below.
    All,
    /// Single-shard throughput, the tight-loop limit and the micro steps.
    Throughput,
    /// Only the tight-loop limit (no clients).
    Limit,
    /// Only the per-step micro measurements.
    Micro,
    /// 16 shards on 2 arbiters, events per second in total.
    Fleet,
    /// RSS per idle, heartbeating shard.
    Memory,
    /// How memory and CPU per heartbeat grow from 1 shard to many.
    Growth,
    /// Time for N shards at max_concurrency M to be READY.
    ColdStart,
    /// Drop-to-RESUMED time and send-to-handler latency.
    Resume,
    /// Send-to-handler latency at a fixed moderate rate.
    Latency,
    /// Metrics' cost: one shard's hot path with a scraper on and off
    /// (zlib-stream), and encoding /metrics for 1, 16 and 1000 shards.
    Metrics,
    /// One client and one flood of --events, nothing else: the shape to run
    /// under `valgrind --tool=callgrind` (the emulator is a child process,
    /// which callgrind does not trace by default). `limit` and
    /// `limit-discore` capture the stream first; profile them with
    /// `--toggle-collect='*limit::run_once*'`.
    Profile {
        /// discore, twilight, limit, limit-discore or socket-loop.
        #[arg(long, value_enum)]
        target: ProfileTarget,
        /// Transport compression.
        #[arg(long = "compression", value_enum, default_value_t = Codec::Zlib)]
        codec: Codec,
    },
    /// (internal) The emulator process.
    #[command(hide = true)]
    Emulator(EmulatorArgs),
    /// (internal) One memory measurement process.
    #[command(hide = true)]
    MemoryProbe(memory::ProbeArgs),
}

/// What `profile` runs.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
enum ProfileTarget {
    /// discore's shard and a subscriber actor.
    Discore,
    /// twilight-gateway's shard.
    Twilight,
    /// The tight loop with serde_json into twilight-model.
    Limit,
    /// The tight loop with discore's envelope scan and one-pass parse.
    LimitDiscore,
    /// discore's parse in one task reading a live socket, no actors.
    SocketLoop,
}

/// The sizes of every case.
#[derive(Debug)]
struct Settings {
    smoke: bool,
    runs: usize,
    events: u64,
    libs: Libs,
    codecs: Vec<Codec>,
    fleet_sizes: Vec<u32>,
    fleet_arbiters: usize,
    fleet_latency_rates: Vec<f64>,
    /// How long each fleet latency rate runs.
    fleet_latency_time: Duration,
    /// Runs per fleet latency rate; the one with the lowest p99 is shown.
    fleet_latency_runs: usize,
    growth_sizes: Vec<u32>,
    idle_shards: u32,
    idle_warmup: u32,
    memory_runs: usize,
    idle_heartbeat: Duration,
    cold_shards: u32,
    cold_concurrency: u32,
    cold_window: Duration,
    /// Cold starts per driver (interleaved); the fastest is shown, every
    /// one must pass.
    cold_runs: usize,
    rounds: usize,
    latency_rate: f64,
    latency_events: u64,
    /// Runs per client of the one-shard latency case (interleaved); the one
    /// with the lowest p99 is shown.
    latency_runs: usize,
}

/// The full-size value, or the tiny one in smoke mode.
fn pick<T>(smoke: bool, full: T, tiny: T) -> T {
    if smoke { tiny } else { full }
}

impl Settings {
    fn new(cli: &Cli) -> Self {
        let smoke = cli.smoke;
        Self {
            smoke,
            runs: cli.runs.unwrap_or(pick(smoke, 5, 1)),
            events: cli.events.unwrap_or(pick(smoke, 200_000, 2_000)),
            libs: cli.lib,
            codecs: if cli.codec.is_empty() {
                Codec::ALL.to_vec()
            } else {
                cli.codec.clone()
            },
            fleet_sizes: cli.fleet_shards.map_or_else(
                || pick(smoke, vec![1, 16, 1000], vec![1, 4]),
                |n| vec![1, n],
            ),
            fleet_arbiters: 2,
            fleet_latency_rates: if cli.fleet_rate.is_empty() {
                pick(smoke, vec![10_000.0, 25_000.0, 50_000.0], vec![2_000.0])
            } else {
                cli.fleet_rate.clone()
            },
            fleet_latency_time: pick(smoke, Duration::from_secs(3), Duration::from_secs(1)),
            fleet_latency_runs: cli.runs.unwrap_or(pick(smoke, 3, 1)),
            growth_sizes: cli.growth_max.map_or_else(
                || pick(smoke, vec![1, 10, 100, 1000], vec![1, 10]),
                |max| {
                    [1, 10, 100, 1000, 10_000]
                        .into_iter()
                        .filter(|n| *n <= max)
                        .collect()
                },
            ),
            idle_shards: cli.idle_shards.unwrap_or(pick(smoke, 1000, 20)),
            idle_warmup: pick(smoke, 20, 5),
            memory_runs: cli.runs.unwrap_or(pick(smoke, 3, 1)),
            idle_heartbeat: Duration::from_millis(pick(smoke, 1000, 200)),
            cold_shards: pick(smoke, 1000, 8),
            cold_concurrency: pick(smoke, 16, 4),
            cold_window: Duration::from_millis(pick(smoke, 100, 20)),
            cold_runs: cli.runs.unwrap_or(pick(smoke, 3, 1)),
            rounds: cli.rounds.unwrap_or(pick(smoke, 50, 5)),
            latency_rate: pick(smoke, 1000.0, 500.0),
            latency_events: pick(smoke, 3000, 200),
            latency_runs: cli.runs.unwrap_or(pick(smoke, 3, 1)),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The emulator logs every connection it aborts on purpose (the resume
    // case) as an error of actix-http's dispatcher: not news here.
    let filter = if matches!(cli.command, Cmd::Emulator(_)) {
        "warn,actix_http::h1::dispatcher=off"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(filter)).init();
    match &cli.command {
        Cmd::Emulator(args) => return emulator::serve(args),
        Cmd::MemoryProbe(args) => return memory::probe(args),
        _ => {}
    }
    let settings = Settings::new(&cli);
    let report = actix_rt::System::new().block_on(run(&cli.command, &settings))?;
    if matches!(cli.command, Cmd::Profile { .. }) {
        return Ok(());
    }
    let command: Vec<String> = std::env::args().skip(1).collect();
    let text = report.render(&format!("discore-bench {}", command.join(" ")));
    print!("{text}");
    if let Some(out) = &cli.out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

async fn run(command: &Cmd, settings: &Settings) -> anyhow::Result<Report> {
    let mut report = Report::default();
    if let Cmd::Profile { target, codec } = command {
        profile(*target, *codec, settings.events).await?;
        return Ok(report);
    }
    let all = matches!(command, Cmd::All);
    if all || matches!(command, Cmd::Throughput | Cmd::Limit | Cmd::Micro) {
        let parts = Parts {
            clients: all || matches!(command, Cmd::Throughput),
            micro: all || matches!(command, Cmd::Throughput | Cmd::Micro),
        };
        single_shard(settings, parts, &mut report).await?;
    }
    if all || matches!(command, Cmd::Fleet) {
        fleet(settings, &mut report).await?;
    }
    if all || matches!(command, Cmd::Growth) {
        report.push(growth(settings).await?);
    }
    if all || matches!(command, Cmd::Memory) {
        report.push(idle_memory(settings).await?);
    }
    if all || matches!(command, Cmd::ColdStart) {
        report.push(cold_start(settings).await?);
    }
    if all || matches!(command, Cmd::Resume) {
        report.push(resume(settings).await?);
    }
    if all || matches!(command, Cmd::Latency) {
        report.push(latency(settings).await?);
    }
    if all || matches!(command, Cmd::Metrics) {
        progress("metrics: hot path with and without a scraper, then encode times");
        let mut emulator = Emulator::spawn(&EmulatorArgs::default()).await?;
        let (hot, encode) = metrics_cost::run(
            &mut emulator,
            Codec::Zlib,
            settings.events,
            settings.runs,
            settings.smoke,
        )
        .await?;
        emulator.stop().await;
        report.push(hot);
        report.push(encode);
    }
    Ok(report)
}

fn progress(what: &str) {
    eprintln!("discore-bench: {what}");
}

#[derive(Clone, Copy, Debug)]
struct Parts {
    clients: bool,
    micro: bool,
}

/// Cases 1, 2 and 7 (throughput), plus the micro steps: they share the
/// captured streams.
async fn single_shard(
    settings: &Settings,
    parts: Parts,
    report: &mut Report,
) -> anyhow::Result<()> {
    let args = EmulatorArgs::default();
    let mut emulator = Emulator::spawn(&args).await?;
    let guilds = usize::try_from(args.guilds)?;
    let mut table = Section::new(
        "Throughput, one shard (MESSAGE_CREATE events per second, best of runs)",
        &[
            "compression",
            "discore",
            "twilight-gateway",
            "limit (tight loop)",
            "discore / limit",
            "twilight / limit",
            "discore / twilight",
            "limit with discore's parser",
            "discore / that limit",
            "socket loop (discore's parser)",
            "discore / socket loop",
            "socket loop / limit with discore's parser",
            "discore, event not subscribed",
            "emulator ceiling",
        ],
    );
    let mut captures = Vec::new();
    let mut codecs = settings.codecs.clone();
    if parts.micro && !codecs.contains(&Codec::None) {
        codecs.insert(0, Codec::None);
    }
    let mut cpu = Section::new(
        "Client CPU time per event (µs, least of runs; immune to time-slicing by other processes)",
        &[
            "compression",
            "discore",
            "twilight-gateway",
            "limit (tight loop)",
            "discore − limit",
            "twilight − limit",
            "limit with discore's parser",
            "discore − that limit",
            "socket loop",
            "discore − socket loop",
            "discore, event not subscribed",
        ],
    );
    for codec in codecs {
        progress(&format!("capturing the {} flood", codec.label()));
        let capture = capture::capture(&mut emulator, codec, settings.events, guilds).await?;
        // Interleaved rounds: the limits and the socket loop, discore,
        // twilight-gateway, then again; the best of each counts.
        let mut limits = Vec::new();
        let mut own_limits = Vec::new();
        let mut socket_loops = Vec::new();
        let mut discores = Vec::new();
        let mut unsubscribeds = Vec::new();
        let mut twilights = Vec::new();
        let clients = parts.clients && settings.codecs.contains(&codec);
        for round in 1..=settings.runs.max(1) {
            progress(&format!("{}, round {round}", codec.label()));
            limits.push(limit::best(&capture, 1, limit::Parser::TwilightModel)?);
            own_limits.push(limit::best(&capture, 1, limit::Parser::Discore)?);
            if settings.codecs.contains(&codec) {
                socket_loops.push(
                    socket_loop::run_once(&mut emulator, codec, settings.events, guilds).await?,
                );
            }
            if clients && settings.libs.has(Lib::Discore) {
                discores.push(
                    discore_side::throughput(&mut emulator, codec, settings.events, 1).await?,
                );
                unsubscribeds.push(
                    discore_side::unsubscribed_throughput(&mut emulator, codec, settings.events, 1)
                        .await?,
                );
            }
            if clients && settings.libs.has(Lib::Twilight) && twilight_side::supports(codec) {
                twilights.push(
                    twilight_side::throughput(&mut emulator, codec, settings.events, 1).await?,
                );
            }
        }
        let best = |runs: &[Throughput]| (!runs.is_empty()).then(|| Throughput::best(runs));
        let limit = Throughput::best(&limits);
        let own_limit = Throughput::best(&own_limits);
        let socket_loop = best(&socket_loops);
        let discore = best(&discores);
        let unsubscribed = best(&unsubscribeds);
        let twilight = best(&twilights);
        if settings.codecs.contains(&codec) {
            let rate =
                |v: Option<Throughput>| v.map_or_else(|| "n/a".to_owned(), |v| thousands(v.rate));
            let ratio = |a: Option<Throughput>, b: Option<Throughput>| match (a, b) {
                (Some(a), Some(b)) if b.rate > 0.0 => percent(a.rate / b.rate),
                _ => "n/a".to_owned(),
            };
            table.row(vec![
                codec.label().to_owned(),
                rate(discore),
                rate(twilight),
                thousands(limit.rate),
                ratio(discore, Some(limit)),
                ratio(twilight, Some(limit)),
                ratio(discore, twilight),
                thousands(own_limit.rate),
                ratio(discore, Some(own_limit)),
                rate(socket_loop),
                ratio(discore, socket_loop),
                ratio(socket_loop, Some(own_limit)),
                rate(unsubscribed),
                thousands(capture.receive_rate),
            ]);
            let us = |v: Option<Throughput>| {
                v.map_or_else(
                    || "n/a".to_owned(),
                    |v| format!("{:.1}", v.cpu_per_event.as_secs_f64() * 1e6),
                )
            };
            let over = |v: Option<Throughput>, limit: Throughput| {
                v.map_or_else(
                    || "n/a".to_owned(),
                    |v| {
                        format!(
                            "{:+.1}",
                            (v.cpu_per_event.as_secs_f64() - limit.cpu_per_event.as_secs_f64())
                                * 1e6
                        )
                    },
                )
            };
            cpu.row(vec![
                codec.label().to_owned(),
                us(discore),
                us(twilight),
                us(Some(limit)),
                over(discore, limit),
                over(twilight, limit),
                us(Some(own_limit)),
                over(discore, own_limit),
                us(socket_loop),
                socket_loop.map_or_else(
                    || "n/a".to_owned(),
                    |socket_loop| over(discore, socket_loop),
                ),
                us(unsubscribed),
            ]);
        }
        captures.push(capture);
    }
    table.note(format!(
        "{} events per run, {} runs; ~{} bytes per MESSAGE_CREATE payload. Targets: discore ≥ twilight-gateway (aim 1.2×) and ≥ 85% of the limit, with and without zlib-stream. \"limit\": serde_json into twilight-model in one pass (the reference); \"limit with discore's parser\": discore's envelope scan and one-pass parse in the same tight loop. \"socket loop\": that parse in one task reading a live loopback socket (64 KiB reads, the same WebSocket codec), no actors: what taking events off a socket costs any client. \"emulator ceiling\": frames per second a receive-only client gets from the emulator (no inflate, no parse).",
        settings.events,
        settings.runs,
        captures
            .first()
            .and_then(|c| c.payloads().ok())
            .map_or(0, |p| p.iter().map(String::len).sum::<usize>() / p.len().max(1)),
    ));
    report.push(table);
    if parts.clients {
        cpu.note("CPU time of the client process (all its threads) per event, from /proc/self/stat; the emulator runs in another process and is not counted.");
        report.push(cpu);
    }
    if parts.micro {
        progress("micro steps");
        report.push(micro::run(&captures, settings.runs)?);
    }
    emulator.stop().await;
    Ok(())
}

/// One flood through one client (or the limit), for callgrind.
async fn profile(target: ProfileTarget, codec: Codec, events: u64) -> anyhow::Result<()> {
    let mut emulator = Emulator::spawn(&EmulatorArgs::default()).await?;
    match target {
        ProfileTarget::Discore => {
            discore_side::throughput(&mut emulator, codec, events, 1).await?;
        }
        ProfileTarget::Twilight => {
            twilight_side::throughput(&mut emulator, codec, events, 1).await?;
        }
        ProfileTarget::Limit => {
            let guilds = usize::try_from(EmulatorArgs::default().guilds)?;
            let capture = capture::capture(&mut emulator, codec, events, guilds).await?;
            limit::run_once(&capture, limit::Parser::TwilightModel)?;
        }
        ProfileTarget::LimitDiscore => {
            let guilds = usize::try_from(EmulatorArgs::default().guilds)?;
            let capture = capture::capture(&mut emulator, codec, events, guilds).await?;
            limit::run_once(&capture, limit::Parser::Discore)?;
        }
        ProfileTarget::SocketLoop => {
            let guilds = usize::try_from(EmulatorArgs::default().guilds)?;
            socket_loop::run_once(&mut emulator, codec, events, guilds).await?;
        }
    }
    emulator.stop().await;
    Ok(())
}

/// Case 3: the fleet's throughput against one shard's in the same
/// harness, and the fleet's latency at a fixed rate.
async fn fleet(settings: &Settings, report: &mut Report) -> anyhow::Result<()> {
    let largest = settings.fleet_sizes.iter().copied().max().unwrap_or(1);
    let args = EmulatorArgs {
        guilds: 64,
        workers: 2,
        max_concurrency: largest,
        ..EmulatorArgs::default()
    };
    let mut emulator = Emulator::spawn(&args).await?;
    let mut table = Section::new(
        "Throughput, a fleet (discore, zlib-stream, MESSAGE_CREATE events per second in total)",
        &[
            "shards",
            "arbiters (threads)",
            "events per run",
            "events/s",
            "per shard",
            "of one shard's rate",
            "CPU per event",
            "emulator CPU per event",
            "cores busy",
        ],
    );
    let mut single = None;
    for &shards in &settings.fleet_sizes {
        let arbiters = if shards == 1 {
            1
        } else {
            settings.fleet_arbiters
        };
        progress(&format!("fleet, {shards} shards on {arbiters} arbiters"));
        let per_shard = (settings.events / u64::from(shards)).max(100);
        let fleet = discore_side::Fleet::start(&emulator, Codec::Zlib, shards, arbiters).await?;
        let measured = fleet
            .throughput(&mut emulator, per_shard, settings.runs)
            .await;
        fleet.stop(&mut emulator).await?;
        let measured = measured?;
        if shards == 1 {
            single = Some(measured.rate);
        }
        table.row(vec![
            shards.to_string(),
            arbiters.to_string(),
            thousands((per_shard * u64::from(shards)) as f64),
            thousands(measured.rate),
            thousands(measured.rate / f64::from(shards)),
            single.map_or("n/a".to_owned(), |one| percent(measured.rate / one)),
            format!("{:.1} µs", measured.cpu_per_event.as_secs_f64() * 1e6),
            format!(
                "{:.1} µs",
                measured.emulator_cpu_per_event.as_secs_f64() * 1e6
            ),
            format!(
                "{:.2}",
                measured.rate
                    * (measured.cpu_per_event + measured.emulator_cpu_per_event).as_secs_f64()
            ),
        ]);
    }
    table.note(format!(
        "Best of {} floods per size; every shard gets the same number of events. Shard i runs on arbiter i mod the arbiters, each arbiter with one counting actor; the emulator (2 workers) shares the same 2 cores. Cores busy: both processes' CPU per event times the rate (least CPU and best rate of the runs, so an estimate). Target: {} shards on 2 arbiters ≥ 90% of one shard's rate.",
        settings.runs, largest
    ));
    report.push(table);

    let fleet =
        discore_side::Fleet::start(&emulator, Codec::Zlib, largest, settings.fleet_arbiters)
            .await?;
    let mut table = Section::new(
        format!(
            "Event latency across a fleet, emulator send to handler ({largest} shards on {} arbiters, zlib-stream, {} s per run)",
            settings.fleet_arbiters,
            settings.fleet_latency_time.as_secs()
        ),
        &[
            "MESSAGE_CREATE/s in total",
            "probes",
            "p50",
            "p90",
            "p99",
            "max",
            "p99 of every run",
            "p99 of every run, from the build",
            "client CPU",
            "emulator CPU",
        ],
    );
    let mut failure = None;
    // First the highest rate with every session's stream the same (see
    // `probe_filler` in emulator.rs): what lockstep compressors cost. It
    // has to come first: once the streams have differed, the sessions'
    // windows stay out of step.
    let highest = settings
        .fleet_latency_rates
        .iter()
        .copied()
        .fold(f64::NAN, f64::max);
    let cases = (!highest.is_nan())
        .then_some((highest, harness::Streams::Identical))
        .into_iter()
        .chain(
            settings
                .fleet_latency_rates
                .iter()
                .map(|&rate| (rate, harness::Streams::Varied)),
        );
    for (rate, streams) in cases {
        let probes = match streams {
            harness::Streams::Varied => "length by shard",
            harness::Streams::Identical => "all alike",
        };
        progress(&format!(
            "fleet latency, {largest} shards at {rate} events/s, probes {probes}"
        ));
        let count = (rate * settings.fleet_latency_time.as_secs_f64()).max(1.0) as u64;
        // Every run: its p99 from the send and from the build, its samples
        // from the send, both processes' cores.
        let mut runs: Vec<(Duration, Duration, Vec<Duration>, f64, f64)> = Vec::new();
        for _ in 0..settings.fleet_latency_runs.max(1) {
            let cpu = (stats::cpu_time(), emulator.cpu_time());
            let started = Instant::now();
            let samples = fleet.latency(&mut emulator, rate, count, streams).await;
            let elapsed = started.elapsed().as_secs_f64().max(1e-9);
            let client = stats::cpu_time().saturating_sub(cpu.0).as_secs_f64() / elapsed;
            let server = emulator.cpu_time().saturating_sub(cpu.1).as_secs_f64() / elapsed;
            match samples {
                Ok(mut samples) => {
                    let p99 = stats::percentile(&mut samples.from_send, 99.0);
                    let from_build = stats::percentile(&mut samples.from_build, 99.0);
                    runs.push((p99, from_build, samples.from_send, client, server));
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if failure.is_some() {
            break;
        }
        let milliseconds = |p99: &Duration| format!("{:.1}", p99.as_secs_f64() * 1e3);
        let every_p99: Vec<String> = runs.iter().map(|(p99, ..)| milliseconds(p99)).collect();
        let every_from_build: Vec<String> = runs
            .iter()
            .map(|(_, from_build, ..)| milliseconds(from_build))
            .collect();
        let Some((_, _, mut samples, client, server)) =
            runs.into_iter().min_by_key(|(p99, ..)| *p99)
        else {
            continue;
        };
        table.row(vec![
            thousands(rate),
            probes.to_owned(),
            stats::micros(stats::percentile(&mut samples, 50.0)),
            stats::micros(stats::percentile(&mut samples, 90.0)),
            stats::micros(stats::percentile(&mut samples, 99.0)),
            stats::micros(stats::percentile(&mut samples, 100.0)),
            format!("{} ms", every_p99.join(" / ")),
            format!("{} ms", every_from_build.join(" / ")),
            format!("{client:.2} cores"),
            format!("{server:.2} cores"),
        ]);
    }
    fleet.stop(&mut emulator).await?;
    if let Some(error) = failure {
        return Err(error);
    }
    table.note(format!("The emulator dispatches the messages to the shards in turn at the given total rate. It notes the wall clock when the connection's socket writer takes each one's frame, in the turn in which it writes it to the socket; each arbiter's handler notes the wall clock when it sees the typed event, and the two are matched by shard and sequence: p50 to max and \"p99 of every run\" are from that send. \"From the build\": from the stamp each message carries, read just before the emulator built it, which adds the emulator's own queueing and compression. {} runs per rate: the row is the run with the lowest p99 from the send, and the p99 of every run follows it in order. CPU columns: each process's CPU time during that run over its wall time (2 cores in all, shared). Probes: \"length by shard\", each shard's probes carry 0 to 399 bytes of filler, the same for one shard, so the sessions' compressed streams differ as different channels' would; \"all alike\", every session gets the same bytes, and every session's compressor slides its 32 KiB window in the same few milliseconds. Target: p99 ≤ 5 ms at 50,000 events/s.", settings.fleet_latency_runs.max(1)));
    report.push(table);
    emulator.stop().await;
    Ok(())
}

/// Case 4 (and 7's memory half).
async fn idle_memory(settings: &Settings) -> anyhow::Result<Section> {
    let args = EmulatorArgs {
        heartbeat_ms: u64::try_from(settings.idle_heartbeat.as_millis())?,
        ..EmulatorArgs::default()
    };
    let mut emulator = Emulator::spawn(&args).await?;
    let settle = settings.idle_heartbeat.mul_f64(2.5);
    let mut table = Section::new(
        format!(
            "Memory per idle shard (VmRSS growth per connected, heartbeating shard, {} shards)",
            settings.idle_shards
        ),
        &[
            "compression",
            "started",
            "discore",
            "twilight-gateway",
            "discore / twilight",
            "still connected",
        ],
    );
    let starts = [
        ("together, from before the first", memory::Start::Together),
        (
            "in batches of 50, after warm-up",
            memory::Start::Batched {
                warmup: settings.idle_warmup,
                batch: 50,
            },
        ),
    ];
    for (start_label, start) in starts {
        for codec in [Codec::None, Codec::Zlib] {
            let mut best: [Option<f64>; 2] = [None, None];
            let mut connected = Vec::new();
            // Interleaved: discore, twilight, discore, twilight, …; the
            // least growth of each counts.
            for _ in 0..settings.memory_runs {
                for (slot, lib) in [Lib::Discore, Lib::Twilight].into_iter().enumerate() {
                    if !settings.libs.has(lib)
                        || (lib == Lib::Twilight && !twilight_side::supports(codec))
                    {
                        continue;
                    }
                    progress(&format!(
                        "idle memory, {}, {}, {start_label}",
                        lib.name(),
                        codec.label()
                    ));
                    let idle = memory::measure(
                        &mut emulator,
                        lib,
                        codec,
                        settings.idle_shards,
                        start,
                        settle,
                    )
                    .await?;
                    let kib = idle.per_shard_kib;
                    best[slot] = Some(best[slot].map_or(kib, |b: f64| b.min(kib)));
                    connected.push(format!("{}: {}", lib.name(), idle.connected));
                }
            }
            let cell =
                |value: Option<f64>| value.map_or("n/a".to_owned(), |v| format!("{v:.1} KiB"));
            let ratio = match (best[0], best[1]) {
                (Some(a), Some(b)) if b > 0.0 => format!("{a:.1}/{b:.1} = {}", percent(a / b)),
                _ => "n/a".to_owned(),
            };
            let twilight_cell = if codec == Codec::None && cfg!(feature = "twilight-zlib") {
                format!("{} (zlib build: decompressor allocated)", cell(best[1]))
            } else {
                cell(best[1])
            };
            connected.dedup();
            table.row(vec![
                codec.label().to_owned(),
                start_label.to_owned(),
                cell(best[0]),
                twilight_cell,
                ratio,
                connected.join(", "),
            ]);
        }
    }
    table.note(format!(
        "Each measurement is a fresh process, least of {} interleaved runs (discore, twilight, discore, …). \"Together\": every shard started at once, VmRSS read before the first; \"batches\": {} warm-up shards first, then the growth over the rest started 50 at a time. Read after {} ms of idling (heartbeat interval {} ms). Target: discore ≤ twilight-gateway, with and without compression.",
        settings.memory_runs,
        settings.idle_warmup,
        settle.as_millis(),
        settings.idle_heartbeat.as_millis()
    ));
    emulator.stop().await;
    Ok(table)
}

/// How the cost per shard grows with the fleet: memory per idle shard
/// (started together, measured from before the first) and CPU time per
/// heartbeat, from 1 shard up.
async fn growth(settings: &Settings) -> anyhow::Result<Section> {
    let args = EmulatorArgs {
        heartbeat_ms: u64::try_from(settings.idle_heartbeat.as_millis())?,
        max_concurrency: settings.growth_sizes.iter().copied().max().unwrap_or(1),
        ..EmulatorArgs::default()
    };
    let mut emulator = Emulator::spawn(&args).await?;
    let settle = settings.idle_heartbeat.mul_f64(2.5);
    let mut table = Section::new(
        "Growth with the fleet (discore, idle shards started together, VmRSS from before the first)",
        &[
            "shards",
            "compression",
            "memory per shard",
            "CPU per heartbeat",
            "still connected",
        ],
    );
    for &shards in &settings.growth_sizes {
        for codec in [Codec::None, Codec::Zlib] {
            progress(&format!("growth, {shards} shards, {}", codec.label()));
            let idle = memory::measure(
                &mut emulator,
                Lib::Discore,
                codec,
                shards,
                memory::Start::Together,
                settle,
            )
            .await?;
            let heartbeats =
                f64::from(shards) * settle.as_secs_f64() / settings.idle_heartbeat.as_secs_f64();
            table.row(vec![
                shards.to_string(),
                codec.label().to_owned(),
                format!("{:.1} KiB", idle.per_shard_kib),
                format!(
                    "{:.1} µs",
                    idle.idle_cpu.as_secs_f64() * 1e6 / heartbeats.max(1.0)
                ),
                idle.connected.to_string(),
            ]);
        }
    }
    table.note(format!(
        "One fresh probe process per row. CPU per heartbeat: the probe's CPU time over {} ms of idling divided by the heartbeats due in it (shards × idle time ÷ the {} ms interval): the heartbeat, its ACK, and the one timer each shard keeps armed (actix's run_later at the machine's next deadline). Small fleets are dominated by the process's fixed costs.",
        settle.as_millis(),
        settings.idle_heartbeat.as_millis()
    ));
    emulator.stop().await;
    Ok(table)
}

/// The cold start must be ready within this share of the ideal.
const TARGET_RATIO: f64 = 1.05;

/// One cold start as the case saw it.
struct ColdRun {
    /// From the start of the fleet until it is ready, as the row defines.
    elapsed: Duration,
    /// The emulator's violations: how many, and of which kinds.
    violations: (usize, String),
    /// The gaps between a bucket's Identifies as the emulator stamped them.
    gaps: String,
}

/// Case 5.
async fn cold_start(settings: &Settings) -> anyhow::Result<Section> {
    let window_ms = u64::try_from(settings.cold_window.as_millis())?;
    let args = EmulatorArgs {
        guilds: u64::from(settings.cold_shards),
        max_concurrency: settings.cold_concurrency,
        // The same window the client is told: equal limits.
        identify_window_ms: window_ms,
        ..EmulatorArgs::default()
    };
    let windows = settings.cold_shards.div_ceil(settings.cold_concurrency);
    let ideal = settings.cold_window * windows;
    let last_slot = settings.cold_window * windows.saturating_sub(1);
    let mut table = Section::new(
        format!(
            "Cold start: {} shards, max_concurrency {}, identify window {} (zlib-stream)",
            settings.cold_shards,
            settings.cold_concurrency,
            stats::millis(settings.cold_window)
        ),
        &[
            "driven by",
            "ready after",
            "every run",
            "ideal ceil(N/M) windows",
            "measured / ideal",
            "after the last slot",
            "emulator violations",
            "bucket gaps as stamped: count, smallest, median",
        ],
    );
    let mut failures = Vec::new();
    // Every run of each driver.
    let mut runs: [Vec<ColdRun>; 2] = [Vec::new(), Vec::new()];
    for run in 0..settings.cold_runs.max(1) {
        for (slot, manager) in [true, false].into_iter().enumerate() {
            let mut emulator = Emulator::spawn(&args).await?;
            progress(&format!(
                "cold start, {}, run {}",
                if manager { "ShardManager" } else { "Shards" },
                run + 1
            ));
            let elapsed = if manager {
                discore_side::manager_cold_start(
                    &emulator,
                    settings.cold_shards,
                    settings.cold_concurrency,
                    settings.cold_window,
                )
                .await?
            } else {
                discore_side::cold_start(
                    &mut emulator,
                    settings.cold_shards,
                    settings.cold_concurrency,
                    settings.cold_window,
                )
                .await?
            };
            let violations = emulator.violations().await?;
            let gaps = emulator.identify_gaps().await?;
            emulator.stop().await;
            let ratio = elapsed.as_secs_f64() / ideal.as_secs_f64();
            let row = if manager { "ShardManager" } else { "Shards" };
            if violations.0 > 0 {
                failures.push(format!(
                    "{row}, run {}: {} violations ({})",
                    run + 1,
                    violations.0,
                    violations.1
                ));
            }
            // A smoke run is a debug build over two tiny windows, where fixed
            // costs are most of the time: it checks the case still runs and
            // overruns nothing; the time is judged at full size.
            if ratio > TARGET_RATIO && !settings.smoke {
                failures.push(format!(
                    "{row}, run {}: ready after {} ({}), over {} of ideal",
                    run + 1,
                    stats::millis(elapsed),
                    percent(ratio),
                    percent(TARGET_RATIO)
                ));
            }
            runs[slot].push(ColdRun {
                elapsed,
                violations,
                gaps,
            });
        }
    }
    for (manager, runs) in [true, false].into_iter().zip(runs) {
        let every: Vec<String> = runs.iter().map(|run| stats::millis(run.elapsed)).collect();
        let Some(ColdRun {
            elapsed,
            violations,
            gaps,
        }) = runs.into_iter().min_by_key(|run| run.elapsed)
        else {
            continue;
        };
        table.row(vec![
            if manager {
                "ShardManager (until WaitUntilReady: READY and guilds)".to_owned()
            } else {
                "N Shards, one InMemoryIdentifyQueue (until every READY)".to_owned()
            },
            stats::millis(elapsed),
            every.join(" / "),
            stats::millis(ideal),
            percent(elapsed.as_secs_f64() / ideal.as_secs_f64()),
            stats::millis(elapsed.saturating_sub(last_slot)),
            if violations.0 == 0 {
                "0".to_owned()
            } else {
                format!("{} ({})", violations.0, violations.1)
            },
            gaps,
        ]);
    }
    table.note(
        "The ShardManager asks the emulator's `GET /gateway/bot`, then starts the shards on 2 arbiters under its identify queue (status polled every 2 ms); its row ends at `WaitUntilReady` (every READY, and each shard's one guild). The second row starts N `Shard`s in id order sharing one `InMemoryIdentifyQueue::with_window(M, window)` and ends at the last READY. The emulator (a child process) enforces the same window the client is told, per bucket, timed when it processes each Identify. The queue counts an Identify as sent when the gateway answers it (READY or op 9) and spaces the bucket's next one window + `IDENTIFY_MARGIN` after that; the gap column shows what that leaves as the emulator stamps it. The last bucket's slot opens after ceil(N/M) − 1 windows; \"after the last slot\" is the handshake that follows it. Each driver runs the given number of times, interleaved, each against a fresh emulator: the row is the fastest run, \"every run\" lists them all in order, and the case fails if any run has a violation or is above 105% of ideal (a `--smoke` run only on a violation).",
    );
    if !failures.is_empty() {
        eprintln!("{}", table.markdown());
        anyhow::bail!("cold start failed: {}", failures.join("; "));
    }
    Ok(table)
}

/// Case 6, first half.
async fn resume(settings: &Settings) -> anyhow::Result<Section> {
    // Heartbeats every 100 ms: each round waits for one to be acknowledged
    // on the resumed connection (see `discore_side::resume`).
    let args = EmulatorArgs {
        heartbeat_ms: 100,
        ..EmulatorArgs::default()
    };
    let mut emulator = Emulator::spawn(&args).await?;
    progress("resume");
    let samples = discore_side::resume(&mut emulator, Codec::Zlib, settings.rounds).await?;
    emulator.stop().await;
    let mut from_drop: Vec<Duration> = samples.iter().map(|s| s.from_drop).collect();
    let mut from_notice: Vec<Duration> = samples.iter().map(|s| s.from_notice).collect();
    let mut table = Section::new(
        "Resume on loopback (discore, zlib-stream)",
        &["rounds", "measured from", "p50", "p99", "max"],
    );
    for (label, samples) in [
        ("the emulator's drop command", &mut from_drop),
        ("the shard noticing the loss", &mut from_notice),
    ] {
        table.row(vec![
            settings.rounds.to_string(),
            label.to_owned(),
            stats::millis(stats::percentile(samples, 50.0)),
            stats::millis(stats::percentile(samples, 99.0)),
            stats::millis(stats::percentile(samples, 100.0)),
        ]);
    }
    table.note("The emulator drops the TCP connection without a close frame; the time runs until the shard reports RESUMED (Lifecycle::Resumed). Each round starts from a healthy session (a heartbeat acknowledged after the last resume, 100 ms heartbeats), whose first reconnect goes out at once; a connection that never proved healthy would wait the backoff. Target: p99 under 50 ms.");
    Ok(table)
}

/// Case 6, second half.
async fn latency(settings: &Settings) -> anyhow::Result<Section> {
    let mut emulator = Emulator::spawn(&EmulatorArgs::default()).await?;
    let mut table = Section::new(
        format!(
            "Event latency, emulator send to handler ({} MESSAGE_CREATE/s, {} events, zlib-stream)",
            settings.latency_rate, settings.latency_events
        ),
        &["client", "p50", "p99", "max", "p99 of every run"],
    );
    let codec = if twilight_side::supports(Codec::Zlib) {
        Codec::Zlib
    } else {
        Codec::None
    };
    let libs: Vec<Lib> = [Lib::Discore, Lib::Twilight]
        .into_iter()
        .filter(|lib| settings.libs.has(*lib))
        .collect();
    // Every run of each client, interleaved: its p99 and its samples.
    let mut runs: Vec<Vec<(Duration, Vec<Duration>)>> = vec![Vec::new(); libs.len()];
    for run in 0..settings.latency_runs.max(1) {
        for (slot, lib) in libs.iter().enumerate() {
            progress(&format!("latency, {}, run {}", lib.name(), run + 1));
            let mut samples = match lib {
                Lib::Discore => {
                    discore_side::latency(
                        &mut emulator,
                        codec,
                        settings.latency_rate,
                        settings.latency_events,
                    )
                    .await?
                }
                Lib::Twilight => {
                    twilight_side::latency(
                        &mut emulator,
                        codec,
                        settings.latency_rate,
                        settings.latency_events,
                    )
                    .await?
                }
            };
            let p99 = stats::percentile(&mut samples, 99.0);
            runs[slot].push((p99, samples));
        }
    }
    for (lib, runs) in libs.iter().zip(runs) {
        let every: Vec<String> = runs.iter().map(|(p99, _)| stats::micros(*p99)).collect();
        let Some((_, mut samples)) = runs.into_iter().min_by_key(|(p99, _)| *p99) else {
            continue;
        };
        table.row(vec![
            lib.name().to_owned(),
            stats::micros(stats::percentile(&mut samples, 50.0)),
            stats::micros(stats::percentile(&mut samples, 99.0)),
            stats::micros(stats::percentile(&mut samples, 100.0)),
            every.join(" / "),
        ]);
    }
    table.note("The emulator stamps each message's content with the wall clock just before it builds the MESSAGE_CREATE; the handler subtracts it from the wall clock when it sees the typed event. Both processes read the same clock. The clients run in turn, the given number of times each: the row is the run with the lowest p99, and the p99 of every run follows.");
    emulator.stop().await;
    Ok(table)
}
