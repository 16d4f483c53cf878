//! A worker process of a cluster: consumes the events `cluster_gateway`
//! publishes to NATS JetStream with the same `Handler<GatewayEvent>` a
//! single-process bot uses, and sends commands back to the shards.
//!
//! ```sh
//! cargo run -p discore-cluster --example cluster_worker
//! ```
//!
//! Start several: they share the shards' events (leases in Redis), each
//! shard's events in order; kill one and the others carry on where it left
//! off. Environment: `REDIS_URL`, `NATS_URL`, `BOT`, `SHARDS` (as for the
//! gateway), `RUN_FOR_SECS`.

use actix::prelude::*;
use discore::{Command, CommandTarget, DispatchEvent, GatewayEvent};
use discore_cluster::{
    ClusterRedis, CommandClient, EventBus, EventSource, EventSourceConfig, StopSource,
};
use std::time::Duration;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The bot's logic: the same actor would subscribe to a `ShardManager` in a
/// single process.
struct Bot {
    commands: CommandClient,
    messages: u64,
}

impl Actor for Bot {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for Bot {
    type Result = ();

    fn handle(&mut self, event: GatewayEvent, ctx: &mut Context<Self>) {
        match event.typed() {
            Some(DispatchEvent::MessageCreate(message)) => {
                self.messages += 1;
                println!(
                    "shard {} #{}: {}: {}",
                    event.shard.number(),
                    event.sequence,
                    message.author.name,
                    message.content
                );
                // Every 20 messages, show it in the presence of the shard
                // that received the last one (a command back over NATS).
                if self.messages.is_multiple_of(20) {
                    let commands = self.commands.clone();
                    let shard = event.shard.number();
                    let presence = format!(
                        r#"{{"op":3,"d":{{"since":null,"activities":[{{"name":"{} messages","type":3}}],"status":"online","afk":false}}}}"#,
                        self.messages
                    );
                    ctx.spawn(
                        async move {
                            match commands
                                .send(CommandTarget::Shard(shard), Command::Raw(presence))
                                .await
                            {
                                Ok(_) => println!("shard {shard}: presence updated"),
                                Err(error) => eprintln!("shard {shard}: {error}"),
                            }
                        }
                        .into_actor(self),
                    );
                }
            }
            _ => println!(
                "shard {} #{}: {}",
                event.shard.number(),
                event.sequence,
                event.name()
            ),
        }
    }
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let bot = env("BOT", "example-bot");
    let shards: u32 = env("SHARDS", "8").parse()?;
    let redis = ClusterRedis::connect(&env("REDIS_URL", "redis://127.0.0.1:6379"), &bot).await?;
    let bus = EventBus::connect(&env("NATS_URL", "nats://127.0.0.1:4222"), &bot).await?;
    bus.ensure_stream(Default::default()).await?;

    let handler = Bot {
        commands: CommandClient::new(bus.clone(), shards),
        messages: 0,
    }
    .start();
    let config =
        EventSourceConfig::new("example-workers", shards).lease_ttl(Duration::from_secs(3));
    let source = EventSource::new(bus, &redis, config, handler.recipient())?.start();

    match std::env::var("RUN_FOR_SECS") {
        Ok(secs) => actix_rt::time::sleep(Duration::from_secs(secs.parse()?)).await,
        Err(_) => actix_rt::signal::ctrl_c().await?,
    }
    source.send(StopSource).await?;
    Ok(())
}
