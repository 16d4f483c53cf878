//! What every shard test needs: an emulator with short intervals, a shard
//! pointed at it, and a subscriber that records what a user would see.

use actix::prelude::*;
use discore::{
    Backoff, Dispatch, DispatchEvent, EventFilter, GatewayEvent, Intents, Lifecycle, Shard,
    ShardConfig, ShardId, ShardLifecycle, Token, identify::InMemoryIdentifyQueue,
};
use discore_mock::{MockConfig, MockServer};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Generous: a busy 2-core machine must never make a test fail on time.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// The emulator's identify window in tests.
pub const IDENTIFY_WINDOW: Duration = Duration::from_millis(40);
/// The emulator's send-limit window in tests: scaled with the heartbeat
/// interval, so heartbeats take the same share of it as on Discord.
pub const SEND_WINDOW: Duration = Duration::from_secs(6);

/// The bot token the tests' emulator accepts.
pub const TOKEN: &str = "discore-test-token";

/// An emulator with test-sized intervals.
pub fn mock_config() -> MockConfig {
    MockConfig::new()
        .token(TOKEN)
        .guilds(3)
        .heartbeat_interval(Duration::from_millis(150))
        .identify_window(IDENTIFY_WINDOW)
        .send_limit(120, SEND_WINDOW)
}

/// A shard configuration aimed at `mock`, with scaled timers.
pub fn shard_config(mock: &MockServer) -> ShardConfig {
    ShardConfig::new(Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT)
        .gateway_url(mock.gateway_url())
        .compression(discore::Compression::None)
        .backoff(Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        })
        .invalid_session_delay(Duration::from_millis(10)..=Duration::from_millis(50))
        .handshake_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        // The emulator's window.
        .identify_queue(Arc::new(InMemoryIdentifyQueue::with_window(
            1,
            IDENTIFY_WINDOW,
        )))
        // A little above the emulator's window: frames arrive with jitter.
        .send_rate_limit(120, SEND_WINDOW + Duration::from_millis(300))
        .seed(7)
}

pub fn token() -> Token {
    Token::new(TOKEN).expect("a valid token")
}

/// One received event, as the subscriber saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub shard: ShardId,
    pub sequence: u64,
    pub event: Arc<Dispatch>,
    /// The event's data as received.
    pub raw: Option<discore::Bytes>,
}

impl Seen {
    pub fn name(&self) -> &str {
        self.event.name()
    }

    pub fn typed(&self) -> Option<&DispatchEvent> {
        self.event.typed()
    }
}

#[derive(Default)]
struct Log {
    events: Vec<Seen>,
    lifecycle: Vec<Lifecycle>,
}

/// A subscriber actor that records events and lifecycle changes.
pub struct Recorder {
    log: Arc<Mutex<Log>>,
    /// Work per event, to play a slow subscriber.
    delay: Option<Duration>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for Recorder {
    type Result = ();

    fn handle(&mut self, message: GatewayEvent, _: &mut Context<Self>) {
        if let Some(delay) = self.delay {
            // A slow handler, deliberately blocking its own arbiter.
            std::thread::sleep(delay);
        }
        let seen = Seen {
            shard: message.shard,
            sequence: message.sequence,
            event: Arc::clone(&message.event),
            raw: message.raw_data_shared(),
        };
        self.log.lock().expect("log").events.push(seen);
    }
}

impl Handler<ShardLifecycle> for Recorder {
    type Result = ();

    fn handle(&mut self, message: ShardLifecycle, _: &mut Context<Self>) {
        self.log.lock().expect("log").lifecycle.push(message.event);
    }
}

/// The test's view of a [`Recorder`].
#[derive(Clone)]
pub struct Recorded {
    log: Arc<Mutex<Log>>,
    pub addr: Addr<Recorder>,
}

impl Recorded {
    /// A recorder on the current arbiter.
    pub fn start() -> Self {
        let log = Arc::new(Mutex::new(Log::default()));
        let addr = Recorder {
            log: Arc::clone(&log),
            delay: None,
        }
        .start();
        Self { log, addr }
    }

