//! The emulator's side of the wire, checked with a raw client that sees
//! frames exactly as sent: reading does not depend on writing, and large
//! messages can be fragmented.

mod common;

use common::{TIMEOUT, config, identify, raw, start};
use discore_mock::{Target, ViolationKind};
use serde_json::json;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

/// A client stops reading while the emulator floods it, but keeps sending
/// heartbeats on schedule: the emulator must read, record and acknowledge
/// every one of them meanwhile, and never fail the client for a missed
/// heartbeat, as Discord does.
async fn heartbeats_are_read_while_the_client_does_not_read(
    query: &str,
    flood_size: u64,
    fills_window: bool,
) {
    // Long enough that a busy 2-core machine, which can leave a thread
    // unscheduled for a few hundred milliseconds, does not make either side
    // late: the test is about the emulator reading while it writes.
    let interval = Duration::from_millis(600);
    let grace = Duration::from_millis(400);
    let mock = start(
        config()
            .heartbeat_interval(interval)
            .heartbeat_grace(grace)
            // Heartbeats count towards the send limit; this test sends many.
            .send_limit(10_000, Duration::from_secs(60)),
    )
    .await;
    // With a small receive buffer, the flood fills the path to the client
    // soon; with the default one, the emulator keeps writing for longer.
    let receive_buffer = fills_window.then_some(16 * 1024);
    let (mut reader, mut writer) = raw::connect(&mock.gateway_url(), query, receive_buffer).await;
    assert_eq!(reader.json().await["op"], 10);
    writer.send(&identify(1 | 512, None)).await;
    assert_eq!(reader.json().await["t"], "READY");
    let id = mock.observed().connections[0].id;

    // Heartbeat at three times the expected rate, so the scheduling delays
    // of a busy machine never make this client late by itself.
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let beating = {
        let (sent, stop) = (Arc::clone(&sent), Arc::clone(&stop));
        actix_rt::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                writer.send(&json!({"op": 1, "d": null})).await;
                sent.fetch_add(1, Ordering::AcqRel);
                tokio::time::sleep(interval / 3).await;
            }
            writer
        })
    };
    let flood = mock.flood(&Target::All, flood_size);
    let heartbeats = |mock: &discore_mock::MockServer| {
        mock.with_observed(|o| o.heartbeats.iter().filter(|h| h.connection == id).count())
    };

    // Read nothing for three intervals plus the grace, and then some,
    // watching the emulator keep up with the heartbeats all along: it may
    // lag by no more than interval + grace (five heartbeats), the point
    // where it would itself call the client silent.
    let pause = interval * 3 + grace * 3;
    let started = std::time::Instant::now();
    let mut worst_lag = 0;
    while started.elapsed() < pause {
        tokio::time::sleep(interval / 3).await;
        let lag = sent
            .load(Ordering::Acquire)
            .saturating_sub(heartbeats(&mock));
        worst_lag = worst_lag.max(lag);
    }
    let seen = mock.observed();
    let missed: Vec<_> = seen.violations_of(ViolationKind::HeartbeatMissed).collect();
    assert!(missed.is_empty(), "{query}: {missed:?}");
    assert!(seen.connections[0].is_open(), "{query}: closed");
    let recorded = heartbeats(&mock);
    let beats = sent.load(Ordering::Acquire);
    assert!(
        worst_lag <= 5 && recorded + 2 >= beats,
        "{query}: {recorded} of {beats} heartbeats recorded while the client did not read, \
         lagging by up to {worst_lag}"
    );
    if fills_window {
        assert!(
            seen.connections[0].dispatches_sent < flood_size,
            "{query}: the flood went through, the client's window never filled"
        );
    }

    // Read again (still heartbeating): every dispatch in order, then an
    // ACK for every heartbeat sent.
    let mut previous = 1;
    let mut acks = 0;
    let mut dispatches = 0;
    while dispatches < flood_size {
        // This runtime also runs the heartbeat task: let it keep its beat
        // while there is a backlog to read.
        tokio::task::yield_now().await;
        let payload = reader.json().await;
        match payload["op"].as_u64() {
            Some(0) => {
                let s = payload["s"].as_u64().expect("s");
                assert_eq!(s, previous + 1, "{query}: dispatches in order");
                previous = s;
                dispatches += u64::from(payload["t"] == "MESSAGE_CREATE");
            }
            Some(11) => acks += 1,
            other => panic!("{query}: unexpected op {other:?}"),
        }
    }
    assert_eq!(flood.finished().await.sent, flood_size);
    let seen = mock.observed();
    let missed: Vec<_> = seen.violations_of(ViolationKind::HeartbeatMissed).collect();
    assert!(missed.is_empty(), "{query}: {missed:?}");
    stop.store(true, Ordering::Release);
    let _writer = beating.await.expect("the heartbeat task ends");
    let beats = sent.load(Ordering::Acquire);
    mock.wait_until(TIMEOUT, |o| {
        o.heartbeats.iter().filter(|h| h.connection == id).count() == beats
    })
    .await
    .expect("every heartbeat recorded");
    while acks < beats {
        match reader.json().await["op"].as_u64() {
            Some(11) => acks += 1,
            other => panic!("{query}: unexpected op {other:?}"),
        }
    }
    mock.stop().await;
}

