//! A reconnect storm: the whole emulator goes down under a fleet of 100
//! shards. Reconnect attempts back off exponentially with jitter up to the
//! cap, the fleet does not retry in lockstep, and when the emulator is back
//! the sessions resume at once while the identifies wait their turn in the
//! queue, with no violation recorded.

mod common;

use common::{init_logging, manager_config, mock_config, shard_config, start_mock};
use discore_gateway::Backoff;
use discore_manager::{GetFleetStatus, ShardCount, ShardManager, WaitUntilReady};
use discore_mock::{Fault, IdentifyOutcome, MockServer, Observed, ResumeOutcome, Target};
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

const SHARDS: u32 = 100;
/// Buckets of the identify queue; bucket 0 holds the shards that lose
/// their session, so their identifies queue one window apart.
const MAX_CONCURRENCY: u32 = 10;
/// The identify window of the emulator and of the manager alike: long
/// enough that the ten identifies after the outage span seconds, so that
/// resumes visibly do not wait for them.
const IDENTIFY_WINDOW: Duration = Duration::from_millis(300);
const BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(100),
    cap: Duration::from_millis(400),
};
/// Shorter than the earliest fifth attempt (0 + 50 + 100 + 200 + 200 ms),
/// after which a shard gives its session up: every session survives.
const OUTAGE: Duration = Duration::from_millis(520);
/// Scheduling slack of a busy 2-core machine, for upper bounds only.
const SLACK: Duration = Duration::from_millis(250);

