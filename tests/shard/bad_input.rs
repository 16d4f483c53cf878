//! Frames no gateway should send, over a real connection: each is a
//! protocol error, a resume, and nothing lost.

use crate::harness::*;
use discore::{Compression, Lifecycle};
use discore_mock::Target;

/// Sends `payload` to a READY shard, then 30 messages: every message
/// arrives once and in order on the same session, resumed on a new
/// connection.
async fn resumes_without_loss(compression: Compression, payload: &[u8]) {
    let (mock, recorded) = shard_on(compression).await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    assert_eq!(mock.send_payload(&Target::Shard(0), payload), 1);
    post_messages(&mock, 30);
    recorded.wait_for_event("MESSAGE_CREATE", 30).await;
    recorded.wait_for_lifecycle(Lifecycle::Resumed).await;
    assert_in_order_exactly_once(&recorded.events());
    assert_eq!(recorded.count("MESSAGE_CREATE"), 30, "{compression:?}");
    assert_eq!(recorded.count("READY"), 1, "the session was resumed");
    let seen = mock.observed();
    assert_eq!(seen.identifies_total(), 1);
    assert!(seen.connections.len() >= 2, "a new connection resumed");
    assert_no_violations(&mock);
    mock.stop().await;
}

/// A message that is not UTF-8 (a byte 0xFF inside a string), raw and
/// after inflating.
#[actix_rt::test]
async fn invalid_utf8_resumes_without_loss() {
    let payload = b"{\"t\":\"MESSAGE_CREATE\",\"s\":1000,\"op\":0,\"d\":{\"content\":\"\xff\"}}";
    for compression in [Compression::None, Compression::ZlibStream] {
        resumes_without_loss(compression, payload).await;
    }
}

/// A sequence number one past `u64::MAX` is not taken for any number.
#[actix_rt::test]
async fn sequence_out_of_range_resumes_without_loss() {
    let payload = br#"{"t":"MESSAGE_CREATE","s":18446744073709551616,"op":0,"d":{}}"#;
    resumes_without_loss(Compression::None, payload).await;
}

/// An opcode over 255 is no opcode at all (an unknown one under 256 is data,
/// see `unknown_opcode_and_fields_are_data`).
#[actix_rt::test]
async fn opcode_over_255_resumes_without_loss() {
    let payload = br#"{"t":null,"s":null,"op":256,"d":null}"#;
    resumes_without_loss(Compression::None, payload).await;
}
