//! The admin server against a fleet on the emulator: `/metrics` parses and
//! says what the fleet did, `/api/shards` has the page's shape, a bearer
//! token is enforced, and the status page works in a real browser.

mod browser;
mod fleet;
mod prometheus;

use discore_admin::{
    AdminConfig, AdminServer, DEFAULT_ADDR, FleetSnapshot, ShardSnapshot, TileState,
};
use discore_mock::Target;
use fleet::{BUDGET, get, wait_for_api};

use std::net::{SocketAddr, TcpListener};

/// `/metrics` is valid text format and its numbers match what the fleet did,
/// including a resume after the emulator asked shard 0 to reconnect.
#[actix_rt::test]
async fn metrics_parse_and_count_what_the_fleet_did() {
    let fleet = fleet::start(6, AdminConfig::new()).await;
    assert_eq!(fleet.shards, 3);
    fleet.mock.reconnect(&Target::Shard(0));
    // Heartbeats every 200 ms: wait until each shard measured one and the
    // resume has been counted (lifecycle notifications arrive on their own).
    let deadline = std::time::Instant::now() + fleet::TIMEOUT;
    let (text, metrics) = loop {
        let (status, text) = get(&format!("{}metrics", fleet.admin.url()), None).await;
        assert_eq!(status, 200);
        let metrics = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let measured = ["0", "1", "2"].iter().all(|shard| {
            metrics
                .find(
                    "discore_heartbeat_latency_seconds_count",
                    &[("shard", shard)],
                )
                .first()
                .is_some_and(|s| s.value >= 1.0)
        });
        let resumed = metrics
            .find(
                "discore_reconnects_total",
                &[("shard", "0"), ("kind", "resume")],
            )
            .first()
            .is_some_and(|s| s.value >= 1.0);
        // A busy machine may delay a heartbeat ACK into a (resumed)
        // reconnect: judge a snapshot where every shard is active again.
        let active = ["0", "1", "2"].iter().all(|shard| {
            metrics
                .find(
                    "discore_shard_state",
                    &[("shard", shard), ("state", "active")],
                )
                .first()
                .is_some_and(|s| s.value == 1.0)
        }) && metrics
            .find("discore_fleet_ready", &[])
            .first()
            .is_some_and(|s| s.value == 1.0);
        if measured && resumed && active {
            break (text, metrics);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for latencies, a resume and every shard active:\n{text}"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    prometheus::check_conventions(&metrics).unwrap_or_else(|e| panic!("{e}\n{text}"));

    assert_eq!(metrics.value("discore_fleet_shard_count", &[]), 3.0);
    assert_eq!(metrics.value("discore_fleet_shards", &[]), 3.0);
    assert_eq!(metrics.value("discore_fleet_ready", &[]), 1.0);
    for shard in ["0", "1", "2"] {
        let states = metrics.find("discore_shard_state", &[("shard", shard)]);
        assert_eq!(
            states.len(),
            TileState::ALL.len(),
            "one-hot over every state"
        );
        assert_eq!(states.iter().map(|s| s.value).sum::<f64>(), 1.0);
        assert_eq!(
            metrics.value(
                "discore_shard_state",
                &[("shard", shard), ("state", "active")]
            ),
            1.0
        );
        assert_eq!(
            metrics.value("discore_shard_guilds_loaded", &[("shard", shard)]),
            2.0
        );
        let latency = metrics.value(
            "discore_heartbeat_latency_seconds_count",
            &[("shard", shard)],
        );
        assert!(latency >= 1.0, "shard {shard} measured no heartbeat");
        assert!(metrics.value("discore_inbound_wire_bytes_total", &[("shard", shard)]) > 0.0);
        assert!(
            metrics.value("discore_inbound_inflated_bytes_total", &[("shard", shard)])
                >= metrics.value("discore_inbound_wire_bytes_total", &[("shard", shard)]),
            "zlib-stream: more bytes after inflating"
        );
        assert_eq!(
            metrics.value(
                "discore_reconnects_total",
                &[("shard", shard), ("kind", "new_session")]
            ),
            0.0,
            "every reconnect resumed"
        );
    }
    let guild_creates: f64 = metrics
        .find(
            "discore_events_received_total",
            &[("event", "GUILD_CREATE")],
        )
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(guild_creates, fleet.guilds as f64);
    assert!(metrics.value("discore_resumes_total", &[("shard", "0")]) >= 1.0);
    // Every identify went through the metered queue and spent the budget;
    // the resume did not.
    let identifies: f64 = metrics
        .find("discore_identifies_total", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(identifies, 3.0, "one identify per shard: shard 0 resumed");
    assert_eq!(
        metrics.value("discore_identify_slots_granted_total", &[]),
        identifies
    );
    assert_eq!(metrics.value("discore_identify_queue_waiting", &[]), 0.0);
    assert_eq!(
        metrics.value("discore_identify_queue_wait_seconds_count", &[]),
        identifies
    );
    assert_eq!(
        metrics.value("discore_identify_budget_remaining", &[]),
        f64::from(BUDGET) - identifies
    );
    assert_eq!(
        metrics.value("discore_identify_budget_limit", &[]),
        f64::from(BUDGET)
    );
    fleet.stop().await;
}

/// `/api/shards` carries the fleet totals and one entry per shard with
/// everything a tile shows.
#[actix_rt::test]
async fn api_shards_has_the_pages_shape() {
    let fleet = fleet::start_with(
        6,
        AdminConfig::new().title("shape test"),
        std::time::Duration::from_secs(5),
    )
    .await;
    let json = wait_for_api(&fleet, "every shard active", |json| {
        json["fleet"]["states"]["active"] == 3
    })
    .await;
    assert_eq!(json["title"], "shape test");
    assert!(json["generated_at"].as_u64().is_some_and(|t| t > 0));
    assert_eq!(json["refresh_ms"], 2000);
    let totals = &json["fleet"];
    assert_eq!(totals["total"], 3);
    assert_eq!(totals["shards"], 3);
    assert_eq!(totals["ready"], true);
    assert_eq!(totals["guilds"], 6);
    assert_eq!(totals["guilds_loaded"], 6);
    assert_eq!(totals["identifies"], 3);
    assert_eq!(totals["identify"]["budget_remaining"], BUDGET - 3);
    assert!(totals["resharding"].is_null());
    for key in ["events", "events_per_second", "reconnects", "restarts"] {
        assert!(totals[key].is_number(), "fleet.{key}: {totals}");
    }
    let shards = json["shards"].as_array().expect("a list");
    assert_eq!(shards.len(), 3);
    for (i, shard) in shards.iter().enumerate() {
        assert_eq!(shard["id"], i);
        assert_eq!(shard["total"], 3);
        assert_eq!(shard["state"], "active");
        assert!(shard["failure"].is_null());
        assert_eq!(shard["guilds"], 2);
        assert_eq!(shard["guilds_loaded"], 2);
        assert!(shard["last_close_code"].is_null());
        for key in [
            "events",
            "events_per_second",
            "reconnects",
            "resumes",
            "restarts",
        ] {
            assert!(shard[key].is_number(), "shards[{i}].{key}: {shard}");
        }
    }
    fleet.stop().await;
}

/// A fixed two-shard snapshot, for tests that need no fleet.
fn fixed() -> FleetSnapshot {
    let mut failed = ShardSnapshot::bare(1, 2, TileState::Failed);
    failed.failure = Some("authentication failed".into());
    failed.last_close_code = Some(4004);
    FleetSnapshot {
        total: 2,
        shards: vec![ShardSnapshot::bare(0, 2, TileState::Active), failed],
        ..FleetSnapshot::default()
    }
}

fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("a free loopback port")
}

/// With a bearer token configured, data routes refuse requests without it
/// (or with another), and the page shell, which holds no data, loads.
#[actix_rt::test]
async fn the_bearer_token_is_enforced() {
    let admin = AdminServer::start_on(
        loopback(),
        AdminConfig::new().bearer_token("s3cret"),
        fixed(),
    )
    .expect("starts");
    let url = admin.url();
    for route in ["metrics", "api/shards"] {
        let (status, _) = get(&format!("{url}{route}"), None).await;
        assert_eq!(status, 401, "{route} without a token");
        let (status, _) = get(&format!("{url}{route}"), Some("guess")).await;
        assert_eq!(status, 401, "{route} with a wrong token");
        let (status, _) = get(&format!("{url}{route}"), Some("s3cre")).await;
        assert_eq!(status, 401, "{route} with a prefix of the token");
        let (status, body) = get(&format!("{url}{route}"), Some("s3cret")).await;
        assert_eq!(status, 200, "{route} with the token");
        assert!(body.contains("4004"), "{route}: {body}");
    }
    let response = fleet::client()
        .get(format!("{url}metrics"))
        .send()
        .await
        .expect("answers");
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"discore\"")
    );
    let (status, page) = get(&url, None).await;
    assert_eq!(status, 200);
    assert!(page.contains("api/shards") && !page.contains("4004"));
    assert!(!page.contains("s3cret"), "the page never carries the token");
    admin.stop().await;
}

