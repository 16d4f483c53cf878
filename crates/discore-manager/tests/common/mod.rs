//! Shared pieces of the manager's integration tests: a scaled emulator, a
//! scaled manager configuration, and a collector actor that records events
//! and fleet notifications in the order it received them.

#![allow(dead_code)]

use actix::prelude::*;
use discore_gateway::{Backoff, GatewayEvent, IdentifyQueue, Intents, ShardConfig, Token};
use discore_manager::{
    DiscoveryConfig, FleetEvent, IdentifyConfig, IdentifyLimits, ManagerConfig, Placement,
    RestartPolicy, SupervisionConfig,
};
use discore_mock::{MockConfig, MockServer};
use discore_protocol::ShardId;
use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};
use twilight_model::gateway::event::DispatchEvent;

/// Generous: only a broken manager waits this long.
pub const TIMEOUT: Duration = Duration::from_secs(30);

pub const INTENTS: Intents = Intents::GUILDS.union(Intents::GUILD_MESSAGES);

pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// The emulator's send-limit window: scaled with the heartbeat interval, so
/// heartbeats take the same share of it as on Discord.
pub const SEND_WINDOW: Duration = Duration::from_secs(6);

/// The identify window of the emulator and of the manager alike.
pub const IDENTIFY_WINDOW: Duration = Duration::from_millis(40);

/// An emulator with scaled intervals: heartbeat 500 ms (with a generous
/// grace: a busy machine delays timers), identify window
/// [`IDENTIFY_WINDOW`] (the manager's too), send limit 120 per 6 s.
pub fn mock_config() -> MockConfig {
    MockConfig::new()
        .heartbeat_interval(Duration::from_millis(500))
        .heartbeat_grace(Duration::from_secs(2))
        .identify_window(IDENTIFY_WINDOW)
        .send_limit(120, SEND_WINDOW)
        .rest_rate_limit(None)
}

pub async fn start_mock(config: MockConfig) -> MockServer {
    MockServer::start(config)
        .await
        .expect("the emulator starts")
}

/// Shard settings scaled for tests.
pub fn shard_config() -> ShardConfig {
    ShardConfig::new(INTENTS)
        .backoff(Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        })
        .invalid_session_delay(Duration::from_millis(10)..=Duration::from_millis(30))
        .handshake_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        // A little above the emulator's window: frames arrive with jitter.
        .send_rate_limit(120, SEND_WINDOW + Duration::from_millis(300))
}

/// A manager configuration pointed at `mock`, with scaled intervals.
pub fn manager_config(mock: &MockServer) -> ManagerConfig {
    ManagerConfig::new(Token::new("mock-token").expect("valid token"), INTENTS)
        .discovery(DiscoveryConfig::at(mock.rest_url()))
        .identify(identify_window(IDENTIFY_WINDOW))
        .shard_config(shard_config())
        .placement(Placement::Arbiters(2))
        .supervision(supervision())
}

/// An in-memory identify queue with this window.
pub fn identify_window(window: Duration) -> IdentifyConfig {
    IdentifyConfig::in_memory(IdentifyLimits {
        window,
        ..IdentifyLimits::default()
    })
}

/// Supervision scaled for tests: statuses every 20 ms, quick restarts.
pub fn supervision() -> SupervisionConfig {
    SupervisionConfig {
        restart: RestartPolicy {
            backoff: Backoff {
                base: Duration::from_millis(20),
                cap: Duration::from_millis(100),
            },
            max_restarts: 5,
            window: Duration::from_secs(60),
        },
        status_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_millis(50),
        ..SupervisionConfig::default()
    }
}

/// One thing the collector received.
#[derive(Clone, Debug)]
pub enum Seen {
    Event {
        shard: ShardId,
        sequence: u64,
        name: String,
        guild: Option<u64>,
        /// MESSAGE_CREATE's message id.
        message: Option<u64>,
    },
    Fleet(FleetEvent),
}

/// Records events and fleet notifications, in arrival order.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub fn lock(&self) -> MutexGuard<'_, Vec<Seen>> {
        self.0.lock().expect("log lock")
    }

    pub fn fleet_events(&self) -> Vec<FleetEvent> {
        self.lock()
            .iter()
            .filter_map(|s| match s {
                Seen::Fleet(event) => Some(event.clone()),
                Seen::Event { .. } => None,
            })
            .collect()
    }

    pub fn has_fleet(&self, f: impl Fn(&FleetEvent) -> bool) -> bool {
        self.lock()
            .iter()
            .any(|s| matches!(s, Seen::Fleet(event) if f(event)))
    }

    /// `(guild, message id)` of every MESSAGE_CREATE, in arrival order.
    pub fn messages(&self) -> Vec<(u64, u64)> {
        self.lock()
            .iter()
            .filter_map(|s| match s {
                Seen::Event {
                    guild: Some(guild),
                    message: Some(id),
                    ..
                } => Some((*guild, *id)),
                _ => None,
            })
            .collect()
    }

    pub fn events_named(&self, name: &str) -> Vec<Seen> {
        self.lock()
            .iter()
            .filter(|s| matches!(s, Seen::Event { name: n, .. } if n == name))
            .cloned()
            .collect()
    }
}

pub struct Collector(pub Log);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for Collector {
    type Result = ();

    fn handle(&mut self, event: GatewayEvent, _: &mut Context<Self>) {
        let (guild, message) = match event.typed() {
            Some(DispatchEvent::MessageCreate(m)) => {
                (m.guild_id.map(|g| g.get()), Some(m.id.get()))
            }
            Some(DispatchEvent::GuildCreate(g)) => (Some(g.id().get()), None),
            _ => (None, None),
        };
        self.0.lock().push(Seen::Event {
            shard: event.shard,
            sequence: event.sequence,
            name: event.name().to_owned(),
            guild,
            message,
        });
    }
}

impl Handler<FleetEvent> for Collector {
    type Result = ();

    fn handle(&mut self, event: FleetEvent, _: &mut Context<Self>) {
        self.0.lock().push(Seen::Fleet(event));
    }
}

/// Waits until `condition` holds, checking every 5 ms.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts a collector and returns it with its log.
pub fn collector() -> (Addr<Collector>, Log) {
    let log = Log::default();
    (Collector(log.clone()).start(), log)
}

/// An identify queue that panics (inside the shard that polls it) whenever
/// `shard` is let through: a shard that crashes every time it identifies.
#[derive(Debug)]
pub struct PanicFor {
    pub inner: Arc<dyn IdentifyQueue>,
    pub shard: u32,
}

impl IdentifyQueue for PanicFor {
    fn acquire(&self, shard: ShardId) -> discore_gateway::IdentifyFuture {
        let permit = self.inner.acquire(shard);
        let doomed = shard.number() == self.shard;
        Box::pin(async move {
            let permit = permit.await;
            assert!(!doomed, "injected crash of shard {shard} while identifying");
            permit
        })
    }
}
