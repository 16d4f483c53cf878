//! The traffic generator: a steady mix of realistic events for demos.
//! (The flood mode for benchmarks lives in the connection task, where it
//! can follow the socket's backpressure.)

use crate::{event::Event, payloads, state::Shared, world::World};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// Relative weights of the generated event kinds.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrafficMix {
    /// MESSAGE_CREATE (about 1 KB each).
    pub messages: u32,
    /// TYPING_START.
    pub typing: u32,
    /// MESSAGE_REACTION_ADD.
    pub reactions: u32,
    /// PRESENCE_UPDATE.
    pub presences: u32,
    /// GUILD_MEMBER_UPDATE.
    pub member_updates: u32,
}

impl Default for TrafficMix {
    /// Mostly messages: 60 / 15 / 10 / 10 / 5.
    fn default() -> Self {
        Self {
            messages: 60,
            typing: 15,
            reactions: 10,
            presences: 10,
            member_updates: 5,
        }
    }
}

/// Configuration of [`MockServer::start_traffic`](crate::MockServer::start_traffic).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrafficConfig {
    /// Events per second generated for each shard `[id, total]` that has a
    /// connected session. Events are routed like any other: filtered by
    /// intents and queued for every session owning the guild.
    pub rate_per_shard: f64,
    /// The mix of event kinds.
    pub mix: TrafficMix,
    /// How often the generator runs, in milliseconds (events are spread over
    /// ticks). Default 10.
    pub tick_millis: u64,
}

impl Default for TrafficConfig {
    /// 10 events per second per shard, the default mix, 10 ms ticks.
    fn default() -> Self {
        Self {
            rate_per_shard: 10.0,
            mix: TrafficMix::default(),
            tick_millis: 10,
        }
    }
}

impl TrafficConfig {
    /// `rate` events per second per shard with the default mix.
    pub fn per_shard(rate: f64) -> Self {
        Self {
            rate_per_shard: rate,
            ..Self::default()
        }
    }
}

/// Stops a running generator when dropped.
#[derive(Debug)]
struct TrafficStop(Arc<AtomicBool>);

impl Drop for TrafficStop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The server's traffic generator: at most one runs; starting another stops
/// the one before. Owned by the server (its handle and its control
/// endpoints), which the state knows nothing of.
#[derive(Debug, Default)]
pub(crate) struct Traffic(Mutex<Option<TrafficStop>>);

impl Traffic {
    /// Starts the generator on the current actix arbiter, replacing a
    /// running one.
    pub(crate) fn start(&self, shared: &Arc<Shared>, config: TrafficConfig) {
        let stop = start(Arc::clone(shared), config);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(stop);
    }

    /// Stops the generator, if one runs.
    pub(crate) fn stop(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

fn event(world: &World, guild: usize, mix: &TrafficMix, counter: u64, roll: u64) -> Event {
    let members = world.members_per_guild().max(1);
    let member = (roll >> 8) as u32 % members;
    let channel = (roll >> 20) as u32 % world.channels_per_guild().max(1);
    let weights = [
        mix.messages,
        mix.typing,
        mix.reactions,
        mix.presences,
        mix.member_updates,
    ];
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum::<u64>().max(1);
    let mut pick = roll % total;
    let mut kind = 0;
    for (i, w) in weights.iter().enumerate() {
        if pick < u64::from(*w) {
            kind = i;
            break;
        }
        pick -= u64::from(*w);
    }
    let (name, data) = match kind {
        1 => (
            "TYPING_START",
            payloads::typing_start(world, guild, member, channel),
        ),
        2 => (
            "MESSAGE_REACTION_ADD",
            payloads::reaction_add(world, guild, member, channel, counter),
        ),
        3 => (
            "PRESENCE_UPDATE",
            payloads::presence_update(world, guild, member, counter),
        ),
        4 => (
            "GUILD_MEMBER_UPDATE",
            payloads::member_update(world, guild, member, counter),
        ),
        _ => (
            "MESSAGE_CREATE",
            payloads::member_message(world, guild, counter),
        ),
    };
    Event::from_value(name, &data, world.bot_id)
}

/// Starts the generator on the current actix arbiter.
fn start(shared: Arc<Shared>, config: TrafficConfig) -> TrafficStop {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let tick = Duration::from_millis(config.tick_millis.max(1));
    actix_rt::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(shared.config.seed ^ 0x7EAF_F1C0);
        let mut credit: HashMap<[u32; 2], f64> = HashMap::new();
        let mut guilds: HashMap<[u32; 2], (usize, Vec<usize>)> = HashMap::new();
        let mut last = Instant::now();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stopped.load(Ordering::Acquire) {
            interval.tick().await;
            let now = Instant::now();
            let dt = now.saturating_duration_since(last).as_secs_f64().min(1.0);
            last = now;
            let mut state = shared.lock();
            if state.stopping {
                break;
            }
            let world = Arc::clone(&state.world);
            let mut shards: Vec<[u32; 2]> = state
                .sessions
                .values()
                .filter(|s| s.connection.is_some())
                .map(|s| s.shard)
                .collect();
            shards.sort_unstable();
            shards.dedup();
            credit.retain(|shard, _| shards.contains(shard));
            for shard in shards {
                let owned = guilds.entry(shard).or_default();
                if owned.0 != world.guilds.len() {
                    *owned = (world.guilds.len(), world.guilds_of_shard(shard));
                }
                if owned.1.is_empty() {
                    continue;
                }
                let budget = credit.entry(shard).or_insert(0.0);
                *budget += config.rate_per_shard * dt;
                // Bounded per tick so a huge rate cannot stall the arbiter.
                let mut emitted = 0;
                while *budget >= 1.0 && emitted < 10_000 {
                    *budget -= 1.0;
                    emitted += 1;
                    let guild = owned.1[rng.usize(..owned.1.len())];
                    state.message_counter += 1;
                    let counter = state.message_counter;
                    let event = event(&world, guild, &config.mix, counter, rng.u64(..));
                    state.route(&event, None, now);
                }
            }
        }
    });
    TrafficStop(stop)
}
