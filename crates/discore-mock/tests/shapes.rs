//! Discord's shapes and rules that libraries depend on: bare gateway and
//! resume URLs in every form libraries build from them, the resume URL as a
//! listener of its own, serenity's Identify, the sliding send limit, and a
//! Resume that claims more than the connection wrote.

mod common;

use common::{TIMEOUT, TOKEN, config, connect_json, resume, session_id, start};
use discore_mock::{ConnectionEnd, Target, ViolationKind};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Opens a WebSocket to exactly `url` and returns the first payload, or
/// the refusal.
async fn first_payload(url: &str) -> Result<Value, String> {
    let client = awc::Client::builder()
        .max_http_version(awc::http::Version::HTTP_11)
        .timeout(TIMEOUT)
        .finish();
    let (_, mut framed) = client
        .ws(url)
        .connect()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    match tokio::time::timeout(TIMEOUT, framed.next()).await {
        Ok(Some(Ok(awc::ws::Frame::Text(text)))) => {
            serde_json::from_slice(&text).map_err(|e| e.to_string())
        }
        other => Err(format!("{url}: {other:?}")),
    }
}

/// Both URLs are bare `ws://host:port`, on listeners of their own; `/`
/// (also what the query right after the host becomes on the wire), `//` (a
/// URL that had a trailing slash) and a query without `encoding` all
/// connect, and the listener tells a resume connection from a discovery one.
#[actix_rt::test]
async fn bare_urls_in_every_form_libraries_build() {
    let mock = start(config()).await;
    let gateway = mock.gateway_url();
    let resume_url = mock.resume_url();
    for url in [&gateway, &resume_url] {
        let authority = url.strip_prefix("ws://").expect("ws://");
        assert!(!authority.contains('/'), "{url} has a path");
    }
    assert_ne!(gateway, resume_url);

    let mut client = connect_json(&gateway).await;
    let ready = client.ready(1, None).await;
    assert_eq!(ready["d"]["resume_gateway_url"], resume_url);

    for base in [&gateway, &resume_url] {
        // `{url}?v=10` (the query right after the host) goes out as
        // `GET /?v=10`, like the first form.
        for form in ["/?v=10&encoding=json", "//?v=10&encoding=json", "/?v=10"] {
            let url = format!("{base}{form}");
            let hello = first_payload(&url).await.expect("connects");
            assert_eq!(hello["op"], 10, "{url}");
        }
    }
    // A path no library builds is no gateway URL.
    for path in ["/resume/", "/gateway", "/a/b"] {
        let url = format!("{gateway}{path}?v=10");
        assert!(first_payload(&url).await.is_err(), "{url} connected");
    }
    mock.wait_until(TIMEOUT, |o| o.connections.len() == 7)
        .await
        .expect("every connection recorded");
    let seen = mock.observed();
    let on_resume: Vec<bool> = seen.connections.iter().map(|c| c.on_resume_url).collect();
    assert_eq!(on_resume, [false, false, false, false, true, true, true]);
    let paths: Vec<&str> = seen.connections.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, ["/", "/", "//", "/", "/", "//", "/"]);
    mock.stop().await;
}

