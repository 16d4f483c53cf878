use crate::harness::*;
use discore::{GetShardStatus, Lifecycle};
use discore_mock::{MockServer, Target};

/// Posts `count` messages into the shard's first guild.
fn post(mock: &MockServer, from: usize, count: usize) {
    let guild = mock.guild_ids()[0];
    let channel = mock.text_channel_ids(guild)[0];
    for i in from..from + count {
        mock.post_message(channel, &format!("m{i}"))
            .expect("posted");
    }
}

fn contents(recorded: &Recorded) -> Vec<String> {
    recorded
        .events()
        .iter()
        .filter_map(|e| match e.typed() {
            Some(discore::DispatchEvent::MessageCreate(m)) => Some(m.content.clone()),
            _ => None,
        })
        .collect()
}

/// After a disruption the shard resumed: events posted around it arrive once,
/// in order, with no new identify and no violation.
async fn assert_resumed_without_loss(mock: &MockServer, recorded: &Recorded, resumes: usize) {
    post(mock, 1000 * resumes, 20);
    recorded
        .wait(&format!("{resumes} resumes"), |_, lifecycle| {
            lifecycle
                .iter()
                .filter(|l| **l == Lifecycle::Reconnected { resumed: true })
                .count()
                >= resumes
        })
        .await;
    post(mock, 1000 * resumes + 20, 20);
    let expected_total = 40 * resumes;
    recorded
        .wait_for_event("MESSAGE_CREATE", expected_total)
        .await;
    assert_in_order_exactly_once(&recorded.events());
    let seen = contents(recorded);
    assert_eq!(seen.len(), expected_total, "every message exactly once");
    assert_eq!(
        mock.observed().identifies_total(),
        1,
        "resumes cost no identify"
    );
    assert_no_violations(mock);
}

/// Op 7 Reconnect: the shard resumes on the resume URL.
#[actix_rt::test]
async fn reconnect_request_resumes() {
    let (mock, recorded, shard) = ready_shard().await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    assert_eq!(mock.reconnect(&Target::Shard(0)), 1);
    assert_resumed_without_loss(&mock, &recorded, 1).await;
    let seen = mock.observed();
    assert!(
        seen.resumes.iter().all(|r| r.on_resume_url),
        "resumes use resume_gateway_url"
    );
    let status = shard.send(GetShardStatus).await.expect("status");
    assert_eq!((status.resumes, status.reconnects), (1, 1));
}

/// Op 7 instead of Hello on the next connection: the shard tries again and resumes.
#[actix_rt::test]
async fn reconnect_instead_of_hello_resumes() {
    let (mock, recorded, _shard) = ready_shard().await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    mock.reconnect_instead_of_hello(1);
    mock.drop_connection(&Target::Shard(0));
    assert_resumed_without_loss(&mock, &recorded, 1).await;
}

/// No ACK between two heartbeats: the shard drops the zombie and resumes.
#[actix_rt::test]
async fn zombie_connection_is_dropped_and_resumed() {
    let (mock, recorded, _shard) = ready_shard().await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    let first = mock.observed().last_connection().expect("connected").id;
    mock.set_heartbeat_acks(&Target::Shard(0), false);
    assert_resumed_without_loss(&mock, &recorded, 1).await;
    let seen = mock.observed();
    let zombie = seen.connection(first).expect("recorded");
    assert_eq!(
        zombie.close_received,
        Some(4000),
        "closed with a resumable code"
    );
}

/// A TCP connection dropped without a close frame is resumed.
#[actix_rt::test]
async fn dropped_tcp_is_resumed() {
    let (mock, recorded, _shard) = ready_shard().await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    mock.drop_connection(&Target::Shard(0));
    assert_resumed_without_loss(&mock, &recorded, 1).await;
}

/// Every close code whose policy is "resume" is resumed.
#[actix_rt::test]
async fn resumable_close_codes_resume() {
    let (mock, recorded, _shard) = ready_shard().await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    for (round, code) in [4000, 4001, 4002, 4005, 4008, 1001, 1011]
        .into_iter()
        .enumerate()
    {
        assert_eq!(mock.close(&Target::Shard(0), code), 1, "close {code}");
        assert_resumed_without_loss(&mock, &recorded, round + 1).await;
    }
}

