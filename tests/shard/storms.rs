//! Reconnect storms: a gateway that answers every connection with op 7
//! where Hello belongs, or refuses every upgrade. The shard's attempts come
//! at growing intervals (the jittered backoff, base 20 ms doubling to
//! 200 ms here) and their number stays bounded; when the storm ends the
//! session resumes. Only lower bounds on time are asserted: a busy machine
//! can make an attempt later, never sooner.

use crate::harness::{PATIENCE, Recorded, mock_config, shard, shard_config};
use discore::Lifecycle;
use discore_mock::{MockServer, Target};
use std::time::{Duration, Instant};

const BASE: Duration = Duration::from_millis(20);
const CAP: Duration = Duration::from_millis(200);

/// The least delay before attempt `n` (1-based) of a run: half of
/// `min(cap, base * 2^(n-2))`, nothing for the first.
fn least_delay(n: usize) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    let exponent = u32::try_from(n - 2).unwrap_or(u32::MAX).min(16);
    BASE.saturating_mul(1 << exponent).min(CAP) / 2
}

/// Waits until a heartbeat was acknowledged on the shard's connection, so
/// that it counts as healthy and its first reconnect goes at once: a second
/// heartbeat goes out only after the first one's ACK was read.
async fn wait_healthy(mock: &MockServer) {
    let deadline = Instant::now() + PATIENCE;
    while mock.observed().heartbeats.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no heartbeat within {PATIENCE:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The harness's shard, keeping its session through the whole storm (the
/// default gives a resume URL up after 8 failures in a row).
fn storm_config(mock: &MockServer) -> discore::ShardConfig {
    shard_config(mock).resume_url_attempts(30)
}

fn assert_growing(starts: &[Duration]) {
    for (index, pair) in starts.windows(2).enumerate() {
        // The gap before attempt `index + 2` of the run.
        let least = least_delay(index + 2);
        assert!(
            pair[1].saturating_sub(pair[0]) >= least,
            "attempt {} came {:?} after the previous one, under the backoff's {least:?}: {starts:?}",
            index + 2,
            pair[1].saturating_sub(pair[0])
        );
    }
}

#[actix_rt::test]
async fn op_7_instead_of_hello_backs_off_then_resumes() {
    const STORM: u32 = 8;
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    let recorded = Recorded::start();
    let _shard = actix_rt::time::timeout(PATIENCE, shard(storm_config(&mock), &recorded).start())
        .await
        .expect("starts in time")
        .expect("starts");
    wait_healthy(&mock).await;
    let before = mock.observed().connections.len();
    mock.reconnect_instead_of_hello(STORM);
    assert_eq!(mock.reconnect(&Target::All), 1);
    recorded.wait_for_lifecycle(Lifecycle::Resumed).await;
    let seen = mock.observed();
    let starts: Vec<Duration> = seen.connections[before..]
        .iter()
        .map(|c| c.opened_at)
        .collect();
    // The storm's connections and the one that resumed: nothing more.
    assert_eq!(starts.len(), STORM as usize + 1, "{starts:?}");
    assert_growing(&starts);
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
    mock.stop().await;
}

#[actix_rt::test]
async fn refused_upgrades_back_off_then_resume() {
    const OUTAGE: Duration = Duration::from_millis(700);
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    let recorded = Recorded::start();
    let _shard = actix_rt::time::timeout(PATIENCE, shard(storm_config(&mock), &recorded).start())
        .await
        .expect("starts in time")
        .expect("starts");
    wait_healthy(&mock).await;
    mock.outage(OUTAGE);
    assert_eq!(mock.drop_connection(&Target::All), 1);
    recorded.wait_for_lifecycle(Lifecycle::Resumed).await;
    let seen = mock.observed();
    let starts: Vec<Duration> = seen.refused_upgrades.iter().map(|r| r.at).collect();
    assert!(!starts.is_empty(), "the outage refused attempts");
    assert_growing(&starts);
    // 0 + 10 + 20 + 40 + 80 + 100 + 100 + … ms at the least: an outage of
    // 700 ms holds no more than about a dozen attempts.
    assert!(starts.len() <= 12, "{} attempts: {starts:?}", starts.len());
    mock.stop().await;
}
