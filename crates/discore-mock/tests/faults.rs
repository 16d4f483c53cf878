//! Faults on demand, the traffic generator and the flood mode, driven with
//! a plain awc WebSocket client.

mod common;

use common::{
    Received, TIMEOUT, config, connect, connect_json, identify, resume, session_id, start,
    try_connect,
};
use discore_mock::{ConnectionEnd, Target, TrafficConfig, TrafficMix};
use serde_json::json;
use std::time::{Duration, Instant};

/// Op 7 on demand; the emulator closes 4000 if the client does not.
#[actix_rt::test]
async fn reconnect_then_server_closes() {
    let mock = start(config().reconnect_close_after(Some(Duration::from_millis(50)))).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, None).await;
    assert_eq!(mock.reconnect(&Target::Shard(0)), 1);
    let reconnect = client.until_op(7).await;
    assert!(reconnect["d"].is_null());
    assert_eq!(client.close_code().await, Some(4000));
    // 4000 keeps the session.
    mock.wait_until(TIMEOUT, |o| o.open_connections() == 0)
        .await
        .expect("closed");
    assert!(mock.observed().sessions[0].alive);
    mock.stop().await;
}

/// The next N connections get op 7 instead of Hello.
#[actix_rt::test]
async fn reconnect_instead_of_hello() {
    let mock = start(config()).await;
    mock.reconnect_instead_of_hello(1);
    let mut first = connect_json(&mock.gateway_url()).await;
    assert_eq!(first.payload_next().await["op"], 7);
    let mut second = connect_json(&mock.gateway_url()).await;
    assert_eq!(second.payload_next().await["op"], 10);
    mock.stop().await;
}

/// Op 9 true keeps the session; op 9 false destroys it and the socket can
/// identify again.
#[actix_rt::test]
async fn invalid_session_on_demand() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, None).await;
    mock.invalid_session(&Target::All, true);
    assert_eq!(client.until_op(9).await["d"], true);
    assert!(mock.observed().sessions[0].alive);
    mock.invalid_session(&Target::All, false);
    assert_eq!(client.until_op(9).await["d"], false);
    mock.wait_until(TIMEOUT, |o| !o.sessions[0].alive)
        .await
        .expect("destroyed");
    client.identify_in_turn(1, None).await;
    client.until_event("READY").await;
    assert!(mock.observed().violations.is_empty());
    mock.stop().await;
}

/// Closing with each gateway code; the session survives exactly for the
/// codes after which Discord's documentation has the client resume (the
/// others: 4003 the session was invalidated, 4004/4010-4014 do not
/// reconnect, 4007/4009 start a new session).
#[actix_rt::test]
async fn close_with_every_code() {
    let mock = start(config()).await;
    let codes = [
        4000, 4001, 4002, 4003, 4004, 4005, 4007, 4008, 4009, 4010, 4011, 4012, 4013, 4014,
    ];
    for code in codes {
        let mut client = connect_json(&mock.gateway_url()).await;
        client.ready(1, None).await;
        let target = Target::Connection(mock.observed().last_connection().expect("conn").id);
        assert_eq!(mock.close(&target, code), 1);
        assert_eq!(client.close_code().await, Some(code));
    }
    mock.wait_until(TIMEOUT, |o| o.open_connections() == 0)
        .await
        .expect("closed");
    let seen = mock.observed();
    for (session, code) in seen.sessions.iter().zip(codes) {
        let resumable = matches!(code, 4000 | 4001 | 4002 | 4005 | 4008);
        assert_eq!(session.alive, resumable, "code {code}");
    }
    assert!(
        seen.connections
            .iter()
            .all(|c| c.end == Some(ConnectionEnd::ServerClosed))
    );
    mock.stop().await;
}

/// A TCP drop without a close frame; the session stays resumable.
#[actix_rt::test]
async fn drop_tcp() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    let ready = client.ready(1, None).await;
    let session = session_id(&ready);
    mock.drop_connection(&Target::Shard(0));
    loop {
        match client.recv().await {
            Received::Payload(_) => {}
            Received::Ended => break,
            other => panic!("expected the TCP to end, got {other:?}"),
        }
    }
    let mut client = connect_json(&mock.resume_url()).await;
    client.hello().await;
    client.send(&resume(&session, 1)).await;
    client.until_event("RESUMED").await;
    mock.stop().await;
}

