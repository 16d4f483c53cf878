//! A fleet on the emulator with the admin server in front of it, scaled so
//! it starts in well under a second.

use actix::prelude::*;
use discore::{
    Backoff, DiscoveryConfig, EventFilter, GatewayEvent, IdentifyConfig, Intents, ManagerConfig,
    Placement, ShardConfig, ShardManager, ShutdownFleet, StopMode, SupervisionConfig, Token,
    WaitUntilReady,
    identify::{InMemoryIdentifyQueue, SessionStartLimit},
};
use discore_admin::{AdminConfig, AdminServer, ManagerSource, MeteredIdentifyQueue};
use discore_mock::{MockConfig, MockServer, TrafficConfig};
use std::{
    net::TcpListener,
    sync::Arc,
    time::{Duration, Instant},
};

/// Generous: only a broken server waits this long.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Identifies the emulator allows per day in these tests.
pub const BUDGET: u32 = 1000;

pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// Swallows events.
pub struct Sink;

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for Sink {
    type Result = ();

    fn handle(&mut self, _: GatewayEvent, _: &mut Context<Self>) {}
}

/// A running fleet, its emulator and its admin server.
pub struct Fleet {
    pub mock: MockServer,
    pub manager: Addr<ShardManager>,
    pub admin: AdminServer,
    pub shards: u32,
    pub guilds: u64,
}

/// Starts `guilds` guilds at two per shard, a ready fleet on them with live
/// traffic, and an admin server on a free loopback port. Heartbeats every
/// 200 ms, to measure latencies quickly.
pub async fn start(guilds: u64, admin: AdminConfig) -> Fleet {
    start_with(guilds, admin, Duration::from_millis(200)).await
}

/// As [`start`], with another heartbeat interval: a long one keeps a busy
/// machine from turning a late ACK into a reconnect while a test looks.
pub async fn start_with(guilds: u64, admin: AdminConfig, heartbeat: Duration) -> Fleet {
    init_logging();
    let mock = MockServer::start(
        MockConfig::new()
            .guilds(guilds)
            .max_guilds_per_shard(2)
            .heartbeat_interval(heartbeat)
            .identify_window(Duration::from_millis(40))
            .send_limit(120, Duration::from_secs(6))
            .rest_rate_limit(None),
    )
    .await
    .expect("the emulator starts");
    mock.start_traffic(TrafficConfig::per_shard(20.0));
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::GUILD_MESSAGE_REACTIONS;
    let queue = MeteredIdentifyQueue::in_memory(
        InMemoryIdentifyQueue::with_window(1, Duration::from_millis(40)).with_session_start_limit(
            SessionStartLimit {
                remaining: BUDGET,
                reset_after: Duration::from_secs(24 * 3600),
                total: BUDGET,
                reserve: 1,
            },
        ),
        Some(BUDGET),
    );
    let meter = queue.meter();
    let manager = ShardManager::launch(
        ManagerConfig::new(Token::new("mock-token").expect("valid token"), intents)
            .discovery(DiscoveryConfig::at(mock.rest_url()))
            .identify(IdentifyConfig::queue(Arc::new(queue)))
            .supervision(SupervisionConfig {
                status_interval: Duration::from_millis(20),
                shutdown_grace: Duration::from_millis(50),
                ..SupervisionConfig::default()
            })
            .placement(Placement::Arbiters(2))
            .shard_config(
                ShardConfig::new(intents)
                    .backoff(Backoff {
                        base: Duration::from_millis(20),
                        cap: Duration::from_millis(200),
                    })
                    .send_rate_limit(120, Duration::from_millis(6300)),
            )
            .subscribe(Sink.start().recipient(), EventFilter::all()),
    )
    .await
    .expect("the fleet starts");
    actix_rt::time::timeout(TIMEOUT * 2, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("the manager answers")
        .expect("the fleet gets ready");
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let admin = AdminServer::start_on(
        listener,
        admin.min_refresh(Duration::ZERO),
        ManagerSource::new(manager.clone()).identify_meter(meter),
    )
    .expect("the admin server starts");
    let shards = u32::try_from(mock.recommended_shards()).expect("a small count");
    Fleet {
        mock,
        manager,
        admin,
        shards,
        guilds,
    }
}

impl Fleet {
    /// Stops everything; the emulator must have seen no protocol violation.
    pub async fn stop(self) {
        let violations = self.mock.observed().violations;
        assert!(violations.is_empty(), "{violations:#?}");
        self.admin.stop().await;
        let _ = self.manager.send(ShutdownFleet(StopMode::End)).await;
        self.mock.stop().await;
    }
}

/// A plain HTTP client for the admin server.
pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
}

/// GETs `url` and answers the status and the body.
pub async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = client().get(url);
    if let Some(token) = token {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut response = request.send().await.expect("the admin server answers");
    let body = response.body().limit(64 << 20).await.expect("a body");
    (
        response.status().as_u16(),
        String::from_utf8(body.to_vec()).expect("UTF-8"),
    )
}

/// Waits until `condition` holds on `/api/shards`, checking every 20 ms.
pub async fn wait_for_api(
    fleet: &Fleet,
    what: &str,
    condition: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = get(&format!("{}api/shards", fleet.admin.url()), None).await;
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        if condition(&json) {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {json:#}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}
