//! discore's log records in a `tracing` subscriber, with their key-values
//! as fields (`shard=0 total=2 session="…"`), so a tracing-based bot can
//! filter and group discore's records like its own.
//!
//! discore logs through `log`, with key-values (`log`'s `kv`). tracing-log's
//! `LogTracer` forwards a record's level, target and message but not its
//! key-values (its events have a fixed set of fields), so this example
//! installs a small `log::Log` of its own that turns each record into a
//! tracing event with discore's keys as fields.
//!
//! ```sh
//! cargo run --example tracing_bridge
//! ```
//!
//! It starts the embedded emulator with two shards, waits until the fleet is
//! ready, makes shard 0 resume once, and exits.

use actix::prelude::*;
use discore::{
    DiscoveryConfig, GatewayEvent, Intents, ManagerConfig, ShardManager, ShutdownFleet, StopMode,
    Token, WaitUntilReady,
};
use discore_mock::{MockConfig, MockServer, Target};
use log::kv::{Key, Value, VisitSource};
use std::{fmt::Write as _, time::Duration};

/// The token the embedded emulator accepts.
const EMULATOR_TOKEN: &str = "mock-token";

/// The key-values of one record: discore's keys by name, any other one in
/// `other`, as `key=value` pairs.
#[derive(Default)]
struct Fields {
    shard: Option<u64>,
    total: Option<u64>,
    session: Option<String>,
    close_code: Option<u64>,
    attempt: Option<u64>,
    delay_ms: Option<u64>,
    reason: Option<String>,
    other: String,
}

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        match key.as_str() {
            "shard" => self.shard = value.to_u64(),
            "total" => self.total = value.to_u64(),
            "session" => self.session = Some(value.to_string()),
            "close_code" => self.close_code = value.to_u64(),
            "attempt" => self.attempt = value.to_u64(),
            "delay_ms" => self.delay_ms = value.to_u64(),
            "reason" => self.reason = Some(value.to_string()),
            other => {
                let _ = write!(
                    self.other,
                    "{}{other}={value}",
                    if self.other.is_empty() { "" } else { " " }
                );
            }
        }
        Ok(())
    }
}

/// A `log::Log` that hands every record to the tracing subscriber, its
/// key-values as fields.
struct LogToTracing;

impl log::Log for LogToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        // The tracing subscriber filters.
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let mut fields = Fields::default();
        let _ = record.key_values().visit(&mut fields);
        let other = (!fields.other.is_empty()).then_some(fields.other.as_str());
        // A tracing event's level and field names are fixed where it is
        // written: one event per level, with every key discore uses
        // (absent ones are left out of the output).
        macro_rules! forward {
            ($level:expr) => {
                tracing::event!(
                    target: "discore",
                    $level,
                    log.target = record.target(),
                    shard = fields.shard,
                    total = fields.total,
                    session = fields.session.as_deref(),
                    close_code = fields.close_code,
                    attempt = fields.attempt,
                    delay_ms = fields.delay_ms,
                    reason = fields.reason.as_deref(),
                    other,
                    "{}",
                    record.args()
                )
            };
        }
        match record.level() {
            log::Level::Error => forward!(tracing::Level::ERROR),
            log::Level::Warn => forward!(tracing::Level::WARN),
            log::Level::Info => forward!(tracing::Level::INFO),
            log::Level::Debug => forward!(tracing::Level::DEBUG),
            log::Level::Trace => forward!(tracing::Level::TRACE),
        }
    }

    fn flush(&self) {}
}

/// The bot: it only receives the events.
struct Bot;

impl Actor for Bot {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for Bot {
    type Result = ();

    fn handle(&mut self, _: GatewayEvent, _: &mut Context<Self>) {}
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    // The bot's tracing subscriber, and discore's records into it.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    log::set_boxed_logger(Box::new(LogToTracing))?;
    log::set_max_level(log::LevelFilter::Info);

    let mock = MockServer::start(
        MockConfig::new()
            .token(EMULATOR_TOKEN)
            .guilds(4)
            .max_guilds_per_shard(2)
            .max_concurrency(2),
    )
    .await?;
    let intents = Intents::GUILDS;
    let manager = ShardManager::start(
        ManagerConfig::new(Token::new(EMULATOR_TOKEN)?, intents)
            .discovery(DiscoveryConfig::at(mock.rest_url())),
        Bot.start().recipient(),
    )
    .await?;
    actix_rt::time::timeout(Duration::from_secs(60), manager.send(WaitUntilReady)).await???;

    // A reconnect: its records carry the close code and the session resumed.
    mock.close(&Target::Shard(0), 4000);
    actix_rt::time::sleep(Duration::from_secs(1)).await;

    manager.send(ShutdownFleet(StopMode::End)).await??;
    mock.stop().await;
    Ok(())
}
