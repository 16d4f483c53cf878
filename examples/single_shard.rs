//! One shard on its own: connect, identify, count events, hand the session
//! off.
//!
//! With `DISCORD_TOKEN` set it connects to Discord; without it, to the
//! embedded emulator with live traffic, so it runs offline:
//!
//! ```sh
//! cargo run --example single_shard
//! RUST_LOG=discore=debug DISCORD_TOKEN=... cargo run --example single_shard
//! ```
//!
//! Ctrl-C hands the session off and prints it, as a restart would keep it.

use actix::prelude::*;
use discore::{
    EventFilter, GatewayEvent, Intents, Lifecycle, Shard, ShardConfig, ShardId, ShardLifecycle,
    Shutdown, StopMode, Token,
};
use discore_mock::{MockConfig, MockServer, TrafficConfig};
use std::{collections::BTreeMap, time::Duration};

/// The token the embedded emulator accepts.
const EMULATOR_TOKEN: &str = "demo-token";

/// Counts events by name and reports them every few seconds.
#[derive(Default)]
struct Bot {
    counts: BTreeMap<String, u64>,
}

impl Actor for Bot {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(5), |bot, _| {
            let total: u64 = bot.counts.values().sum();
            log::info!("{total} events so far: {:?}", bot.counts);
        });
    }
}

impl Handler<GatewayEvent> for Bot {
    type Result = ();

    fn handle(&mut self, message: GatewayEvent, _: &mut Context<Self>) {
        *self.counts.entry(message.name().to_owned()).or_default() += 1;
    }
}

impl Handler<ShardLifecycle> for Bot {
    type Result = ();

    fn handle(&mut self, message: ShardLifecycle, _: &mut Context<Self>) {
        match message.event {
            Lifecycle::Reconnected { resumed: false } => {
                log::warn!("shard {} started a new session", message.shard);
            }
            event => log::info!("shard {}: {event:?}", message.shard),
        }
    }
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::GUILD_MESSAGE_REACTIONS;
    let (token, config, mock) = match std::env::var("DISCORD_TOKEN") {
        Ok(token) => (Token::new(token)?, ShardConfig::new(intents), None),
        Err(_) => {
            let mock = MockServer::start(MockConfig::new().token(EMULATOR_TOKEN).guilds(5)).await?;
            mock.start_traffic(TrafficConfig::per_shard(20.0));
            log::info!(
                "no DISCORD_TOKEN: using the embedded emulator at {}",
                mock.gateway_url()
            );
            let config = ShardConfig::new(intents).gateway_url(mock.gateway_url());
            (Token::new(EMULATOR_TOKEN)?, config, Some(mock))
        }
    };
    let bot = Bot::default().start();
    let shard = Shard::new(token, ShardId::new(0, 1), config)
        .subscribe(bot.clone().recipient(), EventFilter::all())
        .subscribe_lifecycle(bot.recipient())
        .start()
        .await?;
    log::info!("ready; Ctrl-C to stop");
    actix_rt::signal::ctrl_c().await?;
    if let Some(session) = shard.send(Shutdown(StopMode::HandOff)).await? {
        log::info!("handed off: {}", serde_json::to_string(&session)?);
    }
    if let Some(mock) = mock {
        mock.stop().await;
    }
    Ok(())
}
