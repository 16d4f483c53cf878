//! Shards join and leave a running manager: `AdoptShard` identifies or
//! resumes a saved session, `ReleaseShard` hands the session over, and a
//! second manager adopting the shard resumes it without an identify.

mod common;

use common::{TIMEOUT, collector, init_logging, manager_config, mock_config, start_mock, wait_for};
use discore_gateway::{EventFilter, InMemoryIdentifyQueue, StopMode};
use discore_manager::{
    AdoptRefusal, AdoptShard, Adopted, GetFleetStatus, IdentifyConfig, ManagerError, ReleaseShard,
    Released, ReshardMode, RouteError, SendCommandTo, SessionConfig, ShardCount, ShardManager,
    ShutdownFleet,
    session_store::{InMemorySessionStore, SessionStore},
};
use discore_mock::{MockServer, ResumeOutcome};
use discore_protocol::ShardId;
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};
use twilight_model::{gateway::payload::outgoing::RequestGuildMembers, id::Id};

const TOTAL: u32 = 4;

/// Shards with a session attached to an open connection, and how many.
fn live(mock: &MockServer) -> BTreeMap<u32, usize> {
    let mut live = BTreeMap::new();
    for connection in mock.observed().connections.iter().filter(|c| c.is_open()) {
        if let (Some([id, _]), Some(_)) = (connection.shard, &connection.session_id) {
            *live.entry(id).or_default() += 1;
        }
    }
    live
}

/// A manager with no shard at start; the managers of a test share the
/// session store and the identify queue, as the processes of a bot do.
async fn adopting_manager(
    mock: &MockServer,
    store: Arc<InMemorySessionStore>,
    queue: Arc<InMemoryIdentifyQueue>,
) -> (actix::Addr<ShardManager>, common::Log) {
    let (collector, log) = collector();
    let manager = ShardManager::launch(
        manager_config(mock)
            .shard_count(ShardCount::Adopted { total: TOTAL })
            .resharding(ReshardMode::Disabled)
            .sessions(SessionConfig::new(store))
            .identify(IdentifyConfig::queue(queue))
            .subscribe(collector.recipient(), EventFilter::all()),
    )
    .await
    .expect("a manager with no shard yet starts");
    (manager, log)
}

/// Waits, within the tests' bound, until `manager` reports each of
/// `numbers` active: READY received on its side, not only sent by the
/// emulator, so the shard has a session to hand over.
async fn wait_active(manager: &actix::Addr<ShardManager>, numbers: &[u32]) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let status = manager.send(GetFleetStatus).await.expect("manager answers");
        let active = numbers.iter().all(|number| {
            status
                .shards
                .iter()
                .any(|shard| shard.shard.number() == *number && shard.is_active())
        });
        if active {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for shards {numbers:?} to be active"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn adopt(manager: &actix::Addr<ShardManager>, number: u32) -> Adopted {
    manager
        .send(AdoptShard::new(ShardId::new(number, TOTAL)))
        .await
        .expect("manager answers")
        .expect("adopted")
}

#[actix_rt::test]
async fn shards_move_between_managers_by_adopt_and_release_without_an_identify() {
    init_logging();
    let mock = start_mock(mock_config().guilds(8).max_guilds_per_shard(2)).await;
    let store = Arc::new(InMemorySessionStore::new());
    let queue = Arc::new(InMemoryIdentifyQueue::with_window(
        1,
        Duration::from_millis(150),
    ));
    let (a, _) = adopting_manager(&mock, Arc::clone(&store), Arc::clone(&queue)).await;
    let (b, b_log) = adopting_manager(&mock, Arc::clone(&store), queue).await;
    assert!(
        live(&mock).is_empty(),
        "an adopting manager starts with none"
    );

    for number in [0, 2] {
        assert_eq!(adopt(&a, number).await, Adopted::Identifying);
    }
    assert_eq!(adopt(&b, 3).await, Adopted::Identifying);
    assert_eq!(adopt(&a, 2).await, Adopted::AlreadyRunning);
    wait_for("shards 0, 2 and 3 are live", || {
        live(&mock) == BTreeMap::from([(0, 1), (2, 1), (3, 1)])
    })
    .await;
    wait_active(&a, &[0, 2]).await;
    wait_active(&b, &[3]).await;

    // a runs 0 and 2: shard 1, in the gap, is another process's.
    let members = RequestGuildMembers::builder(Id::new(1 << 22)).query("", None);
    let routed = a
        .send(SendCommandTo::shard(1, members))
        .await
        .expect("manager answers");
    assert!(
        matches!(routed, Err(RouteError::NotOwned { shard: 1, .. })),
        "{routed:?}"
    );

    // Shard 2 moves from a to b: handed over, then resumed.
    let released: Released = a
        .send(ReleaseShard(ShardId::new(2, TOTAL)))
        .await
        .expect("manager answers")
        .expect("released");
    assert!(released.was_running && released.saved, "{released:?}");
    let session = released.session.expect("a running shard hands a session");
    assert!(
        store
            .load()
            .await
            .expect("loads")
            .iter()
            .any(|s| s.shard == ShardId::new(2, TOTAL) && s.session.id == session.id),
        "the session was saved for the next owner"
    );
    assert_eq!(adopt(&b, 2).await, Adopted::Resuming);
    wait_for("shard 2 resumed on b", || {
        mock.observed().resumes.iter().any(|r| {
            r.session_id == session.id && matches!(r.outcome, ResumeOutcome::Resumed { .. })
        }) && live(&mock).get(&2) == Some(&1)
    })
    .await;
    let seen = mock.observed();
    assert_eq!(seen.identifies.len(), 3, "the move cost no identify");
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);

    // b serves shard 2's events now.
    let guild = mock
        .guild_ids()
        .into_iter()
        .find(|g| discore_protocol::shard_for_guild(*g, TOTAL) == 2)
        .expect("a guild on shard 2");
    let (message, _) = mock
        .post_message(mock.text_channel_ids(guild)[0], "after the move")
        .expect("posted");
    let id: u64 = message["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("an id");
    wait_for("b delivers shard 2's message", || {
        b_log.messages().contains(&(guild, id))
    })
    .await;

    // What each manager runs, and what it refuses.
    let status = b.send(GetFleetStatus).await.expect("manager answers");
    let numbers: Vec<u32> = status.shards.iter().map(|s| s.shard.number()).collect();
    assert_eq!(numbers, [2, 3]);
    let refused = a
        .send(AdoptShard::new(ShardId::new(0, TOTAL + 1)))
        .await
        .expect("manager answers");
    assert_eq!(
        refused,
        Err(ManagerError::AdoptRefused {
            shard: ShardId::new(0, TOTAL + 1),
            refusal: AdoptRefusal::OtherTotal { fleet: TOTAL },
        })
    );
    let not_run = a
        .send(ReleaseShard(ShardId::new(3, TOTAL)))
        .await
        .expect("manager answers")
        .expect("answers");
    assert_eq!(not_run, Released::default());
    for manager in [a, b] {
        manager
            .send(ShutdownFleet(StopMode::End))
            .await
            .expect("manager answers")
            .expect("shutdown");
    }
    mock.stop().await;
}
