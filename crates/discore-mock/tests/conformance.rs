//! Conformance of the emulator to Discord's gateway rules
//! (<https://discord.com/developers/docs/events/gateway>), driven with a
//! plain awc WebSocket client (not discore's Shard).

mod common;

use common::{
    ALL_USEFUL, Received, TIMEOUT, config, connect, connect_json, identify, resume, session_id,
    start,
};
use discore_mock::{BadSequenceBehaviour, Intents, ResumeOutcome, Target, ViolationKind};
use serde_json::{Value, json};
use std::time::Duration;

fn has_violation(mock: &discore_mock::MockServer, kind: ViolationKind) -> bool {
    mock.observed().violations_of(kind).next().is_some()
}

/// Hello first, with the configured interval.
#[actix_rt::test]
async fn hello_carries_the_configured_interval() {
    let mock = start(config().heartbeat_interval(Duration::from_millis(1234))).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    let hello = client.payload_next().await;
    assert_eq!(hello["op"], 10);
    assert_eq!(hello["d"]["heartbeat_interval"], 1234);
    assert!(hello["s"].is_null() && hello["t"].is_null());
    mock.stop().await;
}

/// Every heartbeat is acknowledged, before and after Identify.
#[actix_rt::test]
async fn every_heartbeat_is_acked() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    for _ in 0..3 {
        client.send(&json!({"op": 1, "d": null})).await;
        assert_eq!(client.until_op(11).await["op"], 11);
    }
    client.send(&identify(1, None)).await;
    client.until_event("READY").await;
    client.send(&json!({"op": 1, "d": 1})).await;
    client.until_op(11).await;
    let seen = mock.observed();
    assert_eq!(seen.heartbeats.len(), 4);
    assert!(seen.heartbeats.iter().all(|h| h.acked));
    assert_eq!(seen.heartbeats[3].sequence, Some(1));
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    mock.stop().await;
}

/// A connection that stops heartbeating is closed (resumably, 4000).
#[actix_rt::test]
async fn silent_connection_is_closed() {
    let mock = start(
        config()
            .heartbeat_interval(Duration::from_millis(60))
            .heartbeat_grace(Duration::from_millis(30)),
    )
    .await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    client.send(&identify(1, None)).await;
    assert_eq!(client.close_code().await, Some(4000));
    assert!(has_violation(&mock, ViolationKind::HeartbeatMissed));
    // The session survives for a resume.
    let seen = mock.observed();
    assert!(seen.sessions[0].alive);
    mock.stop().await;
}

/// Anything but a heartbeat before Identify closes 4003.
#[actix_rt::test]
async fn payload_before_identify_closes_4003() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    client.send(&json!({"op": 1, "d": null})).await;
    client.until_op(11).await;
    client
        .send(&json!({"op": 3, "d": {"since": null, "activities": [], "status": "online", "afk": false}}))
        .await;
    assert_eq!(client.close_code().await, Some(4003));
    assert!(has_violation(&mock, ViolationKind::PayloadBeforeIdentify));
    mock.stop().await;
}

/// A wrong token closes 4004 and the token never shows in records.
#[actix_rt::test]
async fn bad_token_closes_4004() {
    let mock = start(config().token("right-token")).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    client.send(&identify(1, None)).await; // sends "mock-token"
    assert_eq!(client.close_code().await, Some(4004));

    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    let mut good = identify(1, None);
    good["d"]["token"] = json!("right-token");
    client.send(&good).await;
    client.until_event("READY").await;
    let seen = serde_json::to_string(&mock.observed()).expect("serializable");
    assert!(
        !seen.contains("right-token"),
        "the token leaked into the observations"
    );
    assert!(seen.contains("[redacted]"));
    mock.stop().await;
}

/// A second Identify closes 4005.
#[actix_rt::test]
async fn second_identify_closes_4005() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, None).await;
    client.send(&identify(1, None)).await;
    assert_eq!(client.close_code().await, Some(4005));
    assert!(has_violation(&mock, ViolationKind::AlreadyAuthenticated));
    mock.stop().await;
}

/// Undocumented intent bits close 4013; privileged ones not granted 4014.
#[actix_rt::test]
async fn intents_are_validated() {
    let mock = start(config().granted_intents(Intents::MESSAGE_CONTENT)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    client.send(&identify(1 << 17, None)).await;
    assert_eq!(client.close_code().await, Some(4013));

    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    client.send(&identify(1 | 2, None)).await; // GUILD_MEMBERS not granted
    assert_eq!(client.close_code().await, Some(4014));

    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1 | 32768, None).await; // MESSAGE_CONTENT is granted
    mock.stop().await;
}

