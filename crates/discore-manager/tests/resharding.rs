//! Re-sharding against the emulator: when the bot's guilds outgrow its
//! shards, a new fleet starts next to the old one and delivery switches
//! without losing, repeating or reordering any guild's events.

mod common;

use common::{Seen, collector, init_logging, manager_config, mock_config, start_mock, wait_for};
use discore_gateway::{EventFilter, ShardFailureReason, StopMode};
use discore_manager::{
    FleetEvent, GetFleetStatus, ReshardMode, ShardCount, ShardManager, ShutdownFleet,
    WaitUntilReady,
};
use discore_mock::{IdentifyOutcome, MockServer};
use discore_protocol::shard_for_guild;
use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// Posts one message into `guild`; returns its id if the gateway delivered
/// it to at least one session (a guild whose only shard was just closed has
/// none until the new fleet identifies; Discord would drop those too).
fn post(mock: &MockServer, guild: u64, text: &str) -> (u64, bool) {
    let channel = mock.text_channel_ids(guild)[0];
    let (message, deliveries) = mock.post_message(channel, text).expect("posted");
    let id = message["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a message id");
    if std::env::var_os("DISCORE_TEST_TRACE").is_some() {
        let to: Vec<String> = deliveries
            .iter()
            .map(|d| format!("{:?}#{}", d.shard, d.sequence))
            .collect();
        eprintln!("posted {guild}/{id} to {to:?}");
    }
    (id, !deliveries.is_empty())
}

/// Posts into every guild, round after round, until stopped. Records every
/// message the gateway delivered somewhere, in posting order.
struct Emitter {
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    posted: Arc<Mutex<Vec<(u64, u64)>>>,
    rounds: Arc<Mutex<u64>>,
}

impl Emitter {
    fn start(mock: MockServer) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(AtomicBool::new(false));
        let posted = Arc::new(Mutex::new(Vec::new()));
        let rounds = Arc::new(Mutex::new(0));
        let (flag, paused, record, count) =
            (stop.clone(), pause.clone(), posted.clone(), rounds.clone());
        actix_rt::spawn(async move {
            while !flag.load(Ordering::Acquire) {
                if paused.load(Ordering::Acquire) {
                    actix_rt::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                for guild in mock.guild_ids() {
                    let (id, delivered) = post(&mock, guild, "during the re-sharding");
                    if delivered {
                        record.lock().expect("lock").push((guild, id));
                    }
                }
                *count.lock().expect("lock") += 1;
                actix_rt::time::sleep(Duration::from_millis(3)).await;
            }
        });
        Self {
            stop,
            pause,
            posted,
            rounds,
        }
    }

    /// Stops posting after the current round (the task posts whole rounds
    /// between awaits, so no round is in progress once this returns).
    fn pause(&self, paused: bool) {
        self.pause.store(paused, Ordering::Release);
    }

    fn posted(&self) -> Vec<(u64, u64)> {
        self.posted.lock().expect("lock").clone()
    }

    fn rounds(&self) -> u64 {
        *self.rounds.lock().expect("lock")
    }

    fn finish(self) -> Vec<(u64, u64)> {
        self.stop.store(true, Ordering::Release);
        self.posted.lock().expect("lock").clone()
    }
}

/// Per guild, the message ids in order.
fn per_guild(messages: &[(u64, u64)]) -> BTreeMap<u64, Vec<u64>> {
    let mut map: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (guild, id) in messages {
        map.entry(*guild).or_default().push(*id);
    }
    map
}

