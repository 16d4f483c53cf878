//! The demo: a sharded bot that answers `!ping` with `pong`, with metrics and
//! a live status page.
//!
//! ```sh
//! cargo run --release --example demo
//! ```
//!
//! Without `DISCORD_TOKEN` it starts the embedded Discord emulator with
//! enough guilds to need several shards (16 by default) and live traffic,
//! and a "user" who posts `!ping` every few seconds. With `DISCORD_TOKEN` it
//! runs against Discord. Either way a `ShardManager` asks `GET /gateway/bot`
//! for the shard count, starts the fleet under the identify queue, and the
//! bot answers `!ping` through the REST route `POST /channels/{id}/messages`.
//! The admin server (Prometheus metrics and the status page) listens on
//! 127.0.0.1. Ctrl-C hands the sessions off to the session store and exits.
//!
//! Settings, all optional (environment variables):
//!
//! | variable | meaning |
//! |---|---|
//! | `DISCORD_TOKEN` | run against Discord with this bot token |
//! | `DISCORE_MESSAGE_CONTENT=1` | on Discord, ask for the privileged MESSAGE_CONTENT intent |
//! | `DISCORE_SESSION_FILE` | on Discord, where sessions are handed off (default `discore-sessions.json`) |
//! | `DISCORE_DEMO_SECONDS=N` | exit by itself (with a hand-off) after N seconds |
//! | `DISCORE_DEMO_GUILDS`, `DISCORE_DEMO_GUILDS_PER_SHARD` | the emulator's world (default 48 and 3: 16 shards) |
//! | `DISCORE_DEMO_RATE` | emulator events per second per shard (default 5) |
//! | `DISCORE_ADMIN_ADDR` | the admin server's address (default `127.0.0.1:9299`) |
//! | `DISCORE_ADMIN_TOKEN` | require this bearer token on `/metrics` and `/api/shards` |
//! | `RUST_LOG` | log filter, such as `info,discore_gateway=debug` |

use actix::prelude::*;
use discore::{
    DiscoveryConfig, DispatchEvent, EventFilter, FleetEvent, FleetStatus, GatewayEvent,
    GetFleetStatus, IdentifyConfig, Intents, ManagerConfig, SessionConfig, ShardManager,
    ShardRunState, ShardState, ShutdownFleet, StopMode, Token,
    admin::{AdminConfig, AdminError, AdminServer, ManagerSource, MeteredIdentifyQueue},
    http::{DISCORD_API_URL, RestClient},
    identify::{InMemoryIdentifyQueue, SessionStartLimit},
    model::id::{Id, marker::UserMarker},
    progress::FleetProgressBar,
    session_store::{InMemorySessionStore, JsonFileSessionStore, SessionStore},
    tls_with_roots,
};
use discore_mock::{MockConfig, MockServer, TrafficConfig};
use std::{
    future::Future,
    io::IsTerminal as _,
    net::SocketAddr,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::Poll,
    time::{Duration, Instant},
};

/// The token the embedded emulator accepts.
const EMULATOR_TOKEN: &str = "demo-token";
/// How often the live summary is printed.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);
/// How often the emulator's "user" says `!ping`.
const PING_EVERY: Duration = Duration::from_secs(3);

/// Numbers the bot and the user share with the summary.
#[derive(Debug, Default)]
struct Counters {
    pings_sent: AtomicU64,
    pings_seen: AtomicU64,
    pongs_sent: AtomicU64,
    pongs_seen: AtomicU64,
    rest_errors: AtomicU64,
    /// The fleet has been ready once: the summary replaces the progress bar.
    fleet_ready: AtomicBool,
}

/// The bot: answers `!ping` with `pong` over REST, ignoring its own messages.
struct Bot {
    http: awc::Client,
    rest_url: String,
    authorization: String,
    me: Option<Id<UserMarker>>,
    counters: Arc<Counters>,
}

impl Actor for Bot {
    type Context = Context<Self>;
}

