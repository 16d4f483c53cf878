//! A cluster process for discore-cluster's multi-process tests (and a
//! small reference of how the pieces fit): `gateway` runs a `ClusterNode`,
//! `worker` runs an `EventSource` that prints what it handles.
//!
//! ```text
//! discore-cluster-node gateway --redis URL --namespace NS --rest URL --total 24
//!     [--nats URL] [--node-id ID] [--range 0..8] [--lease-ttl-ms 1000]
//!     [--checkpoint-ms 50] [--status-ms 100] [--identify-window-ms 100]
//!     [--max-concurrency 4] [--arbiters 1] [--token TOKEN]
//! discore-cluster-node worker --redis URL --nats URL --namespace NS --total 24
//!     [--group G] [--node-id ID] [--lease-ttl-ms 1000] [--handle-ms 0]
//! discore-cluster-node reshard --nats URL --namespace NS --shards 32
//! ```
//!
//! Output (stdout, one line each): `STARTED <node-id>`, `STOPPED <node-id>`,
//! and for a worker `EVENT <shard> <sequence> <name> <unix µs> <data>` per event
//! handled. SIGTERM stops cleanly (hand-over); SIGKILL is a crash.
//! `reshard` asks the running cluster to re-shard to `--shards` and prints
//! `RESHARDING <shards>` once a gateway node accepted.

use actix::prelude::*;
use discore_cluster::{
    ClusterNode, ClusterRedis, CommandClient, EventBus, EventSource, EventSourceConfig, NodeConfig,
    ShardAssignment, ShutdownNode, StopSource, StreamSettings,
};
use discore_gateway::{Backoff, GatewayEvent, Intents, ShardConfig, Token};
use discore_manager::{
    DiscoveryConfig, IdentifyConfig, IdentifyLimits, ManagerConfig, Placement, RestartPolicy,
    SupervisionConfig,
};
use std::{collections::HashMap, error::Error, io::Write as _, time::Duration};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

struct Args(HashMap<String, String>);

impl Args {
    fn parse() -> Result<(String, Self)> {
        let mut raw = std::env::args().skip(1);
        let mode = raw
            .next()
            .ok_or("usage: discore-cluster-node gateway|worker|reshard --flag value ...")?;
        let mut map = HashMap::new();
        while let Some(flag) = raw.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {flag}"))?;
            let value = raw
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_owned(), value);
        }
        Ok((mode, Self(map)))
    }

    fn text(&self, name: &str) -> Result<String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("--{name} is required").into())
    }

    fn number(&self, name: &str, default: u64) -> Result<u64> {
        match self.0.get(name) {
            Some(value) => Ok(value.parse()?),
            None => Ok(default),
        }
    }

    fn millis(&self, name: &str, default: u64) -> Result<Duration> {
        self.number(name, default).map(Duration::from_millis)
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

const INTENTS: Intents = Intents::GUILDS.union(Intents::GUILD_MESSAGES);

async fn gateway(args: Args) -> Result<()> {
    let redis = ClusterRedis::connect(&args.text("redis")?, &args.text("namespace")?).await?;
    let total = u32::try_from(args.number("total", 1)?)?;
    let token = Token::new(args.0.get("token").map_or("mock-token", String::as_str))?;
    let shard_config = ShardConfig::new(INTENTS)
        .backoff(Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        })
        .invalid_session_delay(Duration::from_millis(10)..=Duration::from_millis(30))
        .handshake_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .send_rate_limit(120, Duration::from_millis(6300));
    let manager = ManagerConfig::new(token, INTENTS)
        .discovery(DiscoveryConfig::at(args.text("rest")?))
        .shard_config(shard_config)
        .identify(IdentifyConfig::in_memory(IdentifyLimits {
            window: args.millis("identify-window-ms", 100)?,
            max_concurrency: Some(u32::try_from(args.number("max-concurrency", 1)?)?),
            ..IdentifyLimits::default()
        }))
        .placement(Placement::Arbiters(usize::try_from(
            args.number("arbiters", 1)?,
        )?))
        .supervision(SupervisionConfig {
            restart: RestartPolicy {
                backoff: Backoff {
                    base: Duration::from_millis(20),
                    cap: Duration::from_millis(100),
                },
                max_restarts: 5,
                window: Duration::from_secs(60),
            },
            status_interval: Duration::from_millis(50),
            shutdown_grace: Duration::from_millis(20),
            ..SupervisionConfig::default()
        });
    let mut config = NodeConfig::new(manager, total)
        .lease_ttl(args.millis("lease-ttl-ms", 1000)?)
        .checkpoint_interval(args.millis("checkpoint-ms", 50)?)
        .status_interval(args.millis("status-ms", 100)?);
    if let Some(id) = args.0.get("node-id") {
        config = config.node_id(id.clone());
    }
    if let Some(range) = args.0.get("range") {
        let (start, end) = range.split_once("..").ok_or("--range is START..END")?;
        config = config.assignment(ShardAssignment::Range(start.parse()?..end.parse()?));
    }
    if let Some(url) = args.0.get("nats") {
        let bus = EventBus::connect(url, &args.text("namespace")?).await?;
        bus.ensure_stream(StreamSettings::default()).await?;
        config = config.event_bus(bus);
    }
    let id = args.0.get("node-id").cloned().unwrap_or_default();
    let node = ClusterNode::start(config, redis).await?;
    say(&format!("STARTED {id}"));
    terminated().await?;
    let report = node.send(ShutdownNode).await??;
    eprintln!("node {id}: {report:?}");
    say(&format!("STOPPED {id}"));
    Ok(())
}

