//! discore's metrics as a `prometheus-client` [`Collector`]: [`FleetMetrics`]
//! reads the latest [`FleetSnapshot`] on every scrape, so a bot registers it
//! in its own [`Registry`] beside its own metrics, and the admin server's
//! `/metrics` encodes it with the same library ([`encode`], OpenMetrics
//! text).
//!
//! Names carry the `discore_` prefix, counters end in `_total` (the encoder
//! appends it to the family name), durations are seconds and sizes bytes.
//! `docs/operations.md` lists every family.

use crate::{
    error::SourceError,
    identify::IDENTIFY_WAIT_BUCKETS,
    snapshot::{FleetSnapshot, ShardSnapshot, TileState},
    source::StatusSource,
};
use discore_gateway::Latency;
use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeLabelValue,
        LabelValueEncoder, MetricEncoder, NoLabelSet,
    },
    metrics::MetricType,
    registry::Registry,
};
use std::{
    fmt::Write as _,
    sync::{Arc, RwLock},
};

/// The `Content-Type` of the OpenMetrics text format that [`encode`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// discore's metric families over the latest [`FleetSnapshot`]: a
/// `prometheus-client` [`Collector`] that a bot registers in its own
/// [`Registry`].
///
/// The collector encodes whatever snapshot it was last given
/// ([`FleetMetrics::update`], or [`FleetMetrics::refresh`] from a
/// [`StatusSource`]); nothing before the first. Clones share the snapshot,
/// so the clone registered in the registry sees every later update.
///
/// ```
/// use discore_admin::{FleetMetrics, FleetSnapshot, prometheus_client};
/// use prometheus_client::{encoding::text::encode, registry::Registry};
///
/// let metrics = FleetMetrics::new();
/// let mut registry = Registry::default();
/// registry.register_collector(Box::new(metrics.clone()));
/// metrics.update(FleetSnapshot { total: 4, ..FleetSnapshot::default() });
/// let mut text = String::new();
/// encode(&mut text, &registry)?;
/// assert!(text.contains("discore_fleet_shard_count 4\n"));
/// # Ok::<(), std::fmt::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct FleetMetrics {
    latest: Arc<RwLock<Option<Arc<FleetSnapshot>>>>,
}

impl FleetMetrics {
    /// A collector with no snapshot yet: it encodes nothing until
    /// [`FleetMetrics::update`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A collector over this snapshot.
    pub fn with_snapshot(snapshot: impl Into<Arc<FleetSnapshot>>) -> Self {
        let metrics = Self::new();
        metrics.update(snapshot);
        metrics
    }

    /// Makes `snapshot` the one the next scrape encodes.
    pub fn update(&self, snapshot: impl Into<Arc<FleetSnapshot>>) {
        let snapshot = snapshot.into();
        match self.latest.write() {
            Ok(mut latest) => *latest = Some(snapshot),
            // A panic while holding the lock cannot leave a half-written
            // `Option<Arc<_>>`: replace it all the same.
            Err(poisoned) => *poisoned.into_inner() = Some(snapshot),
        }
    }

    /// Asks `source` for a fresh snapshot and makes it the current one
    /// (call it before encoding the registry, in the bot's scrape handler).
    ///
    /// # Errors
    ///
    /// The source's error; the previous snapshot stays.
    pub async fn refresh(&self, source: &dyn StatusSource) -> Result<(), SourceError> {
        let snapshot = source.snapshot().await?;
        self.update(snapshot);
        Ok(())
    }

