use crate::harness::*;
use discore::{DispatchEvent, GetShardStatus, Lifecycle, ShardState};
use discore_mock::Target;
use serde_json::json;

/// A started shard sees READY, then one GUILD_CREATE per guild, in order.
#[actix_rt::test]
async fn ready_then_one_guild_create_per_guild() {
    let (mock, recorded, shard) = ready_shard().await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    let names = recorded.names();
    assert_eq!(
        names[..4],
        ["READY", "GUILD_CREATE", "GUILD_CREATE", "GUILD_CREATE"]
    );
    let events = recorded.events();
    assert!(matches!(events[0].typed(), Some(DispatchEvent::Ready(_))));
    assert!(matches!(
        events[1].typed(),
        Some(DispatchEvent::GuildCreate(_))
    ));
    assert_in_order_exactly_once(&events);
    assert!(
        events
            .iter()
            .all(|e| e.shard == discore::ShardId::new(0, 1))
    );
    assert!(matches!(
        recorded.lifecycle()[..],
        [Lifecycle::Connected, Lifecycle::Ready { .. }]
    ));
    let status = shard.send(GetShardStatus).await.expect("status");
    assert_eq!(status.state, ShardState::Active);
    assert_eq!((status.guilds, status.guilds_loaded), (3, 3));
    assert!(status.is_fully_loaded());
    assert_eq!(status.events_by_type.get("GUILD_CREATE"), Some(&3));
    assert_eq!(status.events_by_type.get("READY"), Some(&1));
    assert!(status.inflated_bytes > 0 && status.inbound_bytes > 0);
    assert_eq!(mock.observed().identifies_total(), 1);
    assert_no_violations(&mock);
}

/// Messages posted through REST arrive typed, once each, in sequence order.
#[actix_rt::test]
async fn dispatches_arrive_in_order_exactly_once() {
    let (mock, recorded, _shard) = ready_shard().await;
    let guild = mock.guild_ids()[0];
    let channel = mock.text_channel_ids(guild)[0];
    for i in 0..200 {
        mock.post_message(channel, &format!("message {i}"))
            .expect("posted");
    }
    recorded.wait_for_event("MESSAGE_CREATE", 200).await;
    let events = recorded.events();
    assert_in_order_exactly_once(&events);
    let contents: Vec<String> = events
        .iter()
        .filter_map(|e| match e.typed() {
            Some(DispatchEvent::MessageCreate(message)) => Some(message.content.clone()),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (0..200).map(|i| format!("message {i}")).collect();
    assert_eq!(contents, expected);
    assert_no_violations(&mock);
}

/// An event twilight-model does not know is delivered raw, not dropped.
#[actix_rt::test]
async fn unknown_dispatch_is_delivered_raw() {
    let (mock, recorded, _shard) = ready_shard().await;
    mock.dispatch(
        Some(&Target::Shard(0)),
        "BRAND_NEW_EVENT",
        &json!({"answer": 42}),
    );
    recorded.wait_for_event("BRAND_NEW_EVENT", 1).await;
    let events = recorded.events();
    let raw = events
        .iter()
        .find(|e| e.name() == "BRAND_NEW_EVENT")
        .expect("delivered");
    let discore::Dispatch::Raw(raw) = &*raw.event else {
        panic!("an unknown event is raw");
    };
    assert_eq!(raw.data.get(), r#"{"answer":42}"#);
}

/// Heartbeats carry the last sequence, are acknowledged, and measure latency.
#[actix_rt::test]
async fn heartbeats_carry_the_sequence_and_measure_latency() {
    let (mock, recorded, shard) = ready_shard().await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    mock.wait_until(PATIENCE, |seen| {
        seen.heartbeats.iter().filter(|h| h.acked).count() >= 3
    })
    .await
    .expect("three acknowledged heartbeats");
    let seen = mock.observed();
    let last = seen.heartbeats.last().expect("a heartbeat");
    assert_eq!(last.sequence, Some(4), "READY + 3 GUILD_CREATE");
    let status = shard.send(GetShardStatus).await.expect("status");
    assert!(status.latency.last().is_some());
    assert!(status.latency.average().is_some());
    assert_no_violations(&mock);
}

/// A server op 1 is answered at once, outside the regular schedule.
#[actix_rt::test]
async fn server_heartbeat_request_is_answered_at_once() {
    let mock = discore_mock::MockServer::start(
        mock_config().heartbeat_interval(std::time::Duration::from_secs(30)),
    )
    .await
    .expect("emulator");
    let recorded = Recorded::start();
    let _shard = shard(shard_config(&mock), &recorded)
        .start()
        .await
        .expect("starts");
    // With a 30 s interval at most one scheduled beat can come during the
    // test, so three requests answered prove the immediate answer.
    let before = mock.observed().heartbeats.len();
    for answered in 1..=3 {
        mock.request_heartbeat(&Target::Shard(0));
        mock.wait_until(PATIENCE, |seen| seen.heartbeats.len() >= before + answered)
            .await
            .expect("an immediate heartbeat");
    }
}