#[actix_rt::test]
async fn heartbeats_are_read_while_a_plain_flood_waits_for_the_client() {
    // About 1 KB a dispatch: far more than the socket buffers hold.
    heartbeats_are_read_while_the_client_does_not_read("v=10&encoding=json", 20_000, true).await;
}

/// Compression keeps the emulator busy writing (in a debug build, for
/// seconds) before the client's window fills, if it ever does: reads must
/// not wait for the writes to stop.
#[actix_rt::test]
async fn heartbeats_are_read_while_a_compressed_flood_is_written() {
    heartbeats_are_read_while_the_client_does_not_read(
        "v=10&encoding=json&compress=zlib-stream",
        20_000,
        false,
    )
    .await;
}

/// `len` bytes of letters and digits that do not compress well, the same
/// every run.
fn noise(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[(state % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

/// With `max_frame_payload`, a 5 MiB dispatch arrives as a first frame
/// (text, or binary when compressed), continuation frames and a final
/// frame, none larger than the limit, that reassemble to the exact payload.
async fn large_dispatch_arrives_fragmented(query: &str) {
    const LIMIT: usize = 64 * 1024;
    let mock = start(config().max_frame_payload(LIMIT)).await;
    let (mut reader, mut writer) = raw::connect(&mock.gateway_url(), query, None).await;
    assert_eq!(reader.json().await["op"], 10);
    writer.send(&identify(1, None)).await;
    assert_eq!(reader.json().await["t"], "READY");
    let pad = noise(5 * 1024 * 1024);
    let deliveries = mock.dispatch(
        Some(&Target::Shard(0)),
        "BIG",
        &json!({"pad": pad, "end": true}),
    );
    assert_eq!(deliveries.len(), 1);
    let compressed = query.contains("compress=");
    for _ in 0..100 {
        let frames = reader.message_frames().await.expect("a message");
        let opcode = frames[0].opcode;
        let count = frames.len();
        let sizes: Vec<usize> = frames.iter().map(|f| f.payload.len()).collect();
        let data: Vec<u8> = frames.into_iter().flat_map(|f| f.payload).collect();
        assert!(
            sizes.iter().all(|&n| n <= LIMIT),
            "{query}: a frame over the limit"
        );
        assert_eq!(
            count,
            data.len().div_ceil(LIMIT),
            "{query}: frames of {sizes:?}"
        );
        assert!(
            sizes[..count - 1].iter().all(|&n| n == LIMIT),
            "{query}: only the last frame is short"
        );
        assert_eq!(opcode, if compressed { 0x2 } else { 0x1 });
        let payload = reader.decode(opcode, data);
        if payload["t"] != "BIG" {
            continue;
        }
        assert!(count > 1, "{query}: not fragmented");
        if !compressed {
            assert!(count >= 80, "{query}: {count} frames");
        }
        assert_eq!(payload["s"], deliveries[0].sequence);
        assert_eq!(payload["d"]["end"], true);
        assert!(
            payload["d"]["pad"] == pad.as_str(),
            "{query}: the payload differs"
        );
        // The stream goes on with whole messages.
        writer.send(&json!({"op": 1, "d": null})).await;
        let (opcode, data, frames) = reader.message().await.expect("the ACK");
        assert_eq!((opcode, frames), (if compressed { 0x2 } else { 0x1 }, 1));
        assert_eq!(reader.decode(opcode, data)["op"], 11);
        assert!(mock.observed().violations.is_empty());
        mock.stop().await;
        return;
    }
    panic!("{query}: no BIG dispatch");
}

#[actix_rt::test]
async fn large_plain_dispatch_arrives_fragmented() {
    large_dispatch_arrives_fragmented("v=10&encoding=json").await;
}

#[actix_rt::test]
async fn large_compressed_dispatch_arrives_fragmented() {
    large_dispatch_arrives_fragmented("v=10&encoding=json&compress=zlib-stream").await;
}

/// The send clock notes a dispatch when its connection's socket writer
/// takes it, with the session's shard and the dispatch's sequence, only
/// while it is on; a take empties it.
#[actix_rt::test]
async fn the_send_clock_notes_each_dispatch_handed_to_the_socket() {
    let mock = start(config()).await;
    let mut client = common::connect_json(&mock.gateway_url()).await;
    client.ready(1, Some([1, 2])).await;
    mock.record_send_times(true);
    let before = SystemTime::now();
    let deliveries = mock.dispatch(
        Some(&Target::Shard(1)),
        "SEND_CLOCK_PROBE",
        &json!({"n": 1}),
    );
    assert_eq!(deliveries.len(), 1, "one session of shard 1");
    let probe = actix_rt::time::timeout(TIMEOUT, client.until_event("SEND_CLOCK_PROBE"))
        .await
        .expect("the probe arrives");
    let sequence = probe["s"].as_u64().expect("a sequence");

    let taken = mock.take_send_times();
    assert_eq!(taken.lost, 0);
    // Whatever else went out meanwhile (the guilds after READY) is noted
    // too, each once, all of shard 1.
    assert!(
        taken.sent.iter().all(|sent| sent.shard == 1),
        "{:?}",
        taken.sent
    );
    let noted: Vec<_> = taken
        .sent
        .iter()
        .filter(|sent| sent.sequence == sequence)
        .collect();
    assert_eq!(noted.len(), 1, "{:?}", taken.sent);
    assert!(noted[0].at >= before);
    assert!(mock.take_send_times().sent.is_empty(), "a take empties it");

    mock.record_send_times(false);
    mock.dispatch(
        Some(&Target::Shard(1)),
        "SEND_CLOCK_PROBE",
        &json!({"n": 2}),
    );
    actix_rt::time::timeout(TIMEOUT, client.until_event("SEND_CLOCK_PROBE"))
        .await
        .expect("the second probe arrives");
    assert!(
        mock.take_send_times().sent.is_empty(),
        "nothing noted while off"
    );
}

/// The send clock notes a dispatch when the socket writer takes it, not
/// when the connection queues it for the writer: while the client reads
/// nothing, the socket fills, the writer stops taking, and dispatches wait
/// handed over (recorded as written) but not yet noted. Once the client
/// reads again, every dispatch is noted, once.
#[actix_rt::test]
async fn the_send_clock_waits_for_the_writer_to_take_a_dispatch() {
    // More than the kernel buffers of a loopback connection whose reader
    // does not read (a sender's buffer grows to 4 MiB here) and the
    // writer's own buffer hold together.
    const PROBES: u64 = 160;
    let mock = start(config()).await;
    let mut client = common::connect_json(&mock.gateway_url()).await;
    client.ready(1, Some([0, 1])).await;
    mock.record_send_times(true);
    let filler = "x".repeat(60 * 1024);
    let mut sequences = Vec::new();
    for n in 0..PROBES {
        let deliveries = mock.dispatch(
            Some(&Target::Shard(0)),
            "SEND_CLOCK_PROBE",
            &json!({"n": n, "filler": filler}),
        );
        assert_eq!(deliveries.len(), 1, "one session of shard 0");
        sequences.push(deliveries[0].sequence);
    }
    let last_written = || {
        mock.observed()
            .connections
            .iter()
            .find(|c| c.is_open() && c.shard == Some([0, 1]))
            .and_then(|c| c.last_sequence_written)
            .unwrap_or(0)
    };
    let mut noted = Vec::new();
    let mut waiting = None;
    for _ in 0..500 {
        noted.extend(mock.take_send_times().sent);
        let written = last_written();
        if noted.iter().all(|sent| sent.sequence < written) && written > 0 {
            waiting = Some(written);
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let waiting = waiting.expect("a dispatch handed to the writer but not taken within 5 s");
    // It stays unnoted while the client still reads nothing: the writer
    // has not taken it.
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    noted.extend(mock.take_send_times().sent);
    assert!(
        noted.iter().all(|sent| sent.sequence < waiting),
        "dispatch {waiting} was noted before the writer could take it"
    );

    for _ in 0..PROBES {
        actix_rt::time::timeout(TIMEOUT, client.until_event("SEND_CLOCK_PROBE"))
            .await
            .expect("every probe arrives once the client reads");
    }
    noted.extend(mock.take_send_times().sent);
    let mut probes: Vec<u64> = noted
        .iter()
        .map(|sent| sent.sequence)
        .filter(|sequence| sequences.contains(sequence))
        .collect();
    probes.sort_unstable();
    assert_eq!(probes, sequences, "each probe noted once");
}
