//! discore's metrics in the bot's own `prometheus-client` registry, beside
//! the bot's own metrics, on the bot's own `/metrics` endpoint: no admin
//! server.
//!
//! Without `DISCORD_TOKEN` it runs on an embedded emulator (4 guilds, 2 per
//! shard, live traffic):
//!
//! ```sh
//! cargo run --example own_metrics
//! curl http://127.0.0.1:9300/metrics
//! ```
//!
//! | variable | what it does |
//! |---|---|
//! | `DISCORD_TOKEN` | run on Discord instead of the emulator |
//! | `DISCORE_METRICS_ADDR` | where `/metrics` listens (default `127.0.0.1:9300`) |
//! | `DISCORE_EXAMPLE_SECONDS=N` | exit by itself after N seconds |

use actix::prelude::*;
use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, http::header, web};
use discore::{
    DiscoveryConfig, GatewayEvent, Intents, ManagerConfig, ShardManager, ShutdownFleet, StopMode,
    Token, WaitUntilReady,
    admin::{
        FleetMetrics, ManagerSource,
        prometheus_client::{
            encoding::text::encode, metrics::counter::Counter, registry::Registry,
        },
    },
};
use discore_mock::{MockConfig, MockServer, TrafficConfig};
use std::{
    net::{SocketAddr, TcpListener},
    time::Duration,
};

/// The token the embedded emulator accepts.
const EMULATOR_TOKEN: &str = "mock-token";

/// The `Content-Type` of the OpenMetrics text `encode` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The bot: it counts the events it handles in a metric of its own.
pub struct Bot {
    events: Counter,
}

impl Actor for Bot {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for Bot {
    type Result = ();

    fn handle(&mut self, _: GatewayEvent, _: &mut Context<Self>) {
        self.events.inc();
    }
}

/// What the scrape handler reads: the bot's registry (its own metrics and
/// discore's collector) and where discore's snapshot comes from.
struct Scrape {
    registry: Registry,
    discore: FleetMetrics,
    source: ManagerSource,
}

/// `GET /metrics`: refresh discore's snapshot, then encode the whole
/// registry.
async fn metrics(scrape: web::Data<Scrape>) -> HttpResponse {
    if let Err(error) = scrape.discore.refresh(&scrape.source).await {
        return HttpResponse::ServiceUnavailable().body(format!("{error}\n"));
    }
    let mut text = String::new();
    match encode(&mut text, &scrape.registry) {
        Ok(()) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, OPENMETRICS))
            .body(text),
        Err(error) => HttpResponse::InternalServerError().body(format!("{error}\n")),
    }
}

/// The running bot: its fleet and its metrics endpoint.
pub struct RunningBot {
    /// The fleet.
    pub manager: Addr<ShardManager>,
    /// Where `/metrics` listens.
    pub metrics_addr: SocketAddr,
    server: ServerHandle,
}

impl RunningBot {
    /// Stops the fleet and the endpoint.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.manager.send(ShutdownFleet(StopMode::End)).await??;
        self.server.stop(true).await;
        Ok(())
    }
}

/// Starts the fleet with the bot, registers discore's metrics in the bot's
/// registry, and serves that registry on `listener`.
pub async fn start(config: ManagerConfig, listener: TcpListener) -> anyhow::Result<RunningBot> {
    let events = Counter::default();
    let mut registry = Registry::default();
    registry.register(
        "bot_events_handled",
        "Gateway events the bot handled.",
        events.clone(),
    );
    // discore's families, read from the latest snapshot on every scrape.
    let discore = FleetMetrics::new();
    registry.register_collector(Box::new(discore.clone()));

    let manager = ShardManager::start(config, Bot { events }.start().recipient()).await?;
    let scrape = web::Data::new(Scrape {
        registry,
        discore,
        source: ManagerSource::new(manager.clone()),
    });
    let metrics_addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(scrape.clone())
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(RunningBot {
        manager,
        metrics_addr,
        server: handle,
    })
}

/// A fleet of two shards on the emulator, with live traffic.
pub async fn emulator() -> anyhow::Result<(MockServer, ManagerConfig)> {
    let mock = MockServer::start(
        MockConfig::new()
            .token(EMULATOR_TOKEN)
            .guilds(4)
            .max_guilds_per_shard(2)
            .max_concurrency(2),
    )
    .await?;
    mock.start_traffic(TrafficConfig::per_shard(5.0));
    let config = ManagerConfig::new(Token::new(EMULATOR_TOKEN)?, intents())
        .discovery(DiscoveryConfig::at(mock.rest_url()));
    Ok((mock, config))
}

fn intents() -> Intents {
    Intents::GUILDS | Intents::GUILD_MESSAGES
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (mock, config) = match std::env::var("DISCORD_TOKEN") {
        Ok(token) => (None, ManagerConfig::new(Token::new(token)?, intents())),
        Err(_) => {
            let (mock, config) = emulator().await?;
            log::info!("no DISCORD_TOKEN: using the embedded emulator");
            (Some(mock), config)
        }
    };
    let addr = std::env::var("DISCORE_METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:9300".into());
    let bot = start(config, TcpListener::bind(&addr)?).await?;
    let ready = bot.manager.send(WaitUntilReady).await??;
    log::info!("fleet ready: {ready}");
    log::info!("metrics: http://{}/metrics", bot.metrics_addr);

    let seconds: u64 = match std::env::var("DISCORE_EXAMPLE_SECONDS") {
        Ok(text) => text.parse()?,
        Err(_) => 0,
    };
    if seconds > 0 {
        actix_rt::time::sleep(Duration::from_secs(seconds)).await;
    } else {
        actix_rt::signal::ctrl_c().await?;
    }
    bot.stop().await?;
    if let Some(mock) = mock {
        mock.stop().await;
    }
    Ok(())
}
