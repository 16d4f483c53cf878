//! discore's log records carry their facts as key-values (`log`'s `kv`):
//! a JSON logger or a tracing subscriber can filter by shard, group by
//! session and count close codes, while the message stays readable. Checked
//! on a real fleet against the emulator, through a logger that keeps every
//! record as a JSON object, as a JSON logger would write it.

use actix::prelude::*;
use discore::{
    Backoff, DiscoveryConfig, GatewayEvent, IdentifyConfig, IdentifyLimits, Intents, ManagerConfig,
    ShardConfig, ShardManager, ShutdownFleet, StopMode, Token, WaitUntilReady,
};
use discore_mock::{MockConfig, MockServer, Target};
use log::kv::{Key, Value, VisitSource};
use serde_json::{Map, Value as Json};
use std::{
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// The token of this run: no record may show it.
const TOKEN: &str = "json-logs-token";
/// Every wait's bound, generous for a busy 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Every record of discore's crates, as JSON objects.
struct Capture(Mutex<Vec<Json>>);

/// Puts each key-value into a JSON object, as a JSON logger does.
struct ToJson<'a>(&'a mut Map<String, Json>);

impl<'kvs> VisitSource<'kvs> for ToJson<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let json = if let Some(n) = value.to_u64() {
            Json::from(n)
        } else if let Some(b) = value.to_bool() {
            Json::from(b)
        } else {
            Json::from(value.to_string())
        };
        self.0.insert(key.as_str().to_owned(), json);
        Ok(())
    }
}

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("discore")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut fields = Map::new();
        fields.insert("level".into(), record.level().as_str().into());
        fields.insert("target".into(), record.target().into());
        fields.insert("message".into(), record.args().to_string().into());
        let _ = record.key_values().visit(&mut ToJson(&mut fields));
        if let Ok(mut records) = self.0.lock() {
            records.push(Json::Object(fields));
        }
    }

    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(capture).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Debug);
        capture
    })
}