/// A shard outside its total closes 4010.
#[actix_rt::test]
async fn invalid_shard_closes_4010() {
    let mock = start(config()).await;
    for shard in [[2, 2], [0, 0], [5, 3]] {
        let mut client = connect_json(&mock.gateway_url()).await;
        client.hello().await;
        client.send(&identify(1, Some(shard))).await;
        assert_eq!(client.close_code().await, Some(4010), "{shard:?}");
    }
    mock.stop().await;
}

/// A shard that would hold too many guilds closes 4011.
#[actix_rt::test]
async fn too_many_guilds_closes_4011() {
    let mock = start(config().guilds(5).max_guilds_per_shard(2)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    client.send(&identify(1, Some([0, 1]))).await;
    assert_eq!(client.close_code().await, Some(4011));
    assert_eq!(mock.recommended_shards(), 3);
    let mut client = connect_json(&mock.gateway_url()).await;
    let ready = client.ready(1, Some([0, 3])).await;
    let owned = mock
        .guild_ids()
        .into_iter()
        .filter(|g| common::shard_of(*g, 3) == 0)
        .count();
    assert!((1..=2).contains(&owned));
    assert_eq!(ready["d"]["guilds"].as_array().map(Vec::len), Some(owned));
    mock.stop().await;
}

/// A bad or missing `v` closes 4012; a non-JSON encoding closes 4002.
#[actix_rt::test]
async fn bad_version_closes_4012() {
    let mock = start(config()).await;
    for query in ["v=8&encoding=json", "encoding=json", "v=abc"] {
        let mut client = connect(&mock.gateway_url(), query).await;
        assert_eq!(client.close_code().await, Some(4012), "{query}");
    }
    let mut client = connect(&mock.gateway_url(), "v=9&encoding=json").await;
    client.hello().await;
    let mut client = connect(&mock.gateway_url(), "v=10&encoding=etf").await;
    assert_eq!(client.close_code().await, Some(4002));
    mock.stop().await;
}

/// Unknown opcodes and receive-only opcodes close 4001.
#[actix_rt::test]
async fn unknown_opcode_closes_4001() {
    let mock = start(config()).await;
    for op in [5, 0, 11, 99] {
        let mut client = connect_json(&mock.gateway_url()).await;
        client.ready(1, None).await;
        client.send(&json!({"op": op, "d": null})).await;
        assert_eq!(client.close_code().await, Some(4001), "op {op}");
    }
    assert_eq!(
        mock.observed()
            .violations_of(ViolationKind::UnknownOpcode)
            .count(),
        4
    );
    mock.stop().await;
}

/// An invalid payload for an opcode closes 4001.
#[actix_rt::test]
async fn invalid_payload_closes_4001() {
    let mock = start(config()).await;
    let bad = [
        json!({"op": 3, "d": {"since": null, "activities": [], "status": "sleeping", "afk": false}}),
        json!({"op": 1, "d": "seven"}),
        json!({"op": 8, "d": {"guild_id": "1"}}),
        json!({"op": 4, "d": {"guild_id": "1"}}),
    ];
    for payload in bad {
        let mut client = connect_json(&mock.gateway_url()).await;
        client.ready(1, None).await;
        client.send(&payload).await;
        assert_eq!(client.close_code().await, Some(4001), "{payload}");
    }
    mock.stop().await;
}

/// Malformed JSON and frames over 4096 bytes close 4002.
#[actix_rt::test]
async fn decode_errors_close_4002() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    client.send_text("{\"op\": 1, ").await;
    assert_eq!(client.close_code().await, Some(4002));
    assert!(has_violation(&mock, ViolationKind::MalformedPayload));

    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    let big = json!({"op": 1, "d": null, "padding": "x".repeat(5000)});
    client.send(&big).await;
    assert_eq!(client.close_code().await, Some(4002));
    assert!(has_violation(&mock, ViolationKind::PayloadTooLarge));
    mock.stop().await;
}

/// More payloads than the send limit in a window close 4008.
#[actix_rt::test]
async fn send_rate_limit_closes_4008() {
    let mock = start(config().send_limit(5, Duration::from_secs(60))).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    for _ in 0..6 {
        client.send(&json!({"op": 1, "d": null})).await;
    }
    assert_eq!(client.close_code().await, Some(4008));
    assert!(has_violation(&mock, ViolationKind::SendRateExceeded));
    mock.stop().await;
}