/// Whether a message asks for a pong: `!ping`, or `<@bot> !ping` (what a bot
/// without the MESSAGE_CONTENT intent can read).
fn is_ping(content: &str, me: Option<Id<UserMarker>>) -> bool {
    let mut content = content.trim();
    if let Some(me) = me {
        for mention in [format!("<@{me}>"), format!("<@!{me}>")] {
            if let Some(rest) = content.strip_prefix(mention.as_str()) {
                content = rest.trim_start();
            }
        }
    }
    content == "!ping"
}

impl Handler<GatewayEvent> for Bot {
    type Result = ();

    fn handle(&mut self, event: GatewayEvent, ctx: &mut Context<Self>) {
        match event.typed() {
            Some(DispatchEvent::Ready(ready)) => self.me = Some(ready.user.id),
            Some(DispatchEvent::MessageCreate(message)) => {
                if Some(message.author.id) == self.me {
                    if message.content == "pong" {
                        self.counters.pongs_seen.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                if message.author.bot || !is_ping(&message.content, self.me) {
                    return;
                }
                self.counters.pings_seen.fetch_add(1, Ordering::Relaxed);
                log::trace!("shard {}: !ping in {}", event.shard, message.channel_id);
                let request = self
                    .http
                    .post(format!(
                        "{}/channels/{}/messages",
                        self.rest_url, message.channel_id
                    ))
                    .insert_header(("Authorization", self.authorization.as_str()))
                    .send_json(&serde_json::json!({ "content": "pong" }));
                let counters = Arc::clone(&self.counters);
                let channel = message.channel_id;
                ctx.spawn(
                    async move {
                        match request.await {
                            Ok(response) if response.status().is_success() => {
                                counters.pongs_sent.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(response) => {
                                counters.rest_errors.fetch_add(1, Ordering::Relaxed);
                                log::warn!("pong to {channel} refused: {}", response.status());
                            }
                            Err(error) => {
                                counters.rest_errors.fetch_add(1, Ordering::Relaxed);
                                log::warn!("pong to {channel} failed: {error}");
                            }
                        }
                    }
                    .into_actor(self),
                );
            }
            _ => {}
        }
    }
}

/// Where the demo's own lines go: stderr on a terminal (the progress bar is
/// indicatif's, drawn by [`FleetProgressBar`]), log lines otherwise.
#[derive(Clone, Copy)]
struct Console {
    terminal: bool,
}

impl Console {
    fn line(self, text: &str) {
        if self.terminal {
            eprintln!("{text}");
        } else {
            log::info!("{text}");
        }
    }
}

/// Shows the fleet's start-up and its notable events: an indicatif bar on a
/// terminal, log lines when piped.
struct Watcher {
    progress: FleetProgressBar,
    console: Console,
    counters: Arc<Counters>,
    started: Instant,
}

impl Actor for Watcher {
    type Context = Context<Self>;
}

impl Handler<FleetEvent> for Watcher {
    type Result = ();

    fn handle(&mut self, event: FleetEvent, _: &mut Context<Self>) {
        // The bar shows progress, re-sharding, restarts and failures, and
        // ends with "fleet ready: …".
        self.progress.handle(&event);
        if let FleetEvent::Ready(_) = event
            && !self.counters.fleet_ready.swap(true, Ordering::Relaxed)
        {
            self.console.line(&format!(
                "ready in {:.1}s",
                self.started.elapsed().as_secs_f64()
            ));
        }
    }
}

/// One line about the fleet, for the live summary.
fn summary(status: &FleetStatus, counters: &Counters, rate: f64) -> String {
    let mut active = 0;
    let (mut guilds, mut events, mut reconnects) = (0, 0, 0);
    let mut latencies = Vec::new();
    for report in &status.shards {
        if let (ShardRunState::Running, Some(shard)) = (&report.state, &report.status) {
            if shard.state == ShardState::Active {
                active += 1;
            }
            guilds += shard.guilds_loaded;
            events += shard.events_received;
            reconnects += shard.reconnects;
            latencies.extend(shard.latency.average());
        }
    }
    let latency = if latencies.is_empty() {
        "–".to_owned()
    } else {
        let total: Duration = latencies.iter().sum();
        format!(
            "{:.1} ms",
            (total / latencies.len() as u32).as_secs_f64() * 1000.0
        )
    };
    format!(
        "{active}/{} shards active · {guilds} guilds · {events} events ({rate:.0}/s) · latency {latency} · reconnects {reconnects} · !ping {} seen, pong {} sent / {} seen",
        status.shards.len(),
        counters.pings_seen.load(Ordering::Relaxed),
        counters.pongs_sent.load(Ordering::Relaxed),
        counters.pongs_seen.load(Ordering::Relaxed),
    )
}

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} must be a whole number, not {value:?}")),
        Err(_) => Ok(default),
    }
}