    /// A slow recorder on its own arbiter (thread).
    pub fn start_slow(arbiter: &actix::ArbiterHandle, delay: Duration) -> Self {
        let log = Arc::new(Mutex::new(Log::default()));
        let shared = Arc::clone(&log);
        let addr = Recorder::start_in_arbiter(arbiter, move |_| Recorder {
            log: shared,
            delay: Some(delay),
        });
        Self { log, addr }
    }

    pub fn events(&self) -> Vec<Seen> {
        self.log.lock().expect("log").events.clone()
    }

    pub fn names(&self) -> Vec<String> {
        self.events().iter().map(|e| e.name().to_owned()).collect()
    }

    pub fn count(&self, name: &str) -> usize {
        self.log
            .lock()
            .expect("log")
            .events
            .iter()
            .filter(|e| e.name() == name)
            .count()
    }

    pub fn lifecycle(&self) -> Vec<Lifecycle> {
        self.log.lock().expect("log").lifecycle.clone()
    }

    /// Waits until `condition` holds on the recorded events and lifecycle.
    pub async fn wait(&self, what: &str, condition: impl Fn(&[Seen], &[Lifecycle]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            {
                let log = self.log.lock().expect("log");
                if condition(&log.events, &log.lifecycle) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn wait_for_event(&self, name: &str, count: usize) {
        self.wait(&format!("{count} {name}"), |events, _| {
            events.iter().filter(|e| e.name() == name).count() >= count
        })
        .await;
    }

    pub async fn wait_for_lifecycle(&self, wanted: Lifecycle) {
        self.wait(&format!("{wanted:?}"), |_, lifecycle| {
            lifecycle.contains(&wanted)
        })
        .await;
    }
}

/// A shard subscribed to `recorded`, for events and lifecycle.
pub fn shard(config: ShardConfig, recorded: &Recorded) -> Shard {
    Shard::new(token(), ShardId::new(0, 1), config)
        .subscribe(recorded.addr.clone().recipient(), EventFilter::all())
        .subscribe_lifecycle(recorded.addr.clone().recipient())
}

/// Starts a mock, a recorder and a shard on `compression` (without waiting
/// for READY).
pub async fn shard_on(compression: discore::Compression) -> (MockServer, Recorded) {
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    let recorded = Recorded::start();
    let _shard = shard(shard_config(&mock).compression(compression), &recorded)
        .start()
        .await
        .expect("starts");
    (mock, recorded)
}

/// A member says `m0`, `m1`, … in the first guild's first text channel.
pub fn post_messages(mock: &MockServer, count: usize) {
    let guild = mock.guild_ids()[0];
    let channel = mock.text_channel_ids(guild)[0];
    for i in 0..count {
        mock.post_message(channel, &format!("m{i}"))
            .expect("posted");
    }
}

/// Starts a mock, a recorder and a shard, and waits for READY.
pub async fn ready_shard() -> (MockServer, Recorded, Addr<Shard>) {
    let mock = MockServer::start(mock_config())
        .await
        .expect("emulator starts");
    let recorded = Recorded::start();
    let addr = shard(shard_config(&mock), &recorded)
        .start()
        .await
        .expect("shard starts");
    (mock, recorded, addr)
}

/// Sequence numbers must strictly increase within a session: no duplicate,
/// no reordering. A READY starts a new session.
pub fn assert_in_order_exactly_once(events: &[Seen]) {
    let mut last: Option<u64> = None;
    for event in events {
        if event.name() == "READY" {
            last = Some(event.sequence);
            continue;
        }
        if let Some(last) = last {
            assert!(
                event.sequence > last,
                "{} #{} after #{last}: duplicate or out of order",
                event.name(),
                event.sequence
            );
        }
        last = Some(event.sequence);
    }
}

/// Asserts the emulator saw no protocol violation.
pub fn assert_no_violations(mock: &MockServer) {
    let violations = mock.observed().violations;
    assert!(violations.is_empty(), "violations: {violations:#?}");
}