/// With `session_resume_urls`, the resume URL names the session in its one
/// path segment, and libraries that append `/?v=10…` still reach it.
#[actix_rt::test]
async fn a_resume_url_can_name_its_session() {
    let mock = start(config().session_resume_urls(true)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    let ready = client.ready(1, None).await;
    let session = session_id(&ready);
    let url = ready["d"]["resume_gateway_url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert_eq!(url, format!("{}/{session}", mock.resume_url()));
    client.close(4000).await;
    let mut client = connect_json(&url).await;
    client.hello().await;
    client.send(&resume(&session, 1)).await;
    client.until_event("RESUMED").await;
    let seen = mock.observed();
    let last = seen.last_connection().expect("the resume connection");
    assert!(last.on_resume_url);
    assert_eq!(last.resume_url_session(), Some(session.as_str()));
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    mock.stop().await;
}

/// serenity 0.12's Identify, exactly as it serializes one: the REST form of
/// the token, `presence.since` as a serialized `SystemTime`, `compress:
/// true`. Discord takes it; so does the emulator, noting the `since`.
#[actix_rt::test]
async fn serenity_identify_is_accepted() {
    let mock = start(config().guilds(2)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.hello().await;
    let identify = format!(
        r#"{{"op":2,"d":{{"compress":true,"token":"Bot {TOKEN}","large_threshold":250,"shard":[0,1],"intents":33283,"properties":{{"browser":"serenity","device":"serenity","os":"linux"}},"presence":{{"afk":false,"status":"online","since":{{"secs_since_epoch":1733300000,"nanos_since_epoch":123456789}},"activities":[{{"name":"tests","type":0,"state":null,"url":null}}]}}}}}}"#
    );
    client.send_text(&identify).await;
    let ready = client.until_event("READY").await;
    assert_eq!(ready["d"]["shard"], json!([0, 1]));
    for create in client.dispatches(2).await {
        assert_eq!(create["t"], "GUILD_CREATE");
    }
    let seen = mock.observed();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert!(
        seen.quirks
            .iter()
            .any(|q| q.op == Some(2) && q.detail.contains("since")),
        "{:?}",
        seen.quirks
    );
    // serenity's Request Guild Members: `query: ""`, `limit: 0` and an
    // empty nonce, all members.
    let guild = mock.guild_ids()[0].to_string();
    client
        .send_text(&format!(
            r#"{{"op":8,"d":{{"guild_id":"{guild}","query":"","limit":0,"presences":false,"nonce":""}}}}"#
        ))
        .await;
    let chunk = client.until_event("GUILD_MEMBERS_CHUNK").await;
    assert_eq!(chunk["d"]["guild_id"], guild);
    assert!(mock.observed().violations.is_empty());
    mock.stop().await;
}

/// The send limit counts any window of its length, not fixed ones: five
/// payloads late in one window and one early in the "next" are six in a
/// window.
#[actix_rt::test]
async fn the_send_limit_is_a_sliding_window() {
    let window = Duration::from_millis(400);
    let mock = start(config().send_limit(5, window)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    let opened = Instant::now();
    client.hello().await;
    tokio::time::sleep_until((opened + window * 5 / 8).into()).await;
    for _ in 0..5 {
        client.send(&json!({"op": 1, "d": null})).await;
    }
    // A fixed window that began when the connection opened would have
    // reset by now.
    tokio::time::sleep_until((opened + window * 9 / 8).into()).await;
    client.send(&json!({"op": 1, "d": null})).await;
    assert_eq!(client.close_code().await, Some(4008));
    let seen = mock.observed();
    assert_eq!(
        seen.violations_of(ViolationKind::SendRateExceeded).count(),
        1
    );
    mock.stop().await;
}

/// A Resume may not claim a sequence the connection never wrote: dispatches
/// held by a stall and lost with the connection were assigned but never
/// sent, so a client cannot have seen them (4007). Claiming what was
/// written replays the rest.
#[actix_rt::test]
async fn a_resume_beyond_what_was_written_is_refused() {
    let mock = start(config().guilds(1)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    let ready = client.ready(1, None).await;
    let session = session_id(&ready);
    client.until_event("GUILD_CREATE").await;
    let connection = mock.observed().last_connection().expect("connection").id;
    let target = Target::Connection(connection);
    mock.wait_until(TIMEOUT, |o| {
        o.connection(connection)
            .and_then(|c| c.last_sequence_written)
            == Some(2)
    })
    .await
    .expect("READY and GUILD_CREATE written");
    assert_eq!(mock.stall(&target, Duration::from_secs(60)), 1);
    let mut assigned = 0;
    for n in 0..3 {
        let deliveries = mock.dispatch(Some(&target), "CUSTOM", &json!({ "n": n }));
        assigned = deliveries[0].sequence;
    }
    assert_eq!(assigned, 5);
    assert_eq!(mock.drop_connection(&target), 1);
    mock.wait_until(TIMEOUT, |o| {
        o.connection(connection)
            .is_some_and(|c| c.end == Some(ConnectionEnd::ServerDropped))
    })
    .await
    .expect("dropped");
    let seen = mock.observed();
    assert_eq!(
        seen.connection(connection)
            .and_then(|c| c.last_sequence_written),
        Some(2),
        "the held dispatches never left"
    );

    let mut client = connect_json(&mock.resume_url()).await;
    client.hello().await;
    client.send(&resume(&session, assigned)).await;
    assert_eq!(client.close_code().await, Some(4007));
    assert_eq!(
        mock.observed()
            .violations_of(ViolationKind::InvalidSequence)
            .count(),
        1
    );

    // 4007 ends the session, as Discord's table says ("identify again").
    let mut client = connect_json(&mock.resume_url()).await;
    client.hello().await;
    client.send(&resume(&session, 2)).await;
    assert_eq!(client.payload_next().await["op"], 9);
    mock.stop().await;
}

/// Claiming exactly what was written replays every held dispatch on the new
/// connection.
#[actix_rt::test]
async fn a_resume_from_what_was_written_replays_the_rest() {
    let mock = start(config().guilds(1)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    let ready = client.ready(1, None).await;
    let session = session_id(&ready);
    client.until_event("GUILD_CREATE").await;
    let connection = mock.observed().last_connection().expect("connection").id;
    let target = Target::Connection(connection);
    mock.wait_until(TIMEOUT, |o| {
        o.connection(connection)
            .and_then(|c| c.last_sequence_written)
            == Some(2)
    })
    .await
    .expect("written");
    mock.stall(&target, Duration::from_secs(60));
    for n in 0..3 {
        mock.dispatch(Some(&target), "CUSTOM", &json!({ "n": n }));
    }
    mock.drop_connection(&target);
    mock.wait_until(TIMEOUT, |o| {
        o.connection(connection).is_some_and(|c| !c.is_open())
    })
    .await
    .expect("dropped");
    let mut client = connect_json(&mock.resume_url()).await;
    client.hello().await;
    client.send(&resume(&session, 2)).await;
    let replayed: Vec<u64> = client
        .dispatches(4)
        .await
        .iter()
        .map(|d| d["s"].as_u64().unwrap_or_default())
        .collect();
    assert_eq!(replayed, [3, 4, 5, 6], "three replayed, then RESUMED");
    let seen = mock.observed();
    let record = seen.resumes.last().expect("the resume");
    assert_eq!(
        (record.replayed_from, record.replayed_to),
        (Some(3), Some(5))
    );
    mock.stop().await;
}