/// Waits for Ctrl-C, or for `seconds` when given. Answers what happened.
async fn stop_signal(seconds: Option<u64>) -> &'static str {
    let mut ctrl_c = pin!(actix_rt::signal::ctrl_c());
    let mut timer = pin!(async move {
        match seconds {
            Some(seconds) => actix_rt::time::sleep(Duration::from_secs(seconds)).await,
            None => std::future::pending().await,
        }
    });
    std::future::poll_fn(|cx| {
        if ctrl_c.as_mut().poll(cx).is_ready() {
            return Poll::Ready("Ctrl-C");
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready("DISCORE_DEMO_SECONDS elapsed");
        }
        Poll::Pending
    })
    .await
}

/// Starts the admin server on `DISCORE_ADMIN_ADDR`, or on a free port when
/// the default one is taken.
fn start_admin(source: ManagerSource) -> anyhow::Result<AdminServer> {
    let mut config = AdminConfig::new().title("discore demo");
    if let Ok(token) = std::env::var("DISCORE_ADMIN_TOKEN") {
        config = config.bearer_token(token);
    }
    match std::env::var("DISCORE_ADMIN_ADDR") {
        Ok(addr) => {
            let addr: SocketAddr = addr.parse()?;
            Ok(AdminServer::start(config.bind(addr), source)?)
        }
        Err(_) => match AdminServer::start(config.clone(), source.clone()) {
            Err(AdminError::Bind { addr, source: why }) => {
                log::warn!("{addr} is not free ({why}); using a free port");
                let any = SocketAddr::from(([127, 0, 0, 1], 0));
                Ok(AdminServer::start(config.bind(any), source)?)
            }
            other => Ok(other?),
        },
    }
}

