//! A gateway process of a cluster, on the emulator.
//!
//! It runs a fair share of the bot's shards (leases in Redis), publishes
//! every event to NATS JetStream for `cluster_worker`, serves the workers'
//! commands, and prints the whole cluster's status. Start several: they
//! share the shards; stop one (Ctrl-C) and the others resume its shards.
//!
//! ```sh
//! # terminal 1: the emulator and a first gateway process
//! cargo run -p discore-cluster --example cluster_gateway
//! # it prints: REST URL http://127.0.0.1:PORT/api/v10
//! # terminal 2: a second gateway process on the same emulator
//! REST_URL=http://127.0.0.1:PORT/api/v10 cargo run -p discore-cluster --example cluster_gateway
//! # terminal 3: workers
//! cargo run -p discore-cluster --example cluster_worker
//! ```
//!
//! Environment: `REDIS_URL` (default `redis://127.0.0.1:6379`), `NATS_URL`
//! (default `nats://127.0.0.1:4222`), `BOT` (the namespace, default
//! `example-bot`), `REST_URL` (an emulator to join; without it one is
//! started here), `SHARDS` (default 8), `RUN_FOR_SECS` (stop after that
//! long, for a smoke run).

use discore::{DiscoveryConfig, IdentifyConfig, IdentifyLimits, Intents, ManagerConfig, Token};
use discore_cluster::{
    ClusterNode, ClusterRedis, EventBus, NodeConfig, ShutdownNode, cluster_status,
};
use discore_mock::{MockConfig, MockServer, TrafficConfig};
use std::time::Duration;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let bot = env("BOT", "example-bot");
    let shards: u32 = env("SHARDS", "8").parse()?;

    // Join a running emulator, or start one that generates traffic.
    let (rest_url, _mock) = match std::env::var("REST_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let mock = MockServer::start(
                MockConfig::new()
                    .guilds(u64::from(shards) * 2)
                    .max_concurrency(4)
                    .identify_window(Duration::from_millis(500)),
            )
            .await?;
            mock.start_traffic(TrafficConfig::per_shard(2.0));
            println!("REST URL {}", mock.rest_url());
            (mock.rest_url(), Some(mock))
        }
    };

    let redis = ClusterRedis::connect(&env("REDIS_URL", "redis://127.0.0.1:6379"), &bot).await?;
    let bus = EventBus::connect(&env("NATS_URL", "nats://127.0.0.1:4222"), &bot).await?;
    bus.ensure_stream(Default::default()).await?;

    let token = Token::new(env("DISCORD_TOKEN", "mock-token"))?;
    // The bot's configuration as one process would have it; the node adds
    // the cluster's parts (leases, Redis queue and sessions, the bus).
    let manager = ManagerConfig::new(token, Intents::GUILDS | Intents::GUILD_MESSAGES)
        .discovery(DiscoveryConfig::at(rest_url))
        .identify(IdentifyConfig::in_memory(IdentifyLimits {
            max_concurrency: Some(4),
            window: Duration::from_secs(1),
            ..IdentifyLimits::default()
        }));
    let config = NodeConfig::new(manager, shards)
        .lease_ttl(Duration::from_secs(3))
        .checkpoint_interval(Duration::from_millis(500))
        .status_interval(Duration::from_secs(1))
        .event_bus(bus);
    let node = ClusterNode::start(config, redis.clone()).await?;

    let status_redis = redis.clone();
    actix_rt::spawn(async move {
        loop {
            actix_rt::time::sleep(Duration::from_secs(2)).await;
            match cluster_status(&status_redis).await {
                Ok(reports) => {
                    println!("cluster: {} shards", reports.len());
                    for r in reports {
                        println!(
                            "  shard {:>3} on {:<24} {:<9} seq {:>6} resumes {} identifies {}",
                            r.shard.number(),
                            r.node,
                            r.state.unwrap_or_else(|| "-".into()),
                            r.sequence.unwrap_or(0),
                            r.resumes,
                            r.identifies
                        );
                    }
                }
                Err(error) => eprintln!("status: {error}"),
            }
        }
    });

    match std::env::var("RUN_FOR_SECS") {
        Ok(secs) => actix_rt::time::sleep(Duration::from_secs(secs.parse()?)).await,
        Err(_) => actix_rt::signal::ctrl_c().await?,
    }
    let report = node.send(ShutdownNode).await??;
    println!(
        "handed {} shards over ({} sessions saved)",
        report.shards_released, report.sessions_saved
    );
    Ok(())
}
