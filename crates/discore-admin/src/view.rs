//! `/api/shards`: what the status page shows, as JSON, with events per
//! second computed between snapshots.

use crate::snapshot::{FleetSnapshot, ReshardSnapshot, ShardSnapshot, TileState};
use serde::Serialize;
use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Rates are computed over at least this much time, so two requests close
/// together do not measure noise.
const MIN_RATE_WINDOW: Duration = Duration::from_secs(1);

/// Events received per shard `(id, total)`.
type Counts = HashMap<(u32, u32), u64>;

/// Events per second per shard `(id, total)`, from the difference between
/// two snapshots.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    previous: Option<(Instant, Counts)>,
    current: HashMap<(u32, u32), f64>,
}

impl Rates {
    /// Takes a new snapshot into account and answers the current rates.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        snapshot: &FleetSnapshot,
    ) -> HashMap<(u32, u32), f64> {
        let counts: Counts = snapshot
            .shards
            .iter()
            .map(|s| ((s.id, s.total), s.events))
            .collect();
        match &self.previous {
            None => self.previous = Some((now, counts)),
            Some((at, before)) => {
                let elapsed = now.saturating_duration_since(*at);
                if elapsed >= MIN_RATE_WINDOW {
                    let seconds = elapsed.as_secs_f64();
                    self.current = counts
                        .iter()
                        .map(|(key, count)| {
                            let before = before.get(key).copied().unwrap_or(0);
                            // A restarted shard counts again from zero.
                            let delta = if *count >= before {
                                count - before
                            } else {
                                *count
                            };
                            (*key, delta as f64 / seconds)
                        })
                        .collect();
                    self.previous = Some((now, counts));
                }
            }
        }
        self.current.clone()
    }
}

/// The JSON of `/api/shards`.
#[derive(Debug, Serialize)]
pub(crate) struct ShardsView<'a> {
    title: &'a str,
    /// Milliseconds since the Unix epoch.
    generated_at: u64,
    refresh_ms: u64,
    fleet: FleetView,
    shards: Vec<ShardView<'a>>,
}

#[derive(Debug, Serialize)]
struct FleetView {
    total: u32,
    shards: usize,
    ready: bool,
    states: BTreeMap<&'static str, usize>,
    guilds: u64,
    guilds_loaded: u64,
    events: u64,
    events_per_second: f64,
    latency_ms_avg: Option<f64>,
    reconnects: u64,
    resumes: u64,
    identifies: u64,
    restarts: u64,
    commands_queued: u64,
    resharding: Option<ReshardSnapshot>,
    identify: Option<IdentifyView>,
}

#[derive(Debug, Serialize)]
struct IdentifyView {
    granted: u64,
    waiting: u64,
    budget_remaining: Option<u32>,
    budget_total: Option<u32>,
}

#[derive(Debug, Serialize)]
struct ShardView<'a> {
    id: u32,
    total: u32,
    state: TileState,
    failure: Option<&'a str>,
    latency_ms: Option<f64>,
    latency_avg_ms: Option<f64>,
    guilds: u64,
    guilds_loaded: u64,
    events: u64,
    events_per_second: f64,
    last_close_code: Option<u16>,
    reconnects: u64,
    resumes: u64,
    restarts: u64,
    commands_queued: u64,
}

fn millis(duration: Option<Duration>) -> Option<f64> {
    duration.map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0)
}

fn round(rate: f64) -> f64 {
    (rate * 10.0).round() / 10.0
}

impl<'a> ShardsView<'a> {
    pub(crate) fn new(
        title: &'a str,
        refresh: Duration,
        snapshot: &'a FleetSnapshot,
        rates: &HashMap<(u32, u32), f64>,
        taken: SystemTime,
    ) -> Self {
        let shard = |s: &'a ShardSnapshot| ShardView {
            id: s.id,
            total: s.total,
            state: s.state,
            failure: s.failure.as_deref(),
            latency_ms: millis(s.latency.as_ref().and_then(|l| l.last)),
            latency_avg_ms: millis(s.latency.as_ref().and_then(|l| l.average)),
            guilds: s.guilds,
            guilds_loaded: s.guilds_loaded,
            events: s.events,
            events_per_second: round(rates.get(&(s.id, s.total)).copied().unwrap_or(0.0)),
            last_close_code: s.last_close_code,
            reconnects: s.reconnects,
            resumes: s.resumes,
            restarts: s.restarts,
            commands_queued: s.commands_queued,
        };
        let shards: Vec<ShardView<'a>> = snapshot.shards.iter().map(shard).collect();
        let mut states = BTreeMap::new();
        for s in &shards {
            *states.entry(s.state.as_str()).or_insert(0) += 1;
        }
        let averages: Vec<f64> = shards.iter().filter_map(|s| s.latency_avg_ms).collect();
        let sum = |f: fn(&ShardSnapshot) -> u64| snapshot.shards.iter().map(f).sum::<u64>();
        let fleet = FleetView {
            total: snapshot.total,
            shards: shards.len(),
            ready: snapshot.ready,
            states,
            guilds: sum(|s| s.guilds),
            guilds_loaded: sum(|s| s.guilds_loaded),
            events: sum(|s| s.events),
            events_per_second: round(shards.iter().map(|s| s.events_per_second).sum()),
            latency_ms_avg: (!averages.is_empty()).then(|| {
                (averages.iter().sum::<f64>() / averages.len() as f64 * 10.0).round() / 10.0
            }),
            reconnects: sum(|s| s.reconnects),
            resumes: sum(|s| s.resumes),
            identifies: sum(|s| s.identifies),
            restarts: sum(|s| s.restarts),
            commands_queued: sum(|s| s.commands_queued),
            resharding: snapshot.resharding,
            identify: snapshot.identify.as_ref().map(|i| IdentifyView {
                granted: i.granted,
                waiting: i.waiting,
                budget_remaining: i.budget_remaining,
                budget_total: i.budget_total,
            }),
        };
        Self {
            title,
            generated_at: taken
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            refresh_ms: u64::try_from(refresh.as_millis()).unwrap_or(u64::MAX),
            fleet,
            shards,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rates;
    use crate::snapshot::{FleetSnapshot, ShardSnapshot, TileState};
    use std::time::{Duration, Instant};

    fn fleet(events: &[u64]) -> FleetSnapshot {
        FleetSnapshot {
            total: events.len() as u32,
            shards: events
                .iter()
                .enumerate()
                .map(|(i, e)| ShardSnapshot {
                    events: *e,
                    ..ShardSnapshot::bare(i as u32, events.len() as u32, TileState::Active)
                })
                .collect(),
            ..FleetSnapshot::default()
        }
    }

    #[test]
    fn rates_are_measured_over_at_least_a_second() {
        let mut rates = Rates::default();
        let start = Instant::now();
        assert!(rates.update(start, &fleet(&[0, 100])).is_empty());
        // Too soon: no new measurement.
        assert!(
            rates
                .update(start + Duration::from_millis(100), &fleet(&[5, 105]))
                .is_empty()
        );
        let now = rates.update(start + Duration::from_secs(2), &fleet(&[20, 300]));
        assert_eq!(now.get(&(0, 2)), Some(&10.0));
        assert_eq!(now.get(&(1, 2)), Some(&100.0));
        // A restarted shard counts again from zero.
        let now = rates.update(start + Duration::from_secs(3), &fleet(&[4, 300]));
        assert_eq!(now.get(&(0, 2)), Some(&4.0));
        assert_eq!(now.get(&(1, 2)), Some(&0.0));
    }
}