#[actix::main]
async fn main() -> anyhow::Result<()> {
    let console = Console {
        terminal: std::io::stderr().is_terminal(),
    };
    // On a terminal the progress bar owns the last line: only warnings log
    // by default there. RUST_LOG overrides both.
    let default_filter = if console.terminal { "warn" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
        .init();
    let seconds = match env_number("DISCORE_DEMO_SECONDS", 0)? {
        0 => None,
        n => Some(n),
    };

    let counters = Arc::new(Counters::default());
    let discord_token = std::env::var("DISCORD_TOKEN").ok();
    let (token, rest_url, intents, store, mock): (_, _, _, Arc<dyn SessionStore>, _) =
        match discord_token {
            Some(token) => {
                let mut intents = Intents::GUILDS | Intents::GUILD_MESSAGES;
                if std::env::var("DISCORE_MESSAGE_CONTENT").is_ok_and(|v| v == "1") {
                    intents |= Intents::MESSAGE_CONTENT;
                }
                let file = std::env::var("DISCORE_SESSION_FILE")
                    .unwrap_or_else(|_| "discore-sessions.json".to_owned());
                console.line(&format!(
                    "running against Discord; sessions are handed off to {file}"
                ));
                let store: Arc<dyn SessionStore> = Arc::new(JsonFileSessionStore::new(file));
                (
                    Token::new(token)?,
                    DISCORD_API_URL.to_owned(),
                    intents,
                    store,
                    None,
                )
            }
            None => {
                let guilds = env_number("DISCORE_DEMO_GUILDS", 48)?;
                let per_shard = env_number("DISCORE_DEMO_GUILDS_PER_SHARD", 3)?.max(1);
                let rate = env_number("DISCORE_DEMO_RATE", 5)?;
                let mock = MockServer::start(
                    MockConfig::new()
                        .token(EMULATOR_TOKEN)
                        .guilds(guilds)
                        .max_guilds_per_shard(per_shard)
                        .max_concurrency(4)
                        .identify_window(Duration::from_millis(250))
                        .heartbeat_interval(Duration::from_secs(5)),
                )
                .await?;
                mock.start_traffic(TrafficConfig::per_shard(rate as f64));
                console.line(&format!(
                    "no DISCORD_TOKEN: embedded Discord emulator at {} with {guilds} guilds, \
                     {per_shard} per shard, {rate} events/s per shard",
                    mock.rest_url()
                ));
                let intents = Intents::GUILDS
                    | Intents::GUILD_MESSAGES
                    | Intents::MESSAGE_CONTENT
                    | Intents::GUILD_MESSAGE_REACTIONS
                    | Intents::GUILD_MESSAGE_TYPING
                    | Intents::GUILD_MEMBERS
                    | Intents::GUILD_PRESENCES;
                let store: Arc<dyn SessionStore> = Arc::new(InMemorySessionStore::new());
                (
                    Token::new(EMULATOR_TOKEN)?,
                    mock.rest_url(),
                    intents,
                    store,
                    Some(mock),
                )
            }
        };

    // Ask /gateway/bot ourselves, to build a measured identify queue.
    let rest = RestClient::builder(token.clone())
        .base_url(rest_url.clone())
        .build()?;
    let info = rest.gateway_bot().await?;
    let limit = info.session_start_limit.clone();
    let window = if mock.is_some() {
        // Twice the emulator's window: an identify may reach it late on a
        // busy machine, and the next one of its bucket on time.
        Duration::from_millis(500)
    } else {
        discore::protocol::limits::IDENTIFY_WINDOW
    };
    let queue = MeteredIdentifyQueue::in_memory(
        InMemoryIdentifyQueue::with_window(u32::from(limit.max_concurrency).max(1), window)
            .with_session_start_limit(SessionStartLimit {
                remaining: limit.remaining,
                reset_after: Duration::from_millis(limit.reset_after),
                total: limit.total,
                reserve: (limit.total / 20).max(1),
            }),
        Some(limit.total),
    );
    let meter = queue.meter();
    console.line(&format!(
        "GET /gateway/bot: {} shards, max_concurrency {}, {}/{} identifies left today",
        info.shards, limit.max_concurrency, limit.remaining, limit.total
    ));

    let bot = Bot {
        http: awc::Client::builder()
            .connector(awc::Connector::new().rustls_0_23(Arc::new(tls_with_roots(
                rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            )?)))
            .timeout(Duration::from_secs(10))
            .finish(),
        rest_url: rest_url.clone(),
        authorization: token.authorization_header(),
        me: None,
        counters: Arc::clone(&counters),
    }
    .start();
    let started = Instant::now();
    let watcher = Watcher {
        progress: if console.terminal {
            FleetProgressBar::bar()
        } else {
            FleetProgressBar::plain()
        },
        console,
        counters: Arc::clone(&counters),
        started,
    }
    .start();
    let manager = ShardManager::launch(
        ManagerConfig::new(token, intents)
            .discovery(DiscoveryConfig {
                gateway_bot: Some(info),
                ..DiscoveryConfig::at(rest_url)
            })
            .identify(IdentifyConfig::queue(Arc::new(queue)))
            .sessions(SessionConfig::new(Arc::clone(&store)))
            .subscribe(bot.recipient(), EventFilter::all())
            .subscribe_fleet(watcher.recipient()),
    )
    .await?;

    let admin = start_admin(ManagerSource::new(manager.clone()).identify_meter(meter))?;
    let auth = if std::env::var("DISCORE_ADMIN_TOKEN").is_ok() {
        " (bearer token required; in a browser open it as URL#token=...)"
    } else {
        ""
    };
    console.line(&format!(
        "status page: {url}  metrics: {url}metrics{auth}",
        url = admin.url()
    ));
    console.line(
        match seconds {
            Some(n) => format!("running for {n}s; Ctrl-C hands the sessions off and exits"),
            None => "Ctrl-C hands the sessions off and exits".to_owned(),
        }
        .as_str(),
    );

    // The emulator's "user": says !ping now and then in a random channel.
    if let Some(mock) = &mock {
        let mock = mock.clone();
        let counters = Arc::clone(&counters);
        actix::spawn(async move {
            let channels: Vec<u64> = mock
                .guild_ids()
                .into_iter()
                .filter_map(|guild| mock.text_channel_ids(guild).first().copied())
                .collect();
            if channels.is_empty() {
                return;
            }
            // Hop through the channels so every shard sees pings.
            let mut next = 0;
            loop {
                actix_rt::time::sleep(PING_EVERY).await;
                next = (next + 7) % channels.len();
                let channel = channels[next];
                match mock.post_message(channel, "!ping") {
                    Ok(_) => {
                        counters.pings_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => log::warn!("the user could not post: {error}"),
                }
            }
        });
    }

    // The live summary, once the fleet is up (or has been trying for long).
    {
        let manager = manager.clone();
        let counters = Arc::clone(&counters);
        actix::spawn(async move {
            let mut last = (Instant::now(), 0);
            loop {
                actix_rt::time::sleep(SUMMARY_EVERY).await;
                let Ok(status) = manager.send(GetFleetStatus).await else {
                    return;
                };
                let events: u64 = status
                    .shards
                    .iter()
                    .filter_map(|r| r.status.as_ref())
                    .map(|s| s.events_received)
                    .sum();
                let now = Instant::now();
                let rate = events.saturating_sub(last.1) as f64 / (now - last.0).as_secs_f64();
                last = (now, events);
                if counters.fleet_ready.load(Ordering::Relaxed)
                    || started.elapsed() > Duration::from_secs(60)
                {
                    console.line(&summary(&status, &counters, rate));
                }
            }
        });
    }

    let why = stop_signal(seconds).await;
    console.line(&format!("{why}: handing the sessions off"));
    let report = manager.send(ShutdownFleet(StopMode::HandOff)).await??;
    let next = if mock.is_some() {
        "the emulator and its in-memory store end with the demo"
    } else {
        "a restart within 5 minutes resumes them without identifying"
    };
    console.line(&format!(
        "{} shards stopped, {} sessions handed off{}; {next}",
        report.shards_stopped,
        report.sessions_saved,
        report
            .store_error
            .map(|e| format!(" (the store failed: {e})"))
            .unwrap_or_default()
    ));
    console.line(&format!(
        "!ping: {} sent by the user, {} seen by the bot; pong: {} sent, {} seen; {} REST errors",
        counters.pings_sent.load(Ordering::Relaxed),
        counters.pings_seen.load(Ordering::Relaxed),
        counters.pongs_sent.load(Ordering::Relaxed),
        counters.pongs_seen.load(Ordering::Relaxed),
        counters.rest_errors.load(Ordering::Relaxed),
    ));
    admin.stop().await;
    if let Some(mock) = mock {
        mock.stop().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_ping;
    use discore::model::id::Id;

    #[test]
    fn pings_with_and_without_a_mention() {
        let me = Some(Id::new(42));
        assert!(is_ping("!ping", me));
        assert!(is_ping("  !ping ", None));
        assert!(is_ping("<@42> !ping", me));
        assert!(is_ping("<@!42>!ping", me));
        assert!(!is_ping("<@43> !ping", me));
        assert!(!is_ping("!pingpong", me));
        assert!(!is_ping("pong", me));
    }
}
