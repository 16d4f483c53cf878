use crate::harness::*;
use discore::{EventFilter, EventType, GetShardStatus, ShardId};
use discore_mock::{MockServer, Target, ViolationKind};
use std::time::Duration;

/// A slow subscriber (on its own thread) does not delay heartbeats, causes
/// no zombie reconnect, holds memory to the credit limit, and still gets
/// every event once and in order.
#[actix_rt::test]
async fn slow_subscriber_gets_everything_without_stalling_heartbeats() {
    const EVENTS: usize = 400;
    const CREDITS: usize = 16;
    // The emulator keeps every unread event queued instead of dropping a
    // slow reader, so any reconnect here would be the client's doing.
    let config = mock_config()
        .heartbeat_interval(Duration::from_millis(60))
        .max_outbox(100_000);
    let mock = MockServer::start(config).await.expect("emulator");
    let arbiter = actix::Arbiter::new();
    let slow = Recorded::start_slow(&arbiter.handle(), Duration::from_millis(3));
    let config = shard_config(&mock).event_credits(CREDITS);
    let addr = shard(config, &slow).start().await.expect("starts");
    let guild = mock.guild_ids()[0];
    let channel = mock.text_channel_ids(guild)[0];
    for i in 0..EVENTS {
        mock.post_message(channel, &format!("m{i}"))
            .expect("posted");
    }
    let mut most_outstanding = 0;
    while slow.count("MESSAGE_CREATE") < EVENTS {
        let status = addr.send(GetShardStatus).await.expect("status");
        most_outstanding = most_outstanding.max(status.events_outstanding);
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert_in_order_exactly_once(&slow.events());
    assert!(
        most_outstanding <= CREDITS,
        "at most {CREDITS} in flight, saw {most_outstanding}"
    );
    let status = addr.send(GetShardStatus).await.expect("status");
    assert_eq!(
        status.reconnects,
        0,
        "no false zombie reconnect: {:?} {:#?} {:#?}",
        slow.lifecycle(),
        mock.observed()
            .heartbeats
            .iter()
            .map(|h| h.at.as_millis())
            .collect::<Vec<_>>(),
        mock.observed()
            .connections
            .iter()
            .map(|c| (c.end, c.close_sent, c.close_received))
            .collect::<Vec<_>>()
    );
    let seen = mock.observed();
    assert_eq!(seen.connections.len(), 1);
    assert!(
        seen.violations_of(ViolationKind::HeartbeatMissed)
            .next()
            .is_none()
    );
    // The event flow took over a second; heartbeats kept their 60 ms beat.
    assert!(
        seen.heartbeats.len() >= 10,
        "{} heartbeats",
        seen.heartbeats.len()
    );
    arbiter.stop();
}

/// A subscriber that wants one event type gets only that type; events no
/// subscriber wants are not delivered at all.
#[actix_rt::test]
async fn filters_select_event_types() {
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    let everything = Recorded::start();
    let messages_only = Recorded::start();
    let _shard = discore::Shard::new(token(), ShardId::new(0, 1), shard_config(&mock))
        .subscribe(everything.addr.clone().recipient(), EventFilter::all())
        .subscribe(
            messages_only.addr.clone().recipient(),
            EventFilter::only([EventType::MessageCreate]),
        )
        .start()
        .await
        .expect("starts");
    let guild = mock.guild_ids()[0];
    let channel = mock.text_channel_ids(guild)[0];
    mock.dispatch(
        Some(&Target::Shard(0)),
        "SOMETHING_NEW",
        &serde_json::json!({}),
    );
    mock.post_message(channel, "hello").expect("posted");
    everything.wait_for_event("MESSAGE_CREATE", 1).await;
    messages_only.wait_for_event("MESSAGE_CREATE", 1).await;
    assert!(everything.count("SOMETHING_NEW") == 1 && everything.count("READY") == 1);
    assert_eq!(messages_only.names(), ["MESSAGE_CREATE"]);
}

/// Every delivered event carries its data exactly as the emulator sent it,
/// byte for byte: member order, whitespace inside the value, escapes,
/// number formats and fields twilight-model does not know, at every level,
/// and whether `d` comes last in the payload or not. Checked on a plain,
/// a zlib-stream and a zstd-stream connection.
#[actix_rt::test]
async fn events_carry_their_data_exactly_as_sent() {
    const MESSAGE: &str = r#"{"zz_unknown_first":{"nested":[1,2.50,-0.0,1e3,"\u00e9\n"]},
        "id":"9001","channel_id":"20","guild_id":"10","type":0,"content":"byte \"exact\" \u263A",
        "author":{"id":"30","username":"someone","discriminator":"0","avatar":null,"future_author_field":true},
        "timestamp":"2024-01-01T00:00:00.000000+00:00","edited_timestamp":null,"tts":false,
        "mention_everyone":false,"mentions":[],"mention_roles":[],"attachments":[],
        "embeds":[{"title":"t","type":"rich","unknown_embed_field":[{"deep":null}]}],"pinned":false,"flags":0,
        "channel_type":0}"#;
    const UNKNOWN: &str = r#"{ "guild_id" : "10", "sounds" : [ { "x" : 1 } ] }"#;
    for compression in [
        discore::Compression::None,
        discore::Compression::ZlibStream,
        discore::Compression::ZstdStream,
    ] {
        let (mock, recorded) = shard_on(compression).await;
        recorded.wait_for_event("GUILD_CREATE", 3).await;
        // The emulator's own events: it sends the JSON text of the value
        // it returns.
        let guild = mock.guild_ids()[0];
        let channel = mock.text_channel_ids(guild)[0];
        let (posted, _) = mock.post_message(channel, "posted").expect("posted");
        recorded.wait_for_event("MESSAGE_CREATE", 1).await;
        let first = recorded.events();
        let raw = first.last().and_then(|seen| seen.raw.clone());
        assert_eq!(raw.as_deref(), Some(posted.to_string().as_bytes()));
        // Then frames written by hand, with sequence numbers past anything
        // the emulator has sent.
        let frames = [
            format!(r#"{{"t":"MESSAGE_CREATE","s":1000001,"op":0,"d":{MESSAGE}}}"#),
            format!(r#"{{"op":0,"d":{UNKNOWN},"t":"SOUNDS_UPDATE","s":1000002}}"#),
        ];
        for frame in &frames {
            assert_eq!(mock.send_payload(&Target::Shard(0), frame.as_bytes()), 1);
        }
        recorded.wait_for_event("SOUNDS_UPDATE", 1).await;
        let events = recorded.events();
        let raw_of = |name: &str| {
            let seen = events
                .iter()
                .rfind(|seen| seen.name() == name)
                .unwrap_or_else(|| panic!("{name} delivered"));
            (seen.typed().is_some(), seen.raw.clone().expect("raw data"))
        };
        let (typed, raw) = raw_of("MESSAGE_CREATE");
        assert!(typed, "{compression:?}: typed as well: {events:#?}");
        assert_eq!(&raw[..], MESSAGE.as_bytes(), "{compression:?}");
        let (typed, raw) = raw_of("SOUNDS_UPDATE");
        assert!(!typed);
        assert_eq!(&raw[..], UNKNOWN.as_bytes(), "{compression:?}");
        mock.stop().await;
    }
}