/// READY (s = 1) lists exactly the shard's guilds, a distinct resume
/// URL, the shard and the application; one GUILD_CREATE per guild follows.
#[actix_rt::test]
async fn ready_then_guild_creates() {
    let mock = start(config().guilds(7)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    let ready = client.ready(1, Some([1, 3])).await;
    assert_eq!(ready["s"], 1);
    let d = &ready["d"];
    assert_eq!(d["v"], 10);
    assert_eq!(d["shard"], json!([1, 3]));
    assert_eq!(d["user"]["id"], mock.bot_id().to_string());
    assert_eq!(d["application"]["id"], mock.bot_id().to_string());
    assert!(d["application"]["flags"].is_u64());
    assert_eq!(d["resume_gateway_url"], mock.resume_url());
    assert_ne!(mock.resume_url(), mock.gateway_url());
    assert!(d["session_id"].as_str().is_some_and(|s| !s.is_empty()));
    let expected: Vec<String> = mock
        .guild_ids()
        .into_iter()
        .filter(|g| common::shard_of(*g, 3) == 1)
        .map(|g| g.to_string())
        .collect();
    let listed: Vec<String> = d["guilds"]
        .as_array()
        .expect("guilds")
        .iter()
        .map(|g| {
            assert_eq!(g["unavailable"], true);
            g["id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(listed, expected);
    for (i, guild) in expected.iter().enumerate() {
        let create = client.payload_next().await;
        assert_eq!(create["t"], "GUILD_CREATE");
        assert_eq!(create["s"], i + 2);
        assert_eq!(&create["d"]["id"], guild);
    }
    mock.stop().await;
}

/// Guild events go to the owning shard, guildless ones to shard 0.
#[actix_rt::test]
async fn events_are_routed_by_shard() {
    let mock = start(config().guilds(4)).await;
    let mut shard0 = connect_json(&mock.gateway_url()).await;
    shard0.ready(1, Some([0, 2])).await;
    let mut shard1 = connect_json(&mock.gateway_url()).await;
    shard1.ready(1, Some([1, 2])).await;
    for guild in mock.guild_ids() {
        let deliveries =
            mock.dispatch_to_guild(guild, "CUSTOM", &json!({"guild_id": guild.to_string()}));
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].shard[0], common::shard_of(guild, 2));
    }
    let guildless = mock.dispatch(None, "ENTITLEMENT_CREATE", &json!({"id": "1"}));
    assert_eq!(guildless.len(), 1);
    assert_eq!(guildless[0].shard, [0, 2]);
    // Each shard sees its own two guild events, and shard 0 the guildless one.
    let mut seen0 = Vec::new();
    while seen0.len() < 3 {
        let p = shard0.payload_next().await;
        if p["t"] == "CUSTOM" || p["t"] == "ENTITLEMENT_CREATE" {
            seen0.push(p);
        }
    }
    let owned0: Vec<Value> = mock
        .guild_ids()
        .into_iter()
        .filter(|g| common::shard_of(*g, 2) == 0)
        .map(|g| json!(g.to_string()))
        .collect();
    assert_eq!(seen0[0]["d"]["guild_id"], owned0[0]);
    assert_eq!(seen0[1]["d"]["guild_id"], owned0[1]);
    assert_eq!(seen0[2]["t"], "ENTITLEMENT_CREATE");
    let mut seen1 = 0;
    while seen1 < 2 {
        let p = shard1.payload_next().await;
        assert_ne!(p["t"], "ENTITLEMENT_CREATE");
        if p["t"] == "CUSTOM" {
            seen1 += 1;
        }
    }
    mock.stop().await;
}

/// Events are filtered by intents and message content is blanked
/// without MESSAGE_CONTENT, except when the message mentions the bot.
#[actix_rt::test]
async fn intents_filter_and_content_blanking() {
    let mock = start(config().guilds(1)).await;
    let guild = mock.guild_ids()[0];
    let channel = mock.text_channel_ids(guild)[0];
    // Without GUILD_MESSAGES: only the typing event arrives.
    let mut no_messages = connect_json(&mock.gateway_url()).await;
    no_messages.ready(1 | 2048, None).await;
    // With GUILD_MESSAGES but no MESSAGE_CONTENT.
    let mut no_content = connect_json(&mock.gateway_url()).await;
    no_content.ready(1 | 512, None).await;
    // With both.
    let mut full = connect_json(&mock.gateway_url()).await;
    full.ready(1 | 512 | 32768, None).await;

    let (message, deliveries) = mock.post_message(channel, "hello there").expect("message");
    assert_eq!(deliveries.len(), 2);
    let mention = format!("<@{}> ping", mock.bot_id());
    mock.post_message(channel, &mention).expect("message");
    let typing = json!({"guild_id": guild.to_string(), "channel_id": channel.to_string(), "user_id": "1", "timestamp": 1});
    assert_eq!(mock.dispatch(None, "TYPING_START", &typing).len(), 1);

    let blanked = no_content.until_event("MESSAGE_CREATE").await;
    assert_eq!(blanked["d"]["content"], "");
    assert_eq!(blanked["d"]["id"], message["id"]);
    let mentioned = no_content.until_event("MESSAGE_CREATE").await;
    assert_eq!(mentioned["d"]["content"], mention);
    let kept = full.until_event("MESSAGE_CREATE").await;
    assert_eq!(kept["d"]["content"], "hello there");
    // Typing was dispatched last: no MESSAGE_CREATE may come before it.
    for _ in 0..10 {
        let payload = no_messages.payload_next().await;
        assert_ne!(payload["t"], "MESSAGE_CREATE");
        if payload["t"] == "TYPING_START" {
            break;
        }
    }
    mock.stop().await;
}

/// One identify per `shard_id % max_concurrency` bucket per window;
/// over it, op 9 false and a violation.
#[actix_rt::test]
async fn identify_concurrency_is_enforced_per_bucket() {
    let mock = start(
        config()
            .max_concurrency(2)
            .identify_window(Duration::from_secs(60)),
    )
    .await;
    let mut a = connect_json(&mock.gateway_url()).await;
    a.ready(1, Some([0, 4])).await;
    let mut b = connect_json(&mock.gateway_url()).await;
    b.ready(1, Some([1, 4])).await; // bucket 1: fine
    let mut c = connect_json(&mock.gateway_url()).await;
    c.hello().await;
    c.send(&identify(1, Some([2, 4]))).await; // bucket 0 again
    let answer = c.payload_next().await;
    assert_eq!(answer, json!({"t": null, "s": null, "op": 9, "d": false}));
    let seen = mock.observed();
    let violations: Vec<_> = seen
        .violations_of(ViolationKind::IdentifyConcurrencyExceeded)
        .collect();
    assert_eq!(violations.len(), 1);
    assert_eq!(
        seen.identifies.iter().map(|i| i.bucket).collect::<Vec<_>>(),
        [0, 1, 0]
    );
    assert_eq!(seen.identifies_total(), 2);
    mock.stop().await;
}

/// The daily session start budget.
#[actix_rt::test]
async fn session_budget_runs_out() {
    let mock = start(config().session_start_limit(10, 1, Duration::from_secs(3600))).await;
    let mut a = connect_json(&mock.gateway_url()).await;
    a.ready(1, None).await;
    assert_eq!(mock.session_starts_remaining(), 0);
    let mut b = connect_json(&mock.gateway_url()).await;
    b.hello().await;
    b.identify_in_turn(1, None).await;
    assert_eq!(b.payload_next().await["op"], 9);
    assert!(has_violation(&mock, ViolationKind::SessionBudgetExhausted));
    mock.stop().await;
}

/// Resume replays the missed dispatches with their original
/// sequence numbers, then RESUMED; no violation when done right.
#[actix_rt::test]
async fn resume_replays_missed_dispatches() {
    let mock = start(config().guilds(2)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    let ready = client.ready(1, None).await;
    let session = session_id(&ready);
    client.dispatches(2).await; // GUILD_CREATEs
    let seq = client.seq.expect("seq");
    client.close(4000).await;
    mock.wait_until(TIMEOUT, |o| o.active_sessions(0) == 0)
        .await
        .expect("detached");
    let sent: Vec<u64> = (0..3)
        .map(|i| mock.dispatch(Some(&Target::Shard(0)), "CUSTOM", &json!({"i": i}))[0].sequence)
        .collect();
    assert_eq!(sent, [seq + 1, seq + 2, seq + 3]);

    let mut client = connect_json(&mock.resume_url()).await;
    client.hello().await;
    client.send(&resume(&session, seq)).await;
    let replayed = client.dispatches(4).await;
    for (i, payload) in replayed.iter().take(3).enumerate() {
        assert_eq!(payload["t"], "CUSTOM");
        assert_eq!(payload["s"], sent[i]);
        assert_eq!(payload["d"]["i"], i);
    }
    assert_eq!(replayed[3]["t"], "RESUMED");
    assert_eq!(replayed[3]["s"], seq + 4);
    let seen = mock.observed();
    assert_eq!(seen.resumes.len(), 1);
    assert_eq!(
        seen.resumes[0].outcome,
        ResumeOutcome::Resumed { replayed: 3 }
    );
    assert!(seen.resumes[0].on_resume_url);
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    mock.stop().await;
}

/// RESUMED takes a sequence number but is not replayed: when a resumed
/// connection is dropped before its RESUMED was read, the next Resume from
/// the same point skips exactly that number, which the session records in
/// `resumed_sequences`, so the gap is told apart from a lost event.
#[actix_rt::test]
async fn a_resumed_never_read_leaves_the_recorded_gap() {
    let mock = start(config().guilds(2)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    let ready = client.ready(1, None).await;
    let session = session_id(&ready);
    client.dispatches(2).await; // GUILD_CREATEs
    let seq = client.seq.expect("seq");
    client.close(4000).await;
    mock.wait_until(TIMEOUT, |o| o.active_sessions(0) == 0)
        .await
        .expect("detached");
    let custom = |i: u64| mock.dispatch(Some(&Target::Shard(0)), "CUSTOM", &json!({"i": i}));
    let first_event = custom(0)[0].sequence;

    // Resume, then go away without reading anything: the replay and RESUMED
    // are lost with the connection.
    let mut lost = connect_json(&mock.resume_url()).await;
    lost.hello().await;
    lost.send(&resume(&session, seq)).await;
    mock.wait_until(TIMEOUT, |o| o.resumes_total() == 1)
        .await
        .expect("resumed");
    drop(lost);
    mock.wait_until(TIMEOUT, |o| {
        o.open_connections() == 0 && o.sessions[0].alive && o.sessions[0].connection.is_none()
    })
    .await
    .expect("dropped, session kept");
    let unseen = mock.observed().sessions[0].resumed_sequences.clone();
    assert_eq!(unseen, [first_event + 1]);
    let second_event = custom(1)[0].sequence;

    // Resume again from the same point: everything but that RESUMED.
    let mut client = connect_json(&mock.resume_url()).await;
    client.hello().await;
    client.send(&resume(&session, seq)).await;
    let replayed = client.dispatches(3).await;
    let names: Vec<&Value> = replayed.iter().map(|p| &p["t"]).collect();
    assert_eq!(names, ["CUSTOM", "CUSTOM", "RESUMED"]);
    let seqs: Vec<u64> = replayed
        .iter()
        .map(|p| p["s"].as_u64().expect("s"))
        .collect();
    let seen = mock.observed();
    let resumed = &seen.sessions[0].resumed_sequences;
    assert_eq!(seqs, [first_event, second_event, resumed[1]]);
    assert_eq!(resumed.len(), 2);
    // The only numbers missing between the resume point and RESUMED are
    // the recorded RESUMED ones.
    let missing: Vec<u64> = (seq + 1..seqs[2]).filter(|s| !seqs.contains(s)).collect();
    assert_eq!(missing, [resumed[0]]);
    assert_eq!(missing, unseen);
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    mock.stop().await;
}

/// A resume on the discovery URL works but is recorded as a violation.
#[actix_rt::test]
async fn resume_on_discovery_url_is_a_violation() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    let ready = client.ready(1, None).await;
    let session = session_id(&ready);
    client.close(4000).await;
    mock.wait_until(TIMEOUT, |o| o.active_sessions(0) == 0)
        .await
        .expect("detached");
    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    client.send(&resume(&session, 1)).await;
    client.until_event("RESUMED").await;
    assert!(has_violation(&mock, ViolationKind::ResumeOnDiscoveryUrl));
    let seen = mock.observed();
    assert_eq!(seen.connections[1].path, "/");
    assert!(!seen.connections[1].on_resume_url);
    mock.stop().await;
}

/// An unknown session gets op 9 false, and the socket stays open.
#[actix_rt::test]
async fn resume_of_unknown_session_is_invalid() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.resume_url()).await;
    client.hello().await;
    client.send(&resume("nope", 3)).await;
    assert_eq!(client.payload_next().await["d"], false);
    // Still open: a fresh Identify on the same socket works, and the
    // record says it came on the resume URL.
    client.send(&identify(1, None)).await;
    client.until_event("READY").await;
    let seen = mock.observed();
    assert_eq!(seen.resumes[0].outcome, ResumeOutcome::InvalidSession);
    assert!(seen.identifies[0].on_resume_url);
    mock.stop().await;
}

/// A seq beyond the last sent closes 4007, or answers op 9 when so
/// configured.
#[actix_rt::test]
async fn resume_with_bad_seq() {
    for (behaviour, expect_close) in [
        (BadSequenceBehaviour::Close4007, true),
        (BadSequenceBehaviour::InvalidSession, false),
    ] {
        let mock = start(config().bad_sequence(behaviour)).await;
        let mut client = connect_json(&mock.gateway_url()).await;
        let ready = client.ready(1, None).await;
        let session = session_id(&ready);
        client.close(4000).await;
        mock.wait_until(TIMEOUT, |o| o.active_sessions(0) == 0)
            .await
            .expect("detached");
        let mut client = connect_json(&mock.resume_url()).await;
        client.hello().await;
        client.send(&resume(&session, 999)).await;
        if expect_close {
            assert_eq!(client.close_code().await, Some(4007));
        } else {
            assert_eq!(client.payload_next().await["op"], 9);
        }
        assert!(has_violation(&mock, ViolationKind::InvalidSequence));
        mock.stop().await;
    }
}

/// A client close with 1000 destroys the session; 4000 and a TCP
/// drop keep it; keep-alive expiry ends it.
#[actix_rt::test]
async fn close_codes_decide_resumability() {
    let mock = start(config().session_keep_alive(Duration::from_secs(60))).await;
    let mut sessions = Vec::new();
    for code in [1000, 4000] {
        let mut client = connect_json(&mock.gateway_url()).await;
        let ready = client.ready(1, None).await;
        sessions.push(ready["d"]["session_id"].as_str().expect("id").to_owned());
        client.close(code).await;
    }
    {
        let mut client = connect_json(&mock.gateway_url()).await;
        let ready = client.ready(1, None).await;
        sessions.push(ready["d"]["session_id"].as_str().expect("id").to_owned());
        drop(client); // TCP drop, no close frame
    }
    mock.wait_until(TIMEOUT, |o| o.open_connections() == 0)
        .await
        .expect("all closed");
    let seen = mock.observed();
    let alive: Vec<bool> = seen.sessions.iter().map(|s| s.alive).collect();
    assert_eq!(alive, [false, true, true]);
    for (session, resumable) in sessions.iter().zip([false, true, true]) {
        let mut client = connect_json(&mock.resume_url()).await;
        client.hello().await;
        client.send(&resume(session, 1)).await;
        // Replayed GUILD_CREATEs come first; then RESUMED, or op 9 at once.
        let mut answer = client.payload_next().await;
        while answer["t"] == "GUILD_CREATE" {
            answer = client.payload_next().await;
        }
        if resumable {
            assert_eq!(answer["t"], "RESUMED", "{answer}");
        } else {
            assert_eq!(answer["op"], 9);
        }
    }
    mock.stop().await;

    let mock = start(config().session_keep_alive(Duration::from_millis(30))).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    let ready = client.ready(1, None).await;
    let session = ready["d"]["session_id"].as_str().expect("id").to_owned();
    client.close(4000).await;
    mock.wait_until(TIMEOUT, |o| o.sessions.iter().all(|s| !s.alive))
        .await
        .expect("expired");
    let mut client = connect_json(&mock.resume_url()).await;
    client.hello().await;
    client.send(&resume(&session, 1)).await;
    assert_eq!(client.payload_next().await["op"], 9);
    mock.stop().await;
}

/// Several sessions may share a shard tuple; each gets the shard's events.
#[actix_rt::test]
async fn duplicate_shard_tuples_are_allowed() {
    let mock = start(config().guilds(2)).await;
    let mut a = connect_json(&mock.gateway_url()).await;
    a.ready(1, Some([0, 1])).await;
    let mut b = connect_json(&mock.gateway_url()).await;
    b.ready(1, Some([0, 1])).await;
    let deliveries = mock.dispatch(Some(&Target::Shard(0)), "CUSTOM", &json!({}));
    assert_eq!(deliveries.len(), 2);
    a.until_event("CUSTOM").await;
    b.until_event("CUSTOM").await;
    mock.stop().await;
}

/// With `invalid_session_closes`, op 9 is followed by a close.
#[actix_rt::test]
async fn invalid_session_can_close_the_socket() {
    let mock = start(config().invalid_session_closes(true)).await;
    let mut client = connect_json(&mock.resume_url()).await;
    client.hello().await;
    client.send(&resume("unknown", 1)).await;
    assert_eq!(client.payload_next().await["op"], 9);
    assert_eq!(client.close_code().await, Some(4000));
    mock.stop().await;
}

/// Zlib-stream and zstd-stream decode with one context per
/// connection, across READY, GUILD_CREATEs and later dispatches.
#[actix_rt::test]
async fn transport_compression() {
    let mock = start(config().guilds(3).members_per_guild(40)).await;
    for compress in ["zlib-stream", "zstd-stream"] {
        let query = format!("v=10&encoding=json&compress={compress}");
        let mut client = connect(&mock.gateway_url(), &query).await;
        client.hello().await;
        client.identify_in_turn(ALL_USEFUL, None).await;
        let ready = client.payload_next().await;
        assert_eq!(ready["t"], "READY");
        let creates = client.dispatches(3).await;
        assert!(creates.iter().all(|c| c["t"] == "GUILD_CREATE"));
        for i in 0..20 {
            mock.dispatch(
                Some(&Target::Shard(0)),
                "CUSTOM",
                &json!({"i": i, "pad": "x".repeat(i * 50)}),
            );
        }
        let customs = client.dispatches(20).await;
        assert_eq!(customs[19]["d"]["i"], 19);
        client.send(&json!({"op": 1, "d": client.seq})).await;
        client.until_op(11).await;
    }
    let seen = mock.observed();
    assert_eq!(
        seen.connections[0].compression,
        discore_mock::Compression::ZlibStream
    );
    assert_eq!(
        seen.connections[1].compression,
        discore_mock::Compression::ZstdStream
    );
    mock.stop().await;
}

/// Request Guild Members: chunks of at most 1000 with index, count and
/// nonce; presences when asked and allowed; `not_found` with the id quirk.
#[actix_rt::test]
async fn request_guild_members_chunks() {
    let mock = start(config().guilds(1).members_per_guild(2100)).await;
    let guild = mock.guild_ids()[0];
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1 | 2 | 256, None).await;
    client.until_event("GUILD_CREATE").await;
    client
        .send(&json!({"op": 8, "d": {"guild_id": guild.to_string(), "query": "", "limit": 0, "presences": true, "nonce": "n1"}}))
        .await;
    let chunks = client.dispatches(3).await;
    let mut total = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk["t"], "GUILD_MEMBERS_CHUNK");
        let d = &chunk["d"];
        assert_eq!(d["chunk_index"], i);
        assert_eq!(d["chunk_count"], 3);
        assert_eq!(d["nonce"], "n1");
        assert_eq!(d["guild_id"], guild.to_string());
        let members = d["members"].as_array().expect("members").len();
        assert!(members <= 1000);
        total += members;
        assert!(d["presences"].is_array());
    }
    assert_eq!(total, 2101); // with the bot

    let member = mock.member_ids(guild)[5];
    let long_nonce = "n".repeat(33);
    client
        .send(&json!({"op": 8, "d": {"guild_id": guild.to_string(), "user_ids": [member.to_string(), "123123"], "nonce": long_nonce}}))
        .await;
    let chunk = client.until_event("GUILD_MEMBERS_CHUNK").await;
    assert_eq!(chunk["d"]["members"][0]["user"]["id"], member.to_string());
    assert_eq!(chunk["d"]["not_found"], json!([123_123]));
    assert!(
        chunk["d"].get("nonce").is_none(),
        "a nonce over 32 bytes is dropped"
    );
    assert!(chunk["d"].get("presences").is_none());

    client
        .send(&json!({"op": 8, "d": {"guild_id": guild.to_string(), "query": "alice", "limit": 3}}))
        .await;
    let chunk = client.until_event("GUILD_MEMBERS_CHUNK").await;
    let names: Vec<&str> = chunk["d"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["user"]["username"].as_str())
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.iter().all(|n| n.starts_with("alice")), "{names:?}");
    mock.stop().await;
}