/// The records whose message contains `text`.
fn records(text: &str) -> Vec<Json> {
    capture()
        .0
        .lock()
        .map(|records| {
            records
                .iter()
                .filter(|r| r["message"].as_str().is_some_and(|m| m.contains(text)))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// How many records there are so far.
fn recorded() -> usize {
    capture().0.lock().map(|r| r.len()).unwrap_or_default()
}

/// Waits until a record matching `found` exists.
async fn wait_for(what: &str, found: impl Fn(&Json) -> bool) -> Json {
    wait_for_since(0, what, found).await
}

/// Waits until a record matching `found` exists among those from the
/// `since`th on.
async fn wait_for_since(since: usize, what: &str, found: impl Fn(&Json) -> bool) -> Json {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(record) = records("").into_iter().skip(since).find(|r| found(r)) {
            return record;
        }
        assert!(Instant::now() < deadline, "no record: {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Sink;

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for Sink {
    type Result = ();
    fn handle(&mut self, _: GatewayEvent, _: &mut Context<Self>) {}
}

#[actix_rt::test]
async fn lifecycle_connection_and_fleet_records_carry_their_fields() {
    capture();
    let mock = MockServer::start(
        MockConfig::new()
            .token(TOKEN)
            .guilds(4)
            .max_guilds_per_shard(2)
            .max_concurrency(2)
            // Short, so shard 0's connection proves healthy (a heartbeat
            // acknowledged) within the test.
            .heartbeat_interval(Duration::from_millis(100))
            .rest_rate_limit(None),
    )
    .await
    .expect("the emulator starts");
    let intents = Intents::GUILDS;
    let manager = ShardManager::start(
        ManagerConfig::new(Token::new(TOKEN).expect("a token's shape"), intents)
            .discovery(DiscoveryConfig::at(mock.rest_url()))
            .identify(IdentifyConfig::in_memory(IdentifyLimits::default()))
            .shard_config(ShardConfig::new(intents).backoff(Backoff {
                base: Duration::from_millis(20),
                cap: Duration::from_millis(200),
            })),
        Sink.start().recipient(),
    )
    .await
    .expect("the fleet starts");
    actix_rt::time::timeout(TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("ready in time")
        .expect("the manager answers")
        .expect("the fleet gets ready");

    // Fleet records: the total.
    let ready = wait_for("fleet ready", |r| {
        r["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("fleet ready"))
    })
    .await;
    assert_eq!(ready["total"], 2, "{ready}");
    assert_eq!(ready["target"], "discore_manager::manager::progress");

    // Lifecycle records: shard, total and session, beside a readable text.
    for shard in [0, 1] {
        let record = wait_for("a shard's ready", |r| {
            r["shard"] == shard
                && r["message"]
                    .as_str()
                    .is_some_and(|m| m.ends_with(": ready"))
        })
        .await;
        assert_eq!(record["total"], 2, "{record}");
        assert!(
            record["session"].as_str().is_some_and(|s| !s.is_empty()),
            "{record}"
        );
        assert_eq!(record["level"], "INFO");
    }

    // Connection records: the close code, then the reconnect's attempt and
    // delay, then the resume of the same session.
    // A connection is healthy once a heartbeat was acknowledged: the client
    // sends its second heartbeat only after the first one's ACK.
    mock.wait_until(TIMEOUT, |o| {
        o.connections
            .iter()
            .filter(|c| c.shard == Some([0, 2]) && c.closed_at.is_none())
            .any(|c| {
                o.heartbeats
                    .iter()
                    .filter(|h| h.connection == c.id && h.acked)
                    .count()
                    >= 2
            })
    })
    .await
    .expect("shard 0 heartbeats");
    let before = recorded();
    assert_eq!(mock.close(&Target::Shard(0), 4000), 1);
    let closed = wait_for_since(before, "the disconnect", |r| {
        r["shard"] == 0 && r["close_code"] == 4000
    })
    .await;
    assert!(
        closed["message"]
            .as_str()
            .is_some_and(|m| m.contains("disconnected (close code Some(4000), by the gateway)")),
        "{closed}"
    );
    let reconnecting = wait_for_since(before, "the reconnect's attempt", |r| {
        r["shard"] == 0 && r.get("delay_ms").is_some()
    })
    .await;
    // The first attempt after a healthy connection goes out at once.
    assert_eq!(reconnecting["attempt"], 1, "{reconnecting}");
    assert_eq!(reconnecting["delay_ms"], 0, "{reconnecting}");
    let resumed = wait_for_since(before, "the resume", |r| {
        r["shard"] == 0
            && r["message"]
                .as_str()
                .is_some_and(|m| m.ends_with(": resumed"))
    })
    .await;
    let session = records(": ready")
        .into_iter()
        .find(|r| r["shard"] == 0)
        .map(|r| r["session"].clone());
    assert_eq!(
        Some(resumed["session"].clone()),
        session,
        "the same session"
    );

    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("the manager answers")
        .expect("the fleet stops");
    mock.stop().await;

    // The token is no value and in no message.
    let all = records("");
    assert!(all.len() > 10, "records were captured: {}", all.len());
    for record in all {
        assert!(!record.to_string().contains(TOKEN), "{record}");
    }
}

/// A 4014 refusal's record carries the close code and a reason that names
/// the privileged intent.
#[actix_rt::test]
async fn a_failure_record_carries_its_close_code() {
    capture();
    let mock = MockServer::start(
        MockConfig::new()
            .token(TOKEN)
            .guilds(1)
            .granted_intents(Intents::empty()),
    )
    .await
    .expect("the emulator starts");
    let start = actix_rt::time::timeout(
        TIMEOUT,
        discore::Shard::new(
            Token::new(TOKEN).expect("a token's shape"),
            discore::ShardId::new(0, 1),
            ShardConfig::new(Intents::GUILDS | Intents::GUILD_PRESENCES)
                .gateway_url(mock.gateway_url()),
        )
        .start(),
    )
    .await
    .expect("refused in time");
    assert!(start.is_err());
    let failed = wait_for("the failure", |r| {
        r["close_code"] == 4014 && r["level"] == "ERROR"
    })
    .await;
    assert_eq!(failed["shard"], 0);
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("privileged intent GUILD_PRESENCES not enabled")),
        "{failed}"
    );
    mock.stop().await;
}