/// Dispatches still queued when the emulator closes a connection are
/// written ahead of the close frame: they count as written, so a resume
/// from the last of them is valid, not an invalid sequence.
#[actix_rt::test]
async fn dispatches_written_before_a_close_count_as_written() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    let ready = client.ready(1, None).await;
    let session = session_id(&ready);
    // Hold the frames, queue three dispatches behind the stall, then close:
    // the three leave only with the close.
    mock.stall(&Target::All, Duration::from_secs(30));
    mock.wait_until(TIMEOUT, |_| true).await.expect("noop");
    for i in 0..3 {
        mock.dispatch(Some(&Target::Shard(0)), "CUSTOM", &json!({"i": i}));
    }
    assert_eq!(mock.close(&Target::Shard(0), 4000), 1);
    let mut last = 0;
    let code = loop {
        match client.recv().await {
            Received::Payload(payload) => {
                if let Some(seq) = payload["s"].as_u64() {
                    last = seq;
                }
            }
            Received::Close(code) => break code,
            other => panic!("expected dispatches then a close, got {other:?}"),
        }
    };
    assert_eq!(code, Some(4000));
    assert!(
        last >= 4,
        "the three dispatches came before the close: {last}"
    );
    let mut client = connect_json(&mock.resume_url()).await;
    client.hello().await;
    client.send(&resume(&session, last)).await;
    client.until_event("RESUMED").await;
    let seen = mock.observed();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    mock.stop().await;
}

/// Heartbeat ACKs stop and restart on demand; op 1 asks for a heartbeat.
#[actix_rt::test]
async fn heartbeat_faults() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, None).await;
    mock.set_heartbeat_acks(&Target::All, false);
    mock.request_heartbeat(&Target::All);
    assert_eq!(client.until_op(1).await["op"], 1);
    client.send(&json!({"op": 1, "d": client.seq})).await;
    mock.wait_until(TIMEOUT, |o| o.heartbeats.len() == 1)
        .await
        .expect("heartbeat");
    assert!(!mock.observed().heartbeats[0].acked);
    mock.set_heartbeat_acks(&Target::All, true);
    mock.wait_until(TIMEOUT, |_| true).await.expect("noop");
    // Acks flow again; the unacknowledged heartbeat left no ACK behind.
    for _ in 0..2 {
        client.send(&json!({"op": 1, "d": client.seq})).await;
        assert_eq!(client.until_op(11).await["op"], 11);
    }
    let seen = mock.observed();
    let acked: Vec<bool> = seen.heartbeats.iter().map(|h| h.acked).collect();
    assert_eq!(acked, [false, true, true]);
    mock.stop().await;
}

/// Stalled frames arrive only after the stall, in order.
#[actix_rt::test]
async fn stall_and_delay_hold_frames() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, None).await;
    client.dispatches(3).await;
    let started = Instant::now();
    mock.stall(&Target::All, Duration::from_millis(200));
    mock.wait_until(TIMEOUT, |_| true).await.expect("noop");
    for i in 0..3 {
        mock.dispatch(Some(&Target::Shard(0)), "CUSTOM", &json!({"i": i}));
    }
    let got = client.dispatches(3).await;
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        got.iter().map(|p| p["d"]["i"].clone()).collect::<Vec<_>>(),
        [0, 1, 2]
    );

    let started = Instant::now();
    mock.fault(
        &Target::All,
        discore_mock::Fault::Delay {
            millis: 150,
            for_millis: 10_000,
        },
    );
    mock.wait_until(TIMEOUT, |_| true).await.expect("noop");
    mock.dispatch(Some(&Target::Shard(0)), "CUSTOM", &json!({"i": 3}));
    client.dispatches(1).await;
    assert!(
        started.elapsed() >= Duration::from_millis(140),
        "{:?}",
        started.elapsed()
    );
    mock.stop().await;
}

/// A corrupted compressed frame breaks the client's inflater; malformed
/// JSON breaks its parser.
#[actix_rt::test]
async fn corrupt_frame_and_malformed_json() {
    let mock = start(config()).await;
    for compress in ["zlib-stream", "zstd-stream"] {
        let query = format!("v=10&encoding=json&compress={compress}");
        let mut client = connect(&mock.gateway_url(), &query).await;
        client.ready(1, None).await;
        client.dispatches(3).await;
        mock.corrupt_next_frame(&Target::Connection(
            mock.observed().last_connection().expect("c").id,
        ));
        assert!(
            matches!(client.recv().await, Received::Undecodable(_)),
            "{compress}"
        );
    }
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, None).await;
    client.dispatches(3).await;
    mock.send_malformed_json(&Target::Connection(
        mock.observed().last_connection().expect("c").id,
    ));
    assert!(matches!(client.recv().await, Received::Undecodable(_)));
    mock.stop().await;
}

