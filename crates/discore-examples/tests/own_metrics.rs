//! `examples/own_metrics.rs` against the emulator: the bot's own endpoint
//! serves its own metric and discore's families from one registry, in a
//! format the strict parser of `tests/admin` accepts.

#[allow(dead_code)]
#[path = "../../../examples/own_metrics.rs"]
mod own_metrics;
#[allow(dead_code)]
#[path = "../../../tests/admin/prometheus.rs"]
mod prometheus;

use std::{net::TcpListener, time::Duration};

/// Every wait's bound: generous for a busy 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(30);

async fn scrape(url: &str) -> (u16, String, String) {
    let mut response = awc::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("the endpoint answers");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.body().await.expect("a body");
    (
        response.status().as_u16(),
        content_type,
        String::from_utf8(body.to_vec()).expect("UTF-8"),
    )
}

#[actix_rt::test]
async fn the_bots_registry_serves_discores_metrics_without_the_admin_server() {
    let (mock, config) = own_metrics::emulator().await.expect("the emulator starts");
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let bot = own_metrics::start(config, listener)
        .await
        .expect("the bot starts");
    actix_rt::time::timeout(TIMEOUT, bot.manager.send(discore::WaitUntilReady))
        .await
        .expect("ready in time")
        .expect("the manager answers")
        .expect("the fleet gets ready");
    let url = format!("http://{}/metrics", bot.metrics_addr);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let (status, content_type, text) = scrape(&url).await;
        assert_eq!(status, 200, "{text}");
        assert!(content_type.starts_with("application/openmetrics-text"));
        let metrics = prometheus::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let handled = metrics.value("bot_events_handled_total", &[]);
        let ready = metrics.value("discore_fleet_ready", &[]);
        if handled >= 1.0 && ready == 1.0 {
            assert_eq!(metrics.value("discore_fleet_shard_count", &[]), 2.0);
            for shard in ["0", "1"] {
                assert_eq!(
                    metrics.value(
                        "discore_shard_state",
                        &[("shard", shard), ("state", "active")]
                    ),
                    1.0,
                    "{text}"
                );
                assert_eq!(
                    metrics.value("discore_identifies_total", &[("shard", shard)]),
                    1.0
                );
            }
            // Every discore family keeps the conventions, in the bot's
            // registry as in the admin server's.
            let discore = prometheus::Exposition {
                families: metrics
                    .families
                    .into_iter()
                    .filter(|(name, _)| name.starts_with("discore_"))
                    .collect(),
            };
            prometheus::check_conventions(&discore).unwrap_or_else(|e| panic!("{e}\n{text}"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no event handled or the fleet not ready:\n{text}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    bot.stop().await.expect("the bot stops");
    mock.stop().await;
}