/// The server listens on loopback unless told otherwise, and unknown routes
/// are 404.
#[actix_rt::test]
async fn binds_loopback_by_default() {
    assert!(DEFAULT_ADDR.ip().is_loopback());
    let config = AdminConfig::new();
    assert!(config.addr().ip().is_loopback());
    // The default address with a free port, to not collide with a demo.
    let ip = config.addr().ip();
    let config = config.bind(SocketAddr::new(ip, 0));
    let admin = AdminServer::start(config, fixed()).expect("starts");
    assert!(admin.local_addr().ip().is_loopback());
    let (status, _) = get(&format!("{}nothing-here", admin.url()), None).await;
    assert_eq!(status, 404);
    let (status, body) = get(&format!("{}metrics", admin.url()), None).await;
    assert_eq!(status, 200);
    let metrics = prometheus::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert_eq!(
        metrics.value(
            "discore_shard_state",
            &[("shard", "1"), ("state", "failed")]
        ),
        1.0
    );
    assert_eq!(
        metrics.value("discore_last_close_code", &[("shard", "1")]),
        4004.0
    );
    admin.stop().await;
}

/// A shard without a manager is served too: the page's data and the metrics
/// show it, with its reconnects counted by kind.
#[actix_rt::test]
async fn serves_a_shard_without_a_manager() {
    use discore::{EventFilter, Intents, Shard, ShardConfig, ShardId, Token};
    use std::time::Duration;

    fleet::init_logging();
    let mock = discore_mock::MockServer::start(
        discore_mock::MockConfig::new()
            .guilds(2)
            .heartbeat_interval(Duration::from_millis(200))
            .rest_rate_limit(None),
    )
    .await
    .expect("the emulator starts");
    let intents = Intents::GUILDS;
    let shard = Shard::new(
        Token::new("mock-token").expect("valid token"),
        ShardId::new(0, 1),
        ShardConfig::new(intents).gateway_url(mock.gateway_url()),
    )
    .subscribe(
        actix::Actor::start(fleet::Sink).recipient(),
        EventFilter::all(),
    )
    .start()
    .await
    .expect("the shard starts");
    let admin = AdminServer::start_on(
        loopback(),
        AdminConfig::new().min_refresh(Duration::ZERO),
        discore_admin::ShardSource::new(vec![shard.clone()]),
    )
    .expect("starts");
    mock.reconnect(&Target::Shard(0));
    let deadline = std::time::Instant::now() + fleet::TIMEOUT;
    loop {
        let (status, body) = get(&format!("{}metrics", admin.url()), None).await;
        assert_eq!(status, 200);
        let metrics = prometheus::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        let resumed = metrics
            .find(
                "discore_reconnects_total",
                &[("shard", "0"), ("kind", "resume")],
            )
            .first()
            .is_some_and(|s| s.value >= 1.0);
        if resumed {
            assert_eq!(metrics.value("discore_fleet_shard_count", &[]), 1.0);
            assert_eq!(
                metrics.value("discore_shard_guilds", &[("shard", "0")]),
                2.0
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no resume counted:\n{body}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, body) = get(&format!("{}api/shards", admin.url()), None).await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["shards"].as_array().map(Vec::len), Some(1));
    assert_eq!(json["fleet"]["total"], 1);
    assert!(json["fleet"]["identify"].is_null(), "no metered queue here");
    admin.stop().await;
    let _ = shard.send(discore::Shutdown(discore::StopMode::End)).await;
    mock.stop().await;
}