/// Adding guilds past a shard's capacity closes it with 4011, a new
/// identify with the old count gets 4011, and the recommended count grows.
#[actix_rt::test]
async fn add_guilds_forces_resharding() {
    let mock = start(config().guilds(2).max_guilds_per_shard(2)).await;
    assert_eq!(mock.recommended_shards(), 1);
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, Some([0, 1])).await;
    let added = mock.add_guilds(2);
    assert_eq!(added.len(), 2);
    assert_eq!(client.close_code().await, Some(4011));
    assert_eq!(mock.recommended_shards(), 2);
    let mut again = connect_json(&mock.gateway_url()).await;
    again.hello().await;
    again.send(&identify(1, Some([0, 1]))).await;
    assert_eq!(again.close_code().await, Some(4011));
    for shard in 0..2 {
        let mut client = connect_json(&mock.gateway_url()).await;
        let ready = client.ready(1, Some([shard, 2])).await;
        assert_eq!(ready["d"]["guilds"].as_array().map(Vec::len), Some(2));
    }
    mock.stop().await;
}

/// An outage answers upgrades with 503 until it ends.
#[actix_rt::test]
async fn outage_refuses_connections() {
    let mock = start(config()).await;
    mock.outage(Duration::from_millis(150));
    let refused = try_connect(&mock.gateway_url(), "v=10&encoding=json").await;
    assert!(refused.is_err());
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(mut client) = try_connect(&mock.gateway_url(), "v=10&encoding=json").await {
            client.hello().await;
            break;
        }
        assert!(Instant::now() < deadline, "the outage never ended");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    mock.stop().await;
}

/// `dispatch` returns the sequence each session gave the event, and the
/// client sees exactly those.
#[actix_rt::test]
async fn dispatch_returns_sequences() {
    let mock = start(config().guilds(2)).await;
    let guild = mock.guild_ids()[1];
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1 | 512, None).await;
    client.dispatches(2).await;
    let deliveries = mock.dispatch_to_guild(
        guild,
        "GUILD_UPDATE",
        &json!({"guild_id": guild.to_string(), "id": guild.to_string()}),
    );
    assert_eq!(deliveries.len(), 1);
    let seen = client.until_event("GUILD_UPDATE").await;
    assert_eq!(seen["s"], deliveries[0].sequence);
    let channel = mock.text_channel_ids(guild)[0];
    let (message, deliveries) = mock.post_message(channel, "hi").expect("posted");
    let seen = client.until_event("MESSAGE_CREATE").await;
    assert_eq!(seen["s"], deliveries[0].sequence);
    assert_eq!(seen["d"]["id"], message["id"]);
    assert_eq!(seen["d"]["guild_id"], guild.to_string());
    mock.stop().await;
}