/// A second all-members request for a guild within the window gets
/// RATE_LIMITED; all members need GUILD_MEMBERS (4001 otherwise).
#[actix_rt::test]
async fn all_members_rate_limit_and_intent() {
    let mock = start(config().guilds(1)).await;
    let guild = mock.guild_ids()[0].to_string();
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1 | 2, None).await;
    let request =
        json!({"op": 8, "d": {"guild_id": guild, "query": "", "limit": 0, "nonce": "again"}});
    client.send(&request).await;
    client.until_event("GUILD_MEMBERS_CHUNK").await;
    client.send(&request).await;
    let limited = client.until_event("RATE_LIMITED").await;
    assert_eq!(limited["d"]["opcode"], 8);
    assert!(
        limited["d"]["retry_after"]
            .as_f64()
            .is_some_and(|r| r > 0.0 && r <= 30.0)
    );
    assert_eq!(
        limited["d"]["meta"],
        json!({"guild_id": guild, "nonce": "again"})
    );
    assert!(has_violation(
        &mock,
        ViolationKind::RequestGuildMembersRateLimited
    ));

    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, None).await;
    client.send(&request).await;
    assert_eq!(client.close_code().await, Some(4001));
    assert!(has_violation(&mock, ViolationKind::MembersIntentRequired));
    mock.stop().await;
}