/// Prints every handled event, after an optional delay (a slow handler).
struct Printer {
    delay: Duration,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for Printer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, event: GatewayEvent, _: &mut Context<Self>) -> Self::Result {
        let delay = self.delay;
        Box::pin(async move {
            if !delay.is_zero() {
                actix_rt::time::sleep(delay).await;
            }
            // The data as Discord sent it (JSON has no raw line breaks).
            let data = event.raw_data().map_or_else(
                || "-".to_owned(),
                |d| String::from_utf8_lossy(d).into_owned(),
            );
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            say(&format!(
                "EVENT {} {} {} {at} {data}",
                event.shard.number(),
                event.sequence,
                event.name()
            ));
        })
    }
}

async fn worker(args: Args) -> Result<()> {
    let namespace = args.text("namespace")?;
    let redis = ClusterRedis::connect(&args.text("redis")?, &namespace).await?;
    let bus = EventBus::connect(&args.text("nats")?, &namespace).await?;
    bus.ensure_stream(StreamSettings::default()).await?;
    let total = u32::try_from(args.number("total", 1)?)?;
    let printer = Printer {
        delay: args.millis("handle-ms", 0)?,
    }
    .start();
    let mut config =
        EventSourceConfig::new(args.0.get("group").map_or("workers", String::as_str), total)
            .lease_ttl(args.millis("lease-ttl-ms", 1000)?)
            .ack_wait(Duration::from_secs(30))
            .fetch_wait(Duration::from_millis(100))
            .batch(16);
    let id = args.0.get("node-id").cloned().unwrap_or_default();
    if !id.is_empty() {
        config = config.node_id(id.clone());
    }
    let source = EventSource::new(bus, &redis, config, printer.recipient())?.start();
    say(&format!("STARTED {id}"));
    terminated().await?;
    source.send(StopSource).await?;
    say(&format!("STOPPED {id}"));
    Ok(())
}

async fn reshard(args: Args) -> Result<()> {
    let bus = EventBus::connect(&args.text("nats")?, &args.text("namespace")?).await?;
    let shards = u32::try_from(args.number("shards", 0)?)?;
    // The total only routes guild commands; a re-sharding request has none.
    CommandClient::new(bus, 1).reshard(shards).await?;
    say(&format!("RESHARDING {shards}"));
    Ok(())
}

async fn terminated() -> Result<()> {
    let mut term = actix_rt::signal::unix::signal(actix_rt::signal::unix::SignalKind::terminate())?;
    tokio_select(term.recv(), actix_rt::signal::ctrl_c()).await;
    Ok(())
}

/// Waits for the first of two futures.
async fn tokio_select<A: Future, B: Future>(a: A, b: B) {
    futures_util::pin_mut!(a, b);
    futures_util::future::select(a, b).await;
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let (mode, args) = Args::parse()?;
    actix_rt::System::new().block_on(async move {
        match mode.as_str() {
            "gateway" => gateway(args).await,
            "worker" => worker(args).await,
            "reshard" => reshard(args).await,
            other => Err(format!("unknown mode {other}: gateway, worker or reshard").into()),
        }
    })
}
