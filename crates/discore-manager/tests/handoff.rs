//! Deploys: a hand-off shutdown saves every session, and the next manager
//! resumes them all without a single identify.

mod common;

use common::{collector, init_logging, manager_config, mock_config, start_mock, wait_for};
use discore_gateway::{EventFilter, StopMode};
use discore_manager::{
    FleetEvent, SessionConfig, ShardManager, ShutdownFleet, WaitUntilReady,
    session_store::{InMemorySessionStore, JsonFileSessionStore, SessionStore},
};
use discore_mock::{ConnectionEnd, MockServer, ResumeOutcome};
use std::sync::Arc;

/// Runs a fleet, hands it off into `store`, posts a message while nobody is
/// connected, starts a second fleet on the same store; returns the second
/// fleet's log and the message (guild, id).
async fn deploy(mock: &MockServer, store: Arc<dyn SessionStore>) -> (common::Log, (u64, u64)) {
    let (first, first_log) = collector();
    let manager = ShardManager::launch(
        manager_config(mock)
            .sessions(SessionConfig::new(Arc::clone(&store)))
            .subscribe(first.clone().recipient(), EventFilter::all())
            .subscribe_fleet(first.recipient()),
    )
    .await
    .expect("the first fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");
    let report = manager
        .send(ShutdownFleet(StopMode::HandOff))
        .await
        .expect("manager answers")
        .expect("hand-off");
    assert_eq!(report.shards_stopped, 3);
    assert_eq!(report.sessions_saved, 3);
    assert_eq!(report.store_error, None);
    assert_eq!(store.load().await.expect("loads").len(), 3);
    assert!(first_log.has_fleet(|e| matches!(e, FleetEvent::Stopped(_))));
    mock.wait_until(common::TIMEOUT, |seen| seen.open_connections() == 0)
        .await
        .expect("every connection closed");
    let seen = mock.observed();
    for connection in &seen.connections {
        // A hand-off closes with 4000. (The emulator may see a close frame
        // followed at once by the end of TCP as a dropped connection.)
        assert!(
            connection.close_received == Some(4000)
                || (connection.close_received.is_none()
                    && connection.end == Some(ConnectionEnd::ClientDropped)),
            "{connection:?}"
        );
    }

    // Between the two processes, something happens: the second one must
    // get it from the resume's replay.
    let guild = mock.guild_ids()[0];
    let (message, deliveries) = mock
        .post_message(mock.text_channel_ids(guild)[0], "during the deploy")
        .expect("posted");
    assert_eq!(deliveries.len(), 1, "the session is still there to keep it");
    let id: u64 = message["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("an id");

    let (second, log) = collector();
    let manager = ShardManager::launch(
        manager_config(mock)
            .sessions(SessionConfig::new(Arc::clone(&store)))
            .subscribe(second.clone().recipient(), EventFilter::all())
            .subscribe_fleet(second.recipient()),
    )
    .await
    .expect("the second fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready after resuming");
    wait_for("the replayed message", || {
        log.messages().contains(&(guild, id))
    })
    .await;
    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    (log, (guild, id))
}

fn assert_zero_identifies_on_restart(mock: &MockServer) {
    let seen = mock.observed();
    assert_eq!(seen.identifies.len(), 3, "only the first fleet identified");
    let resumed = seen
        .resumes
        .iter()
        .filter(|r| matches!(r.outcome, ResumeOutcome::Resumed { .. }) && r.on_resume_url)
        .count();
    assert_eq!(resumed, 3, "{:#?}", seen.resumes);
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
}

/// A restart from sessions saved in memory performs zero identifies.
#[actix_rt::test]
async fn restart_from_saved_sessions_performs_zero_identifies() {
    init_logging();
    let mock = start_mock(mock_config().guilds(6).max_guilds_per_shard(2)).await;
    let store = Arc::new(InMemorySessionStore::new());
    let (log, _) = deploy(&mock, store.clone()).await;
    assert_zero_identifies_on_restart(&mock);
    // A resumed session does not load its guilds again.
    assert!(log.events_named("GUILD_CREATE").is_empty());
    assert!(store.is_empty(), "an ending shutdown forgets the sessions");
    mock.stop().await;
}

/// The same through a JSON file, as a real deploy would do it.
#[actix_rt::test]
async fn restart_from_a_session_file_performs_zero_identifies() {
    init_logging();
    let mock = start_mock(mock_config().guilds(6).max_guilds_per_shard(2)).await;
    let dir = std::env::temp_dir().join(format!("discore-handoff-{}", std::process::id()));
    let store = Arc::new(JsonFileSessionStore::new(dir.join("sessions.json")));
    deploy(&mock, store).await;
    assert_zero_identifies_on_restart(&mock);
    let _ = std::fs::remove_dir_all(dir);
    mock.stop().await;
}

/// With a checkpoint interval, sessions are saved while the fleet runs, so a
/// process that dies without a hand-off can still be resumed.
#[actix_rt::test]
async fn checkpoints_save_running_sessions() {
    init_logging();
    let mock = start_mock(mock_config().guilds(4).max_guilds_per_shard(2)).await;
    let store = Arc::new(InMemorySessionStore::new());
    let manager = ShardManager::launch(manager_config(&mock).sessions(SessionConfig {
        checkpoint_interval: Some(std::time::Duration::from_millis(50)),
        ..SessionConfig::new(store.clone())
    }))
    .await
    .expect("the fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");
    wait_for("two checkpointed sessions", || store.len() == 2).await;
    let saved = store.load().await.expect("loads");
    let sessions: Vec<String> = mock
        .observed()
        .sessions
        .iter()
        .map(|s| s.id.clone())
        .collect();
    for s in &saved {
        assert_eq!(s.shard.total(), 2);
        assert!(sessions.contains(&s.session.id), "{s:?}");
    }
    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    mock.stop().await;
}