/// Update Voice State answers VOICE_STATE_UPDATE then VOICE_SERVER_UPDATE;
/// Request Soundboard Sounds one SOUNDBOARD_SOUNDS per guild; Request
/// Channel Info a CHANNEL_INFO.
#[actix_rt::test]
async fn voice_soundboard_and_channel_info() {
    let mock = start(config().guilds(2)).await;
    let guilds = mock.guild_ids();
    let voice = mock.voice_channel_id(guilds[0]).expect("voice channel");
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1 | 128, None).await;
    client
        .send(&json!({"op": 4, "d": {"guild_id": guilds[0].to_string(), "channel_id": voice.to_string(), "self_mute": true, "self_deaf": false}}))
        .await;
    let state = client.until_event("VOICE_STATE_UPDATE").await;
    assert_eq!(state["d"]["channel_id"], voice.to_string());
    assert_eq!(state["d"]["self_mute"], true);
    let server = client.payload_next().await;
    assert_eq!(server["t"], "VOICE_SERVER_UPDATE");
    assert_eq!(server["d"]["guild_id"], guilds[0].to_string());
    assert!(server["d"]["token"].is_string() && server["d"]["endpoint"].is_string());

    client
        .send(
            &json!({"op": 31, "d": {"guild_ids": [guilds[0].to_string(), guilds[1].to_string()]}}),
        )
        .await;
    let sounds = client.dispatches(2).await;
    for (payload, guild) in sounds.iter().zip(&guilds) {
        assert_eq!(payload["t"], "SOUNDBOARD_SOUNDS");
        assert_eq!(payload["d"]["guild_id"], guild.to_string());
        assert!(
            payload["d"]["soundboard_sounds"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
        );
    }

    client
        .send(&json!({"op": 43, "d": {"guild_id": guilds[1].to_string(), "fields": ["status", "voice_start_time"]}}))
        .await;
    let info = client.until_event("CHANNEL_INFO").await;
    assert_eq!(info["d"]["guild_id"], guilds[1].to_string());
    let channel = &info["d"]["channels"][0];
    assert!(channel["status"].is_string() && channel["voice_start_time"].is_u64());
    assert!(mock.observed().violations.is_empty());
    mock.stop().await;
}