/// The generator sends a mix of events to connected shards, and stops.
#[actix_rt::test]
async fn traffic_generator() {
    let mock = start(config().guilds(2)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(common::ALL_USEFUL, None).await;
    client.dispatches(2).await;
    mock.start_traffic(TrafficConfig {
        rate_per_shard: 500.0,
        mix: TrafficMix {
            messages: 1,
            typing: 1,
            reactions: 1,
            presences: 1,
            member_updates: 1,
        },
        tick_millis: 5,
    });
    let events = client.dispatches(100).await;
    mock.stop_traffic();
    let mut kinds: Vec<String> = events
        .iter()
        .filter_map(|e| e["t"].as_str().map(str::to_owned))
        .collect();
    kinds.sort();
    kinds.dedup();
    assert!(kinds.len() >= 4, "{kinds:?}");
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["s"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    mock.stop().await;
}

/// A flood sends K MESSAGE_CREATEs with consecutive sequence numbers, as
/// fast as the client reads, plain and compressed. Floods share payload
/// pools between equal sessions, never between sessions whose intents
/// differ: without MESSAGE_CONTENT the content stays blank.
#[actix_rt::test]
async fn flood_mode() {
    let mock = start(config().guilds(2)).await;
    let guilds: Vec<String> = mock.guild_ids().iter().map(u64::to_string).collect();
    for (query, intents) in [
        ("v=10&encoding=json", 1 | 512 | 32768),
        ("v=10&encoding=json&compress=zlib-stream", 1 | 512 | 32768),
        ("v=10&encoding=json", 1 | 512),
    ] {
        let mut client = connect(&mock.gateway_url(), query).await;
        client.ready(intents, None).await;
        client.dispatches(2).await;
        let first = client.seq.expect("seq") + 1;
        let id = mock.observed().last_connection().expect("connection").id;
        let flood = mock.flood(&Target::Connection(id), 3000);
        let messages = client.dispatches(3000).await;
        for (i, message) in messages.iter().enumerate() {
            assert_eq!(message["t"], "MESSAGE_CREATE");
            assert_eq!(message["s"], first + i as u64);
            let guild = message["d"]["guild_id"].as_str().expect("guild_id");
            assert!(guilds.iter().any(|g| g == guild), "{guild} not the shard's");
            let content = message["d"]["content"].as_str().expect("content");
            assert_eq!(content.is_empty(), intents & 32768 == 0, "{content:?}");
        }
        let report = flood.finished().await;
        assert_eq!((report.connections, report.sent), (1, 3000));
        let size = messages[0]["d"].to_string().len();
        assert!(
            (500..3000).contains(&size),
            "a MESSAGE_CREATE is about 1 KB, got {size}"
        );
    }
    mock.stop().await;
}

/// The HTTP control endpoints drive the same faults.
#[actix_rt::test]
async fn http_control_endpoints() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, None).await;
    let http = awc::Client::default();
    let base = format!("http://{}/_mock", mock.addr());
    let mut response = http
        .post(format!("{base}/fault"))
        .send_json(&json!({"target": {"shard": 0}, "fault": {"type": "request_heartbeat"}}))
        .await
        .expect("fault posted");
    assert!(response.status().is_success());
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["connections"], 1);
    client.until_op(1).await;

    let mut response = http
        .post(format!("{base}/dispatch"))
        .send_json(&json!({"target": "all", "event": "CUSTOM", "data": {"x": 1}}))
        .await
        .expect("dispatch posted");
    let body: serde_json::Value = response.json().await.expect("json");
    let seq = body["deliveries"][0]["sequence"].clone();
    let custom = client.until_event("CUSTOM").await;
    assert_eq!(custom["s"], seq);

    let mut response = http
        .get(format!("{base}/observed"))
        .send()
        .await
        .expect("observed");
    let observed: serde_json::Value = response.json().limit(16 << 20).await.expect("json");
    assert_eq!(observed["connections"][0]["received"][0]["op"], 2);

    let mut response = http
        .get(format!("{base}/world"))
        .send()
        .await
        .expect("world");
    let world: serde_json::Value = response.json().await.expect("json");
    assert_eq!(world["guilds"].as_array().map(Vec::len), Some(3));

    let response = http
        .post(format!("{base}/fault"))
        .send_json(&json!({"target": "all", "fault": {"type": "close", "code": 4009}}))
        .await
        .expect("close posted");
    assert!(response.status().is_success());
    assert_eq!(client.close_code().await, Some(4009));
    mock.stop().await;
}

/// A client that does not read is dropped once `max_outbox` dispatches wait
/// for it; its session stays resumable.
#[actix_rt::test]
async fn slow_consumer_is_dropped() {
    let mock = start(config().max_outbox(10)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, None).await;
    client.dispatches(3).await;
    mock.stall(&Target::All, Duration::from_secs(30));
    mock.wait_until(TIMEOUT, |_| true).await.expect("noop");
    let big = "x".repeat(100_000);
    for i in 0..40 {
        mock.dispatch(
            Some(&Target::Shard(0)),
            "CUSTOM",
            &json!({"i": i, "pad": big}),
        );
    }
    loop {
        match client.recv().await {
            Received::Payload(_) => {}
            Received::Ended => break,
            other => panic!("expected a drop, got {other:?}"),
        }
    }
    mock.wait_until(TIMEOUT, |o| o.open_connections() == 0)
        .await
        .expect("ended");
    let seen = mock.observed();
    assert_eq!(seen.connections[0].end, Some(ConnectionEnd::ServerDropped));
    assert!(seen.sessions[0].alive);
    mock.stop().await;
}