/// The upper bound of the delay before attempt `attempt + 1` of a run of
/// failures: `min(cap, base * 2^(attempt - 1))`. The delay itself is
/// between half of it and all of it.
fn ceiling(attempt: usize) -> Duration {
    let doubled = BACKOFF
        .base
        .saturating_mul(1 << (attempt - 1).min(16) as u32);
    doubled.min(BACKOFF.cap)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

/// Connection attempts (refused or not) to each session's resume URL from
/// `since` on, in order.
fn resume_attempts(seen: &Observed, since: Duration) -> BTreeMap<String, Vec<Duration>> {
    let mut attempts: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for refused in seen.refused_upgrades.iter().filter(|r| r.at >= since) {
        if let Some(session) = refused.session_id() {
            attempts
                .entry(session.to_owned())
                .or_default()
                .push(refused.at);
        }
    }
    for connection in seen.connections.iter().filter(|c| c.opened_at >= since) {
        if let Some(session) = connection.resume_url_session() {
            attempts
                .entry(session.to_owned())
                .or_default()
                .push(connection.opened_at);
        }
    }
    for times in attempts.values_mut() {
        times.sort_unstable();
    }
    attempts
}

async fn wait_all_active(manager: &actix::Addr<ShardManager>, mock: &MockServer) {
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let status = manager.send(GetFleetStatus).await.expect("status");
        let active = status.active_shards();
        if active == SHARDS as usize {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{active} of {SHARDS} shards active; violations: {:#?}",
            mock.observed().violations
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The emulator refuses every connection for half a second after every
/// shard lost its connection (a tenth of them their session too). The
/// retries spread out and back off up to the cap; afterwards every session
/// resumes without waiting for the identify queue, the ten identifies go
/// one bucket window apart, and nothing is violated.
#[actix_rt::test]
async fn a_fleet_survives_an_outage_without_a_reconnect_storm() {
    init_logging();
    let mock = start_mock(
        mock_config()
            .guilds(u64::from(SHARDS))
            .max_guilds_per_shard(1)
            .max_concurrency(MAX_CONCURRENCY)
            .identify_window(IDENTIFY_WINDOW)
            .session_resume_urls(true),
    )
    .await;
    let manager = ShardManager::launch(
        manager_config(&mock)
            .shard_count(ShardCount::Fixed(SHARDS))
            .identify(common::identify_window(IDENTIFY_WINDOW))
            .shard_config(shard_config().backoff(BACKOFF)),
    )
    .await
    .expect("the fleet starts");
    let started = Instant::now();
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("the fleet becomes ready");
    let fleet_ready = started.elapsed();
    let before = mock.observed();
    assert!(
        before.violations.is_empty(),
        "starting: {:#?}\n{:#?}",
        before.violations,
        before
            .identifies
            .iter()
            .map(|i| (i.shard, i.bucket, i.at, i.outcome))
            .collect::<Vec<_>>()
    );
    let sessions_before = before.sessions.len();
    let identifies_before = before.identifies.len();
    let resumes_before = before.resumes.len();

    // The outage: every upgrade answered 503, then every connection lost;
    // every tenth shard (all in bucket 0) is closed with 4009 and has to
    // identify a new session afterwards.
    let outage_start = mock.elapsed();
    mock.outage(OUTAGE);
    let new_session: Vec<u32> = (0..SHARDS).filter(|id| id % MAX_CONCURRENCY == 0).collect();
    for shard in 0..SHARDS {
        let fault = if new_session.contains(&shard) {
            Fault::Close {
                code: 4009,
                reason: None,
            }
        } else {
            Fault::DropTcp
        };
        mock.fault(&Target::Shard(shard), fault);
    }
    let outage_end = outage_start + OUTAGE;
    // Until the outage ends, no shard can be back; then wait for all.
    actix_rt::time::sleep(OUTAGE).await;
    wait_all_active(&manager, &mock).await;
    let recovered = mock.elapsed() - outage_end;
    let seen = mock.observed();

    // Which shard each resume URL belongs to.
    let shard_of: BTreeMap<&str, u32> = seen
        .sessions
        .iter()
        .map(|s| (s.id.as_str(), s.shard[0]))
        .collect();
    let attempts = resume_attempts(&seen, outage_start);
    let resuming = SHARDS as usize - new_session.len();
    assert_eq!(
        attempts.len(),
        resuming,
        "one resume URL per resuming shard"
    );

    // Backoff: attempt 1 at once, then delays doubling up to the cap, each
    // between half its ceiling and (with slack) all of it.
    let mut gaps: Vec<Vec<Duration>> = vec![Vec::new(); 5];
    let mut first_attempts = Vec::new();
    let mut second_attempts = Vec::new();
    for (session, times) in &attempts {
        let shard = shard_of.get(session.as_str()).copied().unwrap_or(u32::MAX);
        assert!(
            times.len() >= 2 && times.len() <= 5,
            "shard {shard}: {} attempts {times:?}",
            times.len()
        );
        first_attempts.push(times[0]);
        second_attempts.push(times[1]);
        for (index, pair) in times.windows(2).enumerate() {
            let attempt = index + 1;
            let gap = pair[1] - pair[0];
            let ceiling = ceiling(attempt);
            assert!(
                gap + Duration::from_millis(10) >= ceiling / 2,
                "shard {shard}: retry {attempt} after {gap:?}, under half of {ceiling:?}"
            );
            gaps[attempt].push(gap);
        }
    }
    let mut summary = String::new();
    for (attempt, gaps) in gaps.iter_mut().enumerate().skip(1) {
        if gaps.is_empty() {
            continue;
        }
        let ceiling = ceiling(attempt);
        let count = gaps.len();
        let median = median(gaps);
        let (min, max) = (gaps[0], gaps[count - 1]);
        summary.push_str(&format!(
            "\n  retry {attempt}: ceiling {:.0} ms, {count} shards, min {:.0} / median {:.0} / max {:.0} ms",
            millis(ceiling),
            millis(min),
            millis(median),
            millis(max)
        ));
        // Medians resist a busy machine's outliers.
        assert!(
            median <= ceiling + SLACK,
            "retry {attempt}: median {median:?} over the ceiling {ceiling:?}"
        );
        if count >= 10 {
            assert!(
                median >= ceiling / 2 + ceiling / 10,
                "retry {attempt}: median {median:?}: no jitter above half of {ceiling:?}"
            );
        }
    }
    // The cap: retries 3 and 4 share the ceiling, 4 does not double.
    assert!(
        !gaps[4].is_empty() || !gaps[3].is_empty(),
        "the cap was reached"
    );

    // Lockstep: the first attempt follows the drop at once (together), the
    // second is spread by jitter.
    first_attempts.sort_unstable();
    second_attempts.sort_unstable();
    let span = |times: &[Duration]| times[times.len() - 1] - times[0];
    let first_span = span(&first_attempts);
    let second_span = span(&second_attempts);
    let mut first_retry: Vec<Duration> = gaps[1].clone();
    first_retry.sort_unstable();
    let spread = first_retry[first_retry.len() - 1] - first_retry[0];
    let buckets: std::collections::BTreeSet<u128> =
        first_retry.iter().map(|d| d.as_millis() / 5).collect();
    assert!(
        spread >= Duration::from_millis(20) && buckets.len() >= 5,
        "first retries in lockstep: spread {spread:?}, {} distinct 5 ms slots",
        buckets.len()
    );
    assert!(
        second_span >= Duration::from_millis(20),
        "second attempts within {second_span:?}"
    );

    // After the outage: every resuming shard resumed, none identified; the
    // new sessions identified through the queue, one window apart.
    let resumes: Vec<_> = seen.resumes[resumes_before..].iter().collect();
    let resumed: Vec<Duration> = resumes
        .iter()
        .filter(|r| matches!(r.outcome, ResumeOutcome::Resumed { .. }))
        .map(|r| r.at)
        .collect();
    assert_eq!(
        resumed.len(),
        resuming,
        "every session resumed: {resumes:#?}"
    );
    let identifies: Vec<_> = seen.identifies[identifies_before..].iter().collect();
    let mut identified: Vec<(u32, Duration)> = identifies
        .iter()
        .filter(|i| i.outcome == IdentifyOutcome::Accepted)
        .map(|i| (i.shard[0], i.at))
        .collect();
    identified.sort_by_key(|(_, at)| *at);
    let mut identified_shards: Vec<u32> = identified.iter().map(|(shard, _)| *shard).collect();
    identified_shards.sort_unstable();
    assert_eq!(
        identified_shards, new_session,
        "only the shards whose session ended identify"
    );
    assert!(
        identifies
            .iter()
            .all(|i| i.outcome == IdentifyOutcome::Accepted),
        "{identifies:#?}"
    );
    let last_resume = resumed.iter().max().copied().unwrap_or_default();
    let first_identify = identified.first().map(|(_, at)| *at).unwrap_or_default();
    let last_identify = identified.last().map(|(_, at)| *at).unwrap_or_default();
    // Resumes do not wait for identify slots: they are all done before the
    // queue has let even half of the identifies through.
    let halfway = identified[identified.len() / 2].1;
    assert!(
        last_resume < halfway,
        "last resume at {last_resume:?}, identifies from {first_identify:?} to {last_identify:?}"
    );
    assert!(
        last_resume <= outage_end + BACKOFF.cap + Duration::from_secs(1),
        "resumes took until {last_resume:?} after an outage ending at {outage_end:?}"
    );
    for pair in identified.windows(2) {
        // One bucket: a window apart at least, as the emulator stamped
        // them (it checks that too).
        assert!(pair[1].1 - pair[0].1 >= IDENTIFY_WINDOW, "{pair:?}");
    }
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
    assert_eq!(
        seen.sessions.len(),
        sessions_before + new_session.len(),
        "one new session per shard closed with 4009"
    );
    let discovery_refused = seen
        .refused_upgrades
        .iter()
        .filter(|r| !r.on_resume_url)
        .count();

    eprintln!(
        "storm: {SHARDS} shards (ready in {:.1} s), outage {:.0} ms, backoff {:.0}..{:.0} ms\n  \
         refused upgrades: {} on resume URLs, {discovery_refused} on the discovery URL\n  \
         first attempt after the drop: {} shards within {:.1} ms (immediate by design)\n  \
         second attempt: spread over {:.1} ms; first retry delays spread {:.1} ms over {} distinct 5 ms slots{summary}\n  \
         after the outage: {} resumes, the last {:.0} ms after it ended; {} identifies from {:.0} to {:.0} ms; \
         all active {:.0} ms after it ended; violations: {}",
        fleet_ready.as_secs_f64(),
        millis(OUTAGE),
        millis(BACKOFF.base),
        millis(BACKOFF.cap),
        seen.refused_upgrades.len() - discovery_refused,
        first_attempts.len(),
        millis(first_span),
        millis(second_span),
        millis(spread),
        buckets.len(),
        resumed.len(),
        millis(last_resume.saturating_sub(outage_end)),
        identified.len(),
        millis(first_identify.saturating_sub(outage_end)),
        millis(last_identify.saturating_sub(outage_end)),
        millis(recovered),
        seen.violations.len(),
    );
}