/// Presence updates over 5 per window are recorded as violations; the
/// connection stays open.
#[actix_rt::test]
async fn presence_rate_is_checked() {
    let mock = start(config().presence_limit(2, Duration::from_secs(60))).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, None).await;
    let presence = json!({"op": 3, "d": {"since": null, "activities": [{"name": "tests", "type": 0}], "status": "dnd", "afk": false}});
    for _ in 0..3 {
        client.send(&presence).await;
    }
    client.send(&json!({"op": 1, "d": null})).await;
    client.until_op(11).await;
    let seen = mock.observed();
    assert_eq!(
        seen.violations_of(ViolationKind::PresenceRateExceeded)
            .count(),
        1
    );
    assert!(seen.connections[0].is_open());
    mock.stop().await;
}

/// GUILD_CREATE lists only online members of a guild above
/// `large_threshold`, and only the bot without GUILD_PRESENCES.
#[actix_rt::test]
async fn guild_create_member_lists_follow_large_threshold_and_presences() {
    let mock = start(config().guilds(1).members_per_guild(80)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1 | 2 | 256, None).await;
    let create = client.until_event("GUILD_CREATE").await;
    let d = &create["d"];
    assert_eq!(d["large"], true);
    assert_eq!(d["member_count"], 81);
    let members = d["members"].as_array().expect("members").len();
    let presences = d["presences"].as_array().expect("presences").len();
    assert!(
        members < 81 && members == presences + 1,
        "{members} {presences}"
    );

    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, None).await;
    let create = client.until_event("GUILD_CREATE").await;
    assert_eq!(create["d"]["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        create["d"]["members"][0]["user"]["id"],
        mock.bot_id().to_string()
    );
    mock.stop().await;
}