    /// The snapshot the next scrape encodes.
    pub fn current(&self) -> Option<Arc<FleetSnapshot>> {
        match self.latest.read() {
            Ok(latest) => latest.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl Collector for FleetMetrics {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self.current() {
            Some(snapshot) => encode_snapshot(&snapshot, encoder),
            None => Ok(()),
        }
    }
}

/// `snapshot` in the OpenMetrics text format, `# EOF` included: what the
/// admin server's `/metrics` answers.
///
/// # Errors
///
/// Only if the encoder reports one (writing to a `String` does not fail).
pub fn encode(snapshot: impl Into<Arc<FleetSnapshot>>) -> Result<String, std::fmt::Error> {
    let snapshot = snapshot.into();
    let mut out = String::with_capacity(4096 + snapshot.shards.len() * 4096);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(FleetMetrics::with_snapshot(snapshot)));
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// A label value from outside discore (an event name the gateway sent),
/// escaped as the text format requires: `prometheus-client` writes label
/// values as they are.
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// One sample of a family, with or without labels.
fn counter(
    metric: &mut MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    value: impl EncodeCounterValue,
) -> Result<(), std::fmt::Error> {
    metric
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(
    metric: &mut MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    value: impl EncodeGaugeValue,
) -> Result<(), std::fmt::Error> {
    metric.encode_family(labels)?.encode_gauge(&value)
}

/// Per-bucket (not cumulative) counts with their upper bounds, the last
/// one unbounded, as `prometheus-client` takes them (`f64::MAX` is `+Inf`).
fn buckets(bounds: impl Iterator<Item = f64>, counts: &[u64]) -> Vec<(f64, u64)> {
    let mut bounds = bounds;
    counts
        .iter()
        .map(|count| (bounds.next().unwrap_or(f64::MAX), *count))
        .collect()
}

/// A family with one gauge or counter per shard.
fn per_shard<V>(
    encoder: &mut DescriptorEncoder<'_>,
    shards: &[(String, &ShardSnapshot)],
    (name, kind, help): (&str, MetricType, &str),
    value: impl Fn(&ShardSnapshot) -> Option<V>,
) -> Result<(), std::fmt::Error>
where
    V: EncodeGaugeValue + EncodeCounterValue,
{
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (id, shard) in shards {
        if let Some(v) = value(shard) {
            let labels = [("shard", id.as_str())];
            match kind {
                MetricType::Counter => counter(&mut metric, &labels, v)?,
                _ => gauge(&mut metric, &labels, v)?,
            }
        }
    }
    Ok(())
}

/// A family with a single gauge sample.
fn fleet_gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> Result<(), std::fmt::Error> {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// Every family of `snapshot`.
fn encode_snapshot(
    snapshot: &FleetSnapshot,
    mut encoder: DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let e = &mut encoder;
    let shards: Vec<(String, &ShardSnapshot)> = snapshot
        .shards
        .iter()
        .map(|s| (s.id.to_string(), s))
        .collect();

    fleet_gauge(
        e,
        "discore_fleet_shard_count",
        "Shard total of the fleet, across every process.",
        snapshot.total,
    )?;
    fleet_gauge(
        e,
        "discore_fleet_shards",
        "Shards this process runs.",
        snapshot.shards.len() as u64,
    )?;
    fleet_gauge(
        e,
        "discore_fleet_ready",
        "1 when every shard here is ready with all its guilds.",
        u32::from(snapshot.ready),
    )?;
    fleet_gauge(
        e,
        "discore_fleet_resharding",
        "1 while a re-sharding is under way.",
        u32::from(snapshot.resharding.is_some()),
    )?;

    {
        let mut metric = e.encode_descriptor(
            "discore_shard_state",
            "1 for the state the shard is in, 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for (id, shard) in &shards {
            for state in TileState::ALL {
                gauge(
                    &mut metric,
                    &[("shard", id.as_str()), ("state", state.as_str())],
                    u32::from(shard.state == state),
                )?;
            }
        }
    }
    use MetricType::{Counter, Gauge};
    per_shard(
        e,
        &shards,
        (
            "discore_shard_guilds",
            Gauge,
            "Guilds the shard's READY listed.",
        ),
        |s| Some(s.guilds),
    )?;
    per_shard(
        e,
        &shards,
        (
            "discore_shard_guilds_loaded",
            Gauge,
            "Guilds whose GUILD_CREATE the shard received.",
        ),
        |s| Some(s.guilds_loaded),
    )?;

    {
        let mut metric = e.encode_descriptor(
            "discore_heartbeat_latency_seconds",
            "Heartbeat round trips (heartbeat to ACK).",
            None,
            MetricType::Histogram,
        )?;
        for (id, shard) in &shards {
            // A histogram without its sum is left out: the encoder always
            // writes `_sum`, and inventing one would mislead averages.
            let Some(latency) = &shard.latency else {
                continue;
            };
            let Some(sum) = latency.sum else {
                continue;
            };
            let bounds = Latency::BUCKETS_MS.iter().map(|ms| *ms as f64 / 1000.0);
            let buckets = buckets(bounds, &latency.buckets);
            let count = latency.buckets.iter().sum();
            metric
                .encode_family(&[("shard", id.as_str())])?
                .encode_histogram::<NoLabelSet>(sum.as_secs_f64(), count, &buckets, None)?;
        }
    }
    per_shard(
        e,
        &shards,
        (
            "discore_heartbeat_last_latency_seconds",
            Gauge,
            "The most recent heartbeat round trip.",
        ),
        |s| s.latency.as_ref()?.last.map(|d| d.as_secs_f64()),
    )?;

    {
        let mut metric = e.encode_descriptor(
            "discore_events_received",
            "Dispatches received, by event name.",
            None,
            MetricType::Counter,
        )?;
        for (id, shard) in &shards {
            for (event, count) in &shard.events_by_type {
                counter(
                    &mut metric,
                    &(
                        [("shard", id.as_str())],
                        [("event", Escaped(event.as_str()))],
                    ),
                    *count,
                )?;
            }
        }
    }
    {
        let mut metric = e.encode_descriptor(
            "discore_reconnects",
            "Reconnects after a lost connection, by kind: resume or new_session.",
            None,
            MetricType::Counter,
        )?;
        for (id, shard) in &shards {
            counter(
                &mut metric,
                &[("shard", id.as_str()), ("kind", "resume")],
                shard.reconnects_resumed,
            )?;
            counter(
                &mut metric,
                &[("shard", id.as_str()), ("kind", "new_session")],
                shard.reconnects_new_session,
            )?;
        }
    }
    per_shard(
        e,
        &shards,
        (
            "discore_resumes",
            Counter,
            "Successful resumes, after reconnects and of handed-off sessions.",
        ),
        |s| Some(s.resumes),
    )?;
    per_shard(
        e,
        &shards,
        (
            "discore_identifies",
            Counter,
            "Identifies sent (each spends one of the daily budget).",
        ),
        |s| Some(s.identifies),
    )?;
    per_shard(
        e,
        &shards,
        (
            "discore_shard_restarts",
            Counter,
            "Restarts of the shard's actor after crashes.",
        ),
        |s| Some(s.restarts),
    )?;
    {
        let mut metric = e.encode_descriptor(
            "discore_close_codes",
            "Close codes the gateway sent, by code.",
            None,
            MetricType::Counter,
        )?;
        for (id, shard) in &shards {
            for (code, count) in &shard.close_codes {
                counter(
                    &mut metric,
                    &[("shard", id.as_str()), ("code", code.to_string().as_str())],
                    *count,
                )?;
            }
        }
    }
    per_shard(
        e,
        &shards,
        (
            "discore_last_close_code",
            Gauge,
            "The last close code the gateway sent (absent before the first).",
        ),
        |s| s.last_close_code.map(u32::from),
    )?;
    per_shard(
        e,
        &shards,
        (
            "discore_commands_queued",
            Gauge,
            "Commands waiting to be sent.",
        ),
        |s| Some(s.commands_queued),
    )?;
    per_shard(
        e,
        &shards,
        (
            "discore_rate_limit_waits",
            Counter,
            "Times a command had to wait for the gateway rate limiter.",
        ),
        |s| Some(s.rate_limit_waits),
    )?;
    per_shard(
        e,
        &shards,
        (
            "discore_events_outstanding",
            Gauge,
            "Delivered events subscribers still hold (delivery credits out).",
        ),
        |s| Some(s.events_outstanding),
    )?;
    per_shard(
        e,
        &shards,
        (
            "discore_inbound_wire_bytes",
            Counter,
            "Bytes read from the socket, compressed when compression is on.",
        ),
        |s| Some(s.inbound_wire_bytes),
    )?;
    per_shard(
        e,
        &shards,
        (
            "discore_inbound_inflated_bytes",
            Counter,
            "Payload bytes after decompression.",
        ),
        |s| Some(s.inbound_inflated_bytes),
    )?;

    if let Some(identify) = &snapshot.identify {
        e.encode_descriptor(
            "discore_identify_slots_granted",
            "Identify slots the identify queue granted.",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&identify.granted, None)?;
        fleet_gauge(
            e,
            "discore_identify_queue_waiting",
            "Shards waiting for an identify slot.",
            identify.waiting,
        )?;
        let buckets = buckets(IDENTIFY_WAIT_BUCKETS.into_iter(), &identify.wait_buckets);
        e.encode_descriptor(
            "discore_identify_queue_wait_seconds",
            "Time shards waited for an identify slot.",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(
            identify.wait_sum.as_secs_f64(),
            identify.wait_buckets.iter().sum(),
            &buckets,
            None,
        )?;
        if let Some(remaining) = identify.budget_remaining {
            fleet_gauge(
                e,
                "discore_identify_budget_remaining",
                "Identifies left in the daily session start budget.",
                remaining,
            )?;
        }
        if let Some(total) = identify.budget_total {
            fleet_gauge(
                e,
                "discore_identify_budget_limit",
                "The daily session start budget after a reset.",
                total,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::encode;
    use crate::snapshot::{FleetSnapshot, LatencySnapshot, ShardSnapshot, TileState};
    use std::time::Duration;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let mut shard = ShardSnapshot::bare(3, 4, TileState::Active);
        shard.latency = Some(LatencySnapshot {
            last: Some(Duration::from_millis(20)),
            average: Some(Duration::from_millis(20)),
            samples: 3,
            buckets: vec![1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0],
            sum: Some(Duration::from_millis(45)),
        });
        shard.events_by_type.insert("WEIRD\"\\\nNAME".into(), 2);
        let text = encode(FleetSnapshot {
            total: 4,
            shards: vec![shard],
            ..FleetSnapshot::default()
        })
        .expect("encodes");
        assert!(
            text.contains("discore_heartbeat_latency_seconds_bucket{le=\"0.005\",shard=\"3\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("discore_heartbeat_latency_seconds_bucket{le=\"0.025\",shard=\"3\"} 3\n")
        );
        assert!(
            text.contains("discore_heartbeat_latency_seconds_bucket{le=\"+Inf\",shard=\"3\"} 3\n")
        );
        assert!(text.contains("discore_heartbeat_latency_seconds_count{shard=\"3\"} 3\n"));
        assert!(text.contains("discore_heartbeat_latency_seconds_sum{shard=\"3\"} 0.045\n"));
        assert!(
            text.contains("event=\"WEIRD\\\"\\\\\\nNAME\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE discore_events_received counter\n"));
        assert!(text.contains("discore_shard_state{shard=\"3\",state=\"active\"} 1\n"));
        assert!(text.contains("discore_shard_state{shard=\"3\",state=\"failed\"} 0\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_latency_without_its_sum_is_left_out() {
        let mut shard = ShardSnapshot::bare(0, 1, TileState::Active);
        shard.latency = Some(LatencySnapshot {
            last: Some(Duration::from_millis(20)),
            buckets: vec![0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            sum: None,
            ..LatencySnapshot::default()
        });
        let text = encode(FleetSnapshot {
            total: 1,
            shards: vec![shard],
            ..FleetSnapshot::default()
        })
        .expect("encodes");
        assert!(
            !text.contains("discore_heartbeat_latency_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("discore_heartbeat_last_latency_seconds{shard=\"0\"} 0.02\n"));
    }
}
