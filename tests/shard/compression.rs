use crate::harness::*;
use discore::Compression;
use discore_mock::{MockServer, Target};

/// One zlib-stream context per connection carries every event, in order.
#[actix_rt::test]
async fn zlib_stream() {
    let (mock, recorded) = shard_on(Compression::ZlibStream).await;
    post_messages(&mock, 100);
    recorded.wait_for_event("MESSAGE_CREATE", 100).await;
    assert_in_order_exactly_once(&recorded.events());
    let compression = mock.observed().connections[0].compression;
    assert_eq!(compression, discore_mock::Compression::ZlibStream);
    assert_no_violations(&mock);
}

/// One zstd-stream context per connection carries every event, in order.
#[actix_rt::test]
async fn zstd_stream() {
    let (mock, recorded) = shard_on(Compression::ZstdStream).await;
    post_messages(&mock, 100);
    recorded.wait_for_event("MESSAGE_CREATE", 100).await;
    assert_in_order_exactly_once(&recorded.events());
    let compression = mock.observed().connections[0].compression;
    assert_eq!(compression, discore_mock::Compression::ZstdStream);
    assert_no_violations(&mock);
}

/// A corrupt compressed frame resumes on a fresh connection (with a fresh
/// inflater) and loses nothing.
#[actix_rt::test]
async fn corrupt_compressed_frame_resumes_without_loss() {
    for compression in [Compression::ZlibStream, Compression::ZstdStream] {
        let (mock, recorded) = shard_on(compression).await;
        recorded.wait_for_event("GUILD_CREATE", 3).await;
        mock.corrupt_next_frame(&Target::Shard(0));
        post_messages(&mock, 30);
        recorded.wait_for_event("MESSAGE_CREATE", 30).await;
        recorded
            .wait_for_lifecycle(discore::Lifecycle::Resumed)
            .await;
        assert_in_order_exactly_once(&recorded.events());
        assert_eq!(recorded.count("MESSAGE_CREATE"), 30, "{compression:?}");
        assert_eq!(mock.observed().identifies_total(), 1);
        mock.stop().await;
    }
}

/// Malformed JSON from the gateway is a clear error and a resume, not a crash.
#[actix_rt::test]
async fn malformed_json_resumes_without_loss() {
    let (mock, recorded) = shard_on(Compression::None).await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    mock.send_malformed_json(&Target::Shard(0));
    post_messages(&mock, 30);
    recorded.wait_for_event("MESSAGE_CREATE", 30).await;
    recorded
        .wait_for_lifecycle(discore::Lifecycle::Resumed)
        .await;
    assert_in_order_exactly_once(&recorded.events());
    assert_eq!(recorded.count("MESSAGE_CREATE"), 30);
}

/// A dispatch whose envelope is fine and whose data is not JSON is a
/// protocol error found when the event is parsed, before its sequence
/// number counts: the shard resumes from the sequence before it and the
/// real event that carries the same number is delivered, not skipped.
#[actix_rt::test]
async fn malformed_dispatch_data_is_not_counted_and_resumes_without_loss() {
    let (mock, recorded) = shard_on(Compression::None).await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    assert_eq!(mock.send_malformed_dispatch_data(&Target::Shard(0)), 1);
    post_messages(&mock, 30);
    recorded.wait_for_event("MESSAGE_CREATE", 30).await;
    recorded
        .wait_for_lifecycle(discore::Lifecycle::Resumed)
        .await;
    assert_in_order_exactly_once(&recorded.events());
    assert_eq!(recorded.count("MESSAGE_CREATE"), 30);
    assert_eq!(mock.observed().identifies_total(), 1);
    assert_no_violations(&mock);
}

/// A 5 MiB dispatch, split by the emulator over many WebSocket frames, is
/// reassembled and delivered.
#[actix_rt::test]
async fn five_mib_dispatch_over_many_frames() {
    let mock = MockServer::start(mock_config().max_frame_payload(64 * 1024))
        .await
        .expect("emulator");
    let recorded = Recorded::start();
    let _shard = shard(shard_config(&mock), &recorded)
        .start()
        .await
        .expect("starts");
    let big = "x".repeat(5 * 1024 * 1024);
    mock.dispatch(
        Some(&Target::Shard(0)),
        "BIG_EVENT",
        &serde_json::json!({ "blob": big }),
    );
    recorded.wait_for_event("BIG_EVENT", 1).await;
    let events = recorded.events();
    let event = events
        .iter()
        .find(|e| e.name() == "BIG_EVENT")
        .expect("delivered");
    let discore::Dispatch::Raw(raw) = &*event.event else {
        panic!("unknown events are raw");
    };
    assert!(raw.data.get().len() > 5 * 1024 * 1024);
}

/// An inbound message over the configured maximum is an error followed by a
/// reconnect; memory stays bounded and the shard keeps running.
#[actix_rt::test]
async fn oversized_message_reconnects() {
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    let recorded = Recorded::start();
    let config = shard_config(&mock).max_inbound_message_size(64 * 1024);
    let _shard = shard(config, &recorded).start().await.expect("starts");
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    let big = "y".repeat(256 * 1024);
    mock.dispatch(
        Some(&Target::Shard(0)),
        "BIG_EVENT",
        &serde_json::json!({ "blob": big }),
    );
    recorded
        .wait("a disconnect", |_, lifecycle| {
            lifecycle
                .iter()
                .any(|l| matches!(l, discore::Lifecycle::Disconnected { .. }))
        })
        .await;
    assert_eq!(recorded.count("BIG_EVENT"), 0);
    mock.wait_until(PATIENCE, |seen| seen.connections.len() >= 2)
        .await
        .expect("the shard connects again");
}