/// The guild count grows past capacity while messages flow in every guild:
/// the shard that overflows is closed with 4011, a fleet of the recommended
/// count starts, delivery switches, and every delivered message of every
/// guild reaches the bot exactly once and in order, with no repeated
/// GUILD_CREATE.
#[actix_rt::test]
async fn live_resharding_delivers_every_event_once_and_in_order() {
    init_logging();
    let mock = start_mock(mock_config().guilds(8).max_guilds_per_shard(4)).await;
    let (bot, log) = collector();
    let manager = ShardManager::launch(
        manager_config(&mock)
            // 3 shards hold 8 guilds as 3/3/2; 13 guilds make one of them 5.
            .shard_count(ShardCount::Fixed(3))
            .resharding(ReshardMode::ZeroDowntime)
            .subscribe(bot.clone().recipient(), EventFilter::all())
            .subscribe_fleet(bot.recipient()),
    )
    .await
    .expect("the fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");

    // Before: one message per guild, all delivered.
    let mut expected: Vec<(u64, u64)> = Vec::new();
    for guild in mock.guild_ids() {
        let (id, delivered) = post(&mock, guild, "before");
        assert!(delivered);
        expected.push((guild, id));
    }
    wait_for("the first messages", || {
        log.messages().len() == expected.len()
    })
    .await;

    let emitter = Emitter::start(mock.clone());
    wait_for("the emitter's first round", || emitter.rounds() >= 1).await;
    // The emulator drops what it still had queued for a session it closes
    // with 4011 (as Discord may): pause while the guilds grow, so that every
    // message counted was really sent.
    emitter.pause(true);
    let before: HashSet<(u64, u64)> = emitter.posted().into_iter().collect();
    wait_for("the messages so far", || {
        let received: HashSet<(u64, u64)> = log.messages().into_iter().collect();
        before.is_subset(&received)
    })
    .await;
    let old_guilds = mock.guild_ids();
    let added = mock.add_guilds(5);
    // Stay paused until the overflowing shard's session is closed with
    // 4011: a message posted before that would go to a session whose queue
    // the emulator drops, so nobody could ever deliver it.
    wait_for("the 4011 close of the overflowing shard", || {
        mock.observed()
            .connections
            .iter()
            .any(|c| c.close_sent == Some(4011))
    })
    .await;
    emitter.pause(false);
    assert_eq!(added.len(), 5);
    assert_eq!(mock.recommended_shards(), 4);
    let overflowing: HashSet<u32> = (0..3)
        .filter(|shard| {
            mock.guild_ids()
                .iter()
                .filter(|g| shard_for_guild(**g, 3) == *shard)
                .count()
                > 4
        })
        .collect();
    assert_eq!(overflowing.len(), 1, "exactly one old shard overflows");

    wait_for("the switch", || {
        log.has_fleet(|e| *e == FleetEvent::Resharded { from: 3, to: 4 })
    })
    .await;
    // Keep posting a little after the switch.
    let after = emitter.rounds() + 5;
    wait_for("five more rounds", || emitter.rounds() >= after).await;
    expected.extend(emitter.finish());

    let deadline = std::time::Instant::now() + common::TIMEOUT;
    loop {
        let received: HashSet<(u64, u64)> = log.messages().into_iter().collect();
        let missing: Vec<&(u64, u64)> = expected.iter().filter(|m| !received.contains(m)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "messages never delivered: {missing:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    // Nothing more trickles in: stop the fleet before comparing.
    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");

    let received = log.messages();
    assert_eq!(
        received.len(),
        expected.len(),
        "every message exactly once (received {}, expected {})",
        received.len(),
        expected.len()
    );
    let (received, expected) = (per_guild(&received), per_guild(&expected));
    assert_eq!(received.len(), 13, "every guild got messages");
    for (guild, ids) in &expected {
        assert_eq!(
            received.get(guild),
            Some(ids),
            "guild {guild}: order or completeness"
        );
    }

    // Each guild's GUILD_CREATE reached the bot once: the old guilds at the
    // start, the new ones from the new fleet.
    let creates: Vec<u64> = log
        .events_named("GUILD_CREATE")
        .into_iter()
        .filter_map(|s| match s {
            Seen::Event { guild, .. } => guild,
            Seen::Fleet(_) => None,
        })
        .collect();
    let unique: HashSet<u64> = creates.iter().copied().collect();
    assert_eq!(creates.len(), 13, "{creates:?}");
    assert_eq!(unique.len(), 13);

    // No guild went dark: the shards that kept serving delivered, between
    // the start of the re-sharding and the switch, many rounds of messages
    // for each of their guilds (more than could have been in flight when
    // the re-sharding began).
    let entries = log.lock().clone();
    let started = entries
        .iter()
        .position(|s| {
            matches!(
                s,
                Seen::Fleet(FleetEvent::ReshardingStarted { from: 3, to: 4 })
            )
        })
        .expect("the re-sharding was announced");
    let switched = entries
        .iter()
        .position(|s| matches!(s, Seen::Fleet(FleetEvent::Resharded { from: 3, to: 4 })))
        .expect("the switch was announced");
    let mut served_meanwhile: BTreeMap<u64, usize> = BTreeMap::new();
    for entry in &entries[started..switched] {
        if let Seen::Event {
            shard,
            guild: Some(guild),
            message: Some(_),
            ..
        } = entry
            && shard.total() == 3
        {
            *served_meanwhile.entry(*guild).or_default() += 1;
        }
    }
    for guild in old_guilds
        .iter()
        .filter(|g| !overflowing.contains(&shard_for_guild(**g, 3)))
    {
        let served = served_meanwhile.get(guild).copied().unwrap_or_default();
        assert!(
            served >= 5,
            "guild {guild} got {served} messages during the re-sharding"
        );
    }
    assert!(log.has_fleet(|e| matches!(
        e,
        FleetEvent::ShardFailed { shard, .. } if shard.total() == 3 && overflowing.contains(&shard.number())
    )));

    let seen = mock.observed();
    assert!(
        seen.violations.is_empty(),
        "{:#?}\nidentifies: {:#?}",
        seen.violations,
        seen.identifies
    );
    let accepted: Vec<[u32; 2]> = seen
        .identifies
        .iter()
        .filter(|i| i.outcome == IdentifyOutcome::Accepted)
        .map(|i| i.shard)
        .collect();
    assert_eq!(accepted.len(), 3 + 4, "{accepted:?}");
    // The old fleet is gone: every one of its connections ended (the
    // overflowing shard's with the gateway's 4011).
    mock.wait_until(common::TIMEOUT, |seen| {
        seen.connections
            .iter()
            .filter(|c| c.shard.is_some_and(|[_, t]| t == 3))
            .all(|c| !c.is_open())
    })
    .await
    .expect("the old fleet's connections closed");
    for connection in seen.connections.iter().filter(|c| {
        c.shard
            .is_some_and(|[id, t]| t == 3 && overflowing.contains(&id))
    }) {
        assert_eq!(connection.close_sent, Some(4011), "{connection:?}");
    }
    mock.stop().await;
}

/// A requested re-sharding works the same way without any failure, and the
/// manager's status follows it.
#[actix_rt::test]
async fn requested_resharding_switches_to_the_new_total() {
    init_logging();
    let mock = start_mock(mock_config().guilds(6).max_guilds_per_shard(3)).await;
    let (bot, log) = collector();
    let manager = ShardManager::launch(
        manager_config(&mock)
            .subscribe(bot.clone().recipient(), EventFilter::all())
            .subscribe_fleet(bot.recipient()),
    )
    .await
    .expect("the fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");
    assert_eq!(manager.send(GetFleetStatus).await.expect("status").total, 2);
    manager
        .send(discore_manager::Reshard(Some(3)))
        .await
        .expect("manager answers")
        .expect("re-sharding begins");
    wait_for("the switch", || {
        log.has_fleet(|e| *e == FleetEvent::Resharded { from: 2, to: 3 })
    })
    .await;
    let progress = actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");
    assert_eq!(progress.total, 3);
    let status = manager.send(GetFleetStatus).await.expect("status");
    assert_eq!(status.total, 3);
    assert_eq!(status.shards.len(), 3);
    assert!(status.resharding.is_none());

    // Events flow through the new fleet only.
    let guild = mock.guild_ids()[0];
    let (id, delivered) = post(&mock, guild, "after");
    assert!(delivered);
    wait_for("the message", || log.messages().contains(&(guild, id))).await;
    let from_new = log.lock().iter().any(|s| {
        matches!(s, Seen::Event { shard, message: Some(m), .. } if *m == id && shard.total() == 3)
    });
    assert!(from_new);
    assert_eq!(
        log.events_named("GUILD_CREATE").len(),
        6,
        "no repeated GUILD_CREATE"
    );
    assert!(!log.has_fleet(|e| matches!(e, FleetEvent::ShardFailed { .. })));
    let seen = mock.observed();
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    mock.stop().await;
}

/// Stop-the-world mode: the old fleet stops first, then the new one starts.
#[actix_rt::test]
async fn stop_the_world_resharding() {
    init_logging();
    let mock = start_mock(mock_config().guilds(8).max_guilds_per_shard(4)).await;
    let (bot, log) = collector();
    let manager = ShardManager::launch(
        manager_config(&mock)
            .shard_count(ShardCount::Fixed(3))
            .resharding(ReshardMode::StopTheWorld)
            .subscribe(bot.clone().recipient(), EventFilter::all())
            .subscribe_fleet(bot.recipient()),
    )
    .await
    .expect("the fleet starts");
    actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");
    mock.add_guilds(5);
    wait_for("the new fleet", || {
        log.has_fleet(|e| *e == FleetEvent::Resharded { from: 3, to: 4 })
    })
    .await;
    let progress = actix_rt::time::timeout(common::TIMEOUT, manager.send(WaitUntilReady))
        .await
        .expect("WaitUntilReady answered in time")
        .expect("manager answers")
        .expect("ready");
    assert_eq!(progress.total, 4);
    assert_eq!(progress.guilds_loaded, 13);
    assert!(log.has_fleet(|e| matches!(
        e,
        FleetEvent::ShardFailed {
            failure: discore_manager::ShardFailure::Fatal(ShardFailureReason::ShardingRequired),
            ..
        }
    )));
    // Every old session ended: closed by the gateway (4011) or by the
    // manager with 1000 before the new fleet took over.
    mock.wait_until(common::TIMEOUT, |seen| {
        seen.connections
            .iter()
            .filter(|c| c.shard.is_some_and(|[_, t]| t == 3))
            .all(|c| !c.is_open())
    })
    .await
    .expect("the old connections closed");
    let seen = mock.observed();
    for connection in seen
        .connections
        .iter()
        .filter(|c| c.shard.is_some_and(|[_, t]| t == 3))
    {
        assert!(
            connection.close_sent == Some(4011) || connection.close_received == Some(1000),
            "{connection:?}"
        );
    }
    let new_fleet: HashSet<[u32; 2]> = seen
        .identifies
        .iter()
        .filter(|i| i.outcome == IdentifyOutcome::Accepted && i.shard[1] == 4)
        .map(|i| i.shard)
        .collect();
    assert_eq!(new_fleet.len(), 4);
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager answers")
        .expect("shutdown");
    mock.stop().await;
}