/// Every received payload is recorded with its opcode, in order.
#[actix_rt::test]
async fn received_payloads_are_recorded() {
    let mock = start(config()).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    client.send(&json!({"op": 1, "d": null})).await;
    client.send(&identify(1, Some([0, 1]))).await;
    client.until_event("READY").await;
    mock.wait_until(TIMEOUT, |o| o.connections[0].received.len() == 2)
        .await
        .expect("both recorded");
    let seen = mock.observed();
    let connection = &seen.connections[0];
    assert_eq!(connection.received_ops(), [Some(1), Some(2)]);
    assert!(connection.received[0].at <= connection.received[1].at);
    assert_eq!(connection.shard, Some([0, 1]));
    assert_eq!(connection.path, "/");
    assert!(matches!(client.recv().await, Received::Payload(_)));
    mock.stop().await;
}

/// A heartbeat carrying a sequence the server never sent is a violation.
#[actix_rt::test]
async fn heartbeat_ahead_of_the_session_is_flagged() {
    let mock = start(config().guilds(1)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(1, None).await;
    client.send(&json!({"op": 1, "d": 2})).await; // READY + 1 GUILD_CREATE: fine
    client.until_op(11).await;
    client.send(&json!({"op": 1, "d": 50})).await;
    client.until_op(11).await;
    let seen = mock.observed();
    assert_eq!(
        seen.violations_of(ViolationKind::HeartbeatSequenceAhead)
            .count(),
        1
    );
    mock.stop().await;
}