/// 4003, 4007 and 4009 end the session: the shard identifies a new one.
#[actix_rt::test]
async fn session_ending_close_codes_identify_anew() {
    let (mock, recorded, _shard) = ready_shard().await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    for (round, code) in [4003, 4007, 4009].into_iter().enumerate() {
        assert_eq!(mock.close(&Target::Shard(0), code), 1, "close {code}");
        recorded.wait_for_event("READY", round + 2).await;
        recorded
            .wait("a reconnect with a new session", |_, lifecycle| {
                lifecycle
                    .iter()
                    .filter(|l| **l == Lifecycle::Reconnected { resumed: false })
                    .count()
                    > round
            })
            .await;
    }
    assert_eq!(mock.observed().identifies_total(), 4);
    assert_in_order_exactly_once(&recorded.events());
    assert_no_violations(&mock);
}

/// Op 9 with `d: true` resumes.
#[actix_rt::test]
async fn resumable_invalid_session_resumes() {
    let (mock, recorded, _shard) = ready_shard().await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    mock.invalid_session(&Target::Shard(0), true);
    assert_resumed_without_loss(&mock, &recorded, 1).await;
}

/// Op 9 with `d: false` waits a little and identifies a new session.
#[actix_rt::test]
async fn invalid_session_identifies_anew() {
    let (mock, recorded, _shard) = ready_shard().await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    mock.invalid_session(&Target::Shard(0), false);
    recorded.wait_for_event("READY", 2).await;
    recorded
        .wait_for_lifecycle(Lifecycle::Reconnected { resumed: false })
        .await;
    // The new session's guilds arrive again.
    recorded.wait_for_event("GUILD_CREATE", 6).await;
    assert_eq!(mock.observed().identifies_total(), 2);
    assert_in_order_exactly_once(&recorded.events());
    assert_no_violations(&mock);
}

/// A shard started from a handed-off session resumes it: no identify, and
/// the events sent in between arrive.
#[actix_rt::test]
async fn hand_off_then_resume_from_the_saved_session() {
    use discore::{Shutdown, StopMode};
    let (mock, recorded, shard) = ready_shard().await;
    recorded.wait_for_event("GUILD_CREATE", 3).await;
    let session = shard
        .send(Shutdown(StopMode::HandOff))
        .await
        .expect("answered")
        .expect("a session to hand off");
    // Round-trip it as another process would.
    let json = serde_json::to_string(&session).expect("serializes");
    let session = serde_json::from_str(&json).expect("deserializes");
    mock.wait_until(PATIENCE, |seen| {
        seen.connections.iter().all(|c| !c.is_open())
    })
    .await
    .expect("the old connection closed");
    assert_eq!(mock.observed().connections[0].close_received, Some(4000));
    post(&mock, 0, 5);
    let successor = Recorded::start();
    let _next = shard_with_session(&mock, &successor, session).await;
    successor.wait_for_event("MESSAGE_CREATE", 5).await;
    assert_eq!(successor.count("READY"), 0, "resumed, not identified");
    assert_eq!(mock.observed().identifies_total(), 1);
    assert_no_violations(&mock);
}

async fn shard_with_session(
    mock: &MockServer,
    recorded: &Recorded,
    session: discore::Session,
) -> actix::Addr<discore::Shard> {
    shard(shard_config(mock).session(session), recorded)
        .start()
        .await
        .expect("resumes")
}

/// Ending the session gracefully closes with 1000.
#[actix_rt::test]
async fn graceful_shutdown_closes_with_1000() {
    use discore::{Shutdown, StopMode};
    let (mock, _recorded, shard) = ready_shard().await;
    let session = shard.send(Shutdown(StopMode::End)).await.expect("answered");
    assert!(session.is_none());
    mock.wait_until(PATIENCE, |seen| {
        seen.connections[0].close_received == Some(1000)
    })
    .await
    .expect("closed with 1000");
}
