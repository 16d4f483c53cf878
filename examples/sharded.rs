//! A whole fleet with the `ShardManager`: automatic shard count, identify
//! buckets, a progress bar for the start and re-sharding (indicatif, through
//! `discore::progress`), supervision, re-sharding and hand-off.
//!
//! Without `DISCORD_TOKEN` it runs on an embedded emulator (40 guilds, 10 per
//! shard, `max_concurrency` 2, a 1 s identify window, live traffic):
//!
//! ```sh
//! cargo run --example sharded
//! cargo run --example sharded -- --grow   # joins a guild after 5 s: live re-sharding
//! ```
//!
//! Against the emulator binary, a deploy resumes every session (run the
//! example twice; Ctrl-C hands the sessions off into the file):
//!
//! ```sh
//! cargo run -p discore-mock -- --guilds 40 --max-guilds-per-shard 10 --token mock-token
//! DISCORE_REST_URL=http://127.0.0.1:PORT/api/v10 cargo run --example sharded -- --sessions /tmp/sessions.json
//! ```
//!
//! With `DISCORD_TOKEN` it runs the bot on Discord.

use actix::prelude::*;
use discore::{
    DiscoveryConfig, FleetEvent, GatewayEvent, GetFleetStatus, IdentifyConfig, IdentifyLimits,
    Intents, ManagerConfig, SessionConfig, ShardManager, ShutdownFleet, StopMode,
    SupervisionConfig, Token, progress::FleetProgressBar, session_store::JsonFileSessionStore,
};
use discore_mock::{MockConfig, MockServer, TrafficConfig};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

/// The token the embedded emulator accepts.
const EMULATOR_TOKEN: &str = "mock-token";

/// Counts events per shard.
#[derive(Default)]
struct Bot {
    per_shard: BTreeMap<String, u64>,
}

impl Actor for Bot {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(5), |bot, _| {
            let total: u64 = bot.per_shard.values().sum();
            log::info!("{total} events so far, per shard: {:?}", bot.per_shard);
        });
    }
}

impl Handler<GatewayEvent> for Bot {
    type Result = ();

    fn handle(&mut self, event: GatewayEvent, _: &mut Context<Self>) {
        *self.per_shard.entry(event.shard.to_string()).or_default() += 1;
    }
}

impl Handler<FleetEvent> for Bot {
    type Result = ();

    /// The progress bar shows the events; the counts start over with a new
    /// fleet.
    fn handle(&mut self, event: FleetEvent, _: &mut Context<Self>) {
        if let FleetEvent::Resharded { .. } = event {
            self.per_shard.clear();
        }
    }
}

/// An identify window a little above the emulator's 1 s, so the client
/// never identifies faster than the emulator allows.
fn identify_above_the_emulators_window() -> IdentifyConfig {
    IdentifyConfig::in_memory(IdentifyLimits {
        window: Duration::from_millis(1100),
        ..IdentifyLimits::default()
    })
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let grow = args.iter().any(|a| a == "--grow");
    let sessions = args
        .iter()
        .position(|a| a == "--sessions")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::GUILD_MESSAGE_REACTIONS;

    let (config, mock) = if let Ok(token) = std::env::var("DISCORD_TOKEN") {
        (ManagerConfig::new(Token::new(token)?, intents), None)
    } else if let Ok(rest) = std::env::var("DISCORE_REST_URL") {
        let token = std::env::var("DISCORE_TOKEN").unwrap_or_else(|_| EMULATOR_TOKEN.to_owned());
        let config = ManagerConfig::new(Token::new(token)?, intents)
            .discovery(DiscoveryConfig::at(rest))
            .identify(identify_above_the_emulators_window());
        (config, None)
    } else {
        let mock = MockServer::start(
            MockConfig::new()
                .token(EMULATOR_TOKEN)
                .guilds(40)
                .max_guilds_per_shard(10)
                .max_concurrency(2)
                .identify_window(Duration::from_secs(1)),
        )
        .await?;
        mock.start_traffic(TrafficConfig::per_shard(20.0));
        log::info!(
            "no DISCORD_TOKEN: using the embedded emulator at {}",
            mock.rest_url()
        );
        let config = ManagerConfig::new(Token::new(EMULATOR_TOKEN)?, intents)
            .discovery(DiscoveryConfig::at(mock.rest_url()))
            .identify(identify_above_the_emulators_window())
            .supervision(SupervisionConfig {
                status_interval: Duration::from_millis(200),
                ..SupervisionConfig::default()
            });
        (config, Some(mock))
    };
    let config = match &sessions {
        Some(path) => config.sessions(SessionConfig::new(Arc::new(JsonFileSessionStore::new(
            path,
        )))),
        None => config,
    };

    let bot = Bot::default().start();
    // Fleet start and re-sharding: an indicatif bar on a terminal, log
    // lines when piped.
    let progress = FleetProgressBar::new().start();
    let manager = ShardManager::start(
        config
            .subscribe_fleet(bot.clone().recipient())
            .subscribe_fleet(progress.recipient()),
        bot.recipient(),
    )
    .await?;
    let status = manager.send(GetFleetStatus).await?;
    log::info!(
        "started shards {:?} of {} on {} arbiters; Ctrl-C to stop",
        status.shard_ids,
        status.total,
        status
            .shards
            .iter()
            .map(|s| s.arbiter)
            .max()
            .map_or(0, |a| a + 1)
    );

    if grow && let Some(mock) = &mock {
        let mock = mock.clone();
        actix_rt::spawn(async move {
            actix_rt::time::sleep(Duration::from_secs(5)).await;
            // One guild more than the fleet holds: one shard overflows.
            let added = mock.add_guilds(1);
            log::warn!(
                "the bot joined {} guilds: {} shards are needed now",
                added.len(),
                mock.recommended_shards()
            );
        });
    }

    actix_rt::signal::ctrl_c().await?;
    let mode = if sessions.is_some() {
        StopMode::HandOff
    } else {
        StopMode::End
    };
    let report = manager.send(ShutdownFleet(mode)).await??;
    log::info!(
        "stopped {} shards, saved {} sessions",
        report.shards_stopped,
        report.sessions_saved
    );
    if let Some(mock) = mock {
        mock.stop().await;
    }
    Ok(())
}
