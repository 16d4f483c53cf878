//! `/metrics`: a [`FleetSnapshot`] in Prometheus' text exposition format
//! (version 0.0.4). Names carry the `discore_` prefix, counters end in
//! `_total`, durations are seconds and sizes bytes. `docs/operations.md`
//! lists every family.

use crate::{
    identify::IDENTIFY_WAIT_BUCKETS,
    snapshot::{FleetSnapshot, ShardSnapshot, TileState},
};
use discore_gateway::Latency;
use std::fmt::{Display, Write as _};

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes families one after the other, each with its HELP and TYPE.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                self.0.push_str(label);
                self.0.push_str("=\"");
                escape_into(&mut self.0, value);
                self.0.push('"');
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// One family with a sample per shard.
    fn per_shard<V: Display>(
        &mut self,
        shards: &[(String, &ShardSnapshot)],
        name: &str,
        kind: &str,
        help: &str,
        value: impl Fn(&ShardSnapshot) -> Option<V>,
    ) {
        self.family(name, kind, help);
        for (id, shard) in shards {
            if let Some(v) = value(shard) {
                self.sample(name, &[("shard", id)], v);
            }
        }
    }

    /// A histogram's bucket, sum and count samples from per-bucket counts.
    fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[String],
        counts: &[u64],
        sum: Option<f64>,
    ) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, count) in counts.iter().enumerate() {
            cumulative += count;
            let le = bounds.get(i).map_or("+Inf", String::as_str);
            let mut with_le = labels.to_vec();
            with_le.push(("le", le));
            self.sample(&bucket, &with_le, cumulative);
        }
        if let Some(sum) = sum {
            self.sample(&format!("{name}_sum"), labels, sum);
        }
        self.sample(&format!("{name}_count"), labels, cumulative);
    }
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Renders the snapshot in the text format.
pub fn render(snapshot: &FleetSnapshot) -> String {
    let mut out = Out(String::with_capacity(4096 + snapshot.shards.len() * 4096));
    let shards: Vec<(String, &ShardSnapshot)> = snapshot
        .shards
        .iter()
        .map(|s| (s.id.to_string(), s))
        .collect();

    out.family(
        "discore_fleet_shard_count",
        "gauge",
        "Shard total of the fleet, across every process.",
    );
    out.sample("discore_fleet_shard_count", &[], snapshot.total);
    out.family("discore_fleet_shards", "gauge", "Shards this process runs.");
    out.sample("discore_fleet_shards", &[], snapshot.shards.len());
    out.family(
        "discore_fleet_ready",
        "gauge",
        "1 when every shard here is ready with all its guilds.",
    );
    out.sample("discore_fleet_ready", &[], u8::from(snapshot.ready));
    out.family(
        "discore_fleet_resharding",
        "gauge",
        "1 while a re-sharding is under way.",
    );
    out.sample(
        "discore_fleet_resharding",
        &[],
        u8::from(snapshot.resharding.is_some()),
    );

    out.family(
        "discore_shard_state",
        "gauge",
        "1 for the state the shard is in, 0 for the others.",
    );
    for (id, shard) in &shards {
        for state in TileState::ALL {
            out.sample(
                "discore_shard_state",
                &[("shard", id), ("state", state.as_str())],
                u8::from(shard.state == state),
            );
        }
    }
    out.per_shard(
        &shards,
        "discore_shard_guilds",
        "gauge",
        "Guilds the shard's READY listed.",
        |s| Some(s.guilds),
    );
    out.per_shard(
        &shards,
        "discore_shard_guilds_loaded",
        "gauge",
        "Guilds whose GUILD_CREATE the shard received.",
        |s| Some(s.guilds_loaded),
    );

    let bounds: Vec<String> = Latency::BUCKETS_MS
        .iter()
        .map(|ms| (*ms as f64 / 1000.0).to_string())
        .collect();
    out.family(
        "discore_heartbeat_latency_seconds",
        "histogram",
        "Heartbeat round trips (heartbeat to ACK).",
    );
    for (id, shard) in &shards {
        if let Some(latency) = &shard.latency {
            out.histogram(
                "discore_heartbeat_latency_seconds",
                &[("shard", id)],
                &bounds,
                &latency.buckets,
                latency.sum.map(|d| d.as_secs_f64()),
            );
        }
    }
    out.per_shard(
        &shards,
        "discore_heartbeat_last_latency_seconds",
        "gauge",
        "The most recent heartbeat round trip.",
        |s| s.latency.as_ref()?.last.map(|d| d.as_secs_f64()),
    );

    out.family(
        "discore_events_received_total",
        "counter",
        "Dispatches received, by event name.",
    );
    for (id, shard) in &shards {
        for (event, count) in &shard.events_by_type {
            out.sample(
                "discore_events_received_total",
                &[("shard", id), ("event", event)],
                count,
            );
        }
    }
    out.family(
        "discore_reconnects_total",
        "counter",
        "Reconnects after a lost connection, by kind: resume or new_session.",
    );
    for (id, shard) in &shards {
        out.sample(
            "discore_reconnects_total",
            &[("shard", id), ("kind", "resume")],
            shard.reconnects_resumed,
        );
        out.sample(
            "discore_reconnects_total",
            &[("shard", id), ("kind", "new_session")],
            shard.reconnects_new_session,
        );
    }
    out.per_shard(
        &shards,
        "discore_resumes_total",
        "counter",
        "Successful resumes, after reconnects and of handed-off sessions.",
        |s| Some(s.resumes),
    );
    out.per_shard(
        &shards,
        "discore_identifies_total",
        "counter",
        "Identifies sent (each spends one of the daily budget).",
        |s| Some(s.identifies),
    );
    out.per_shard(
        &shards,
        "discore_shard_restarts_total",
        "counter",
        "Restarts of the shard's actor after crashes.",
        |s| Some(s.restarts),
    );
    out.family(
        "discore_close_codes_total",
        "counter",
        "Close codes the gateway sent, by code.",
    );
    for (id, shard) in &shards {
        for (code, count) in &shard.close_codes {
            out.sample(
                "discore_close_codes_total",
                &[("shard", id), ("code", &code.to_string())],
                count,
            );
        }
    }
    out.per_shard(
        &shards,
        "discore_last_close_code",
        "gauge",
        "The last close code the gateway sent (absent before the first).",
        |s| s.last_close_code,
    );
    out.per_shard(
        &shards,
        "discore_commands_queued",
        "gauge",
        "Commands waiting to be sent.",
        |s| Some(s.commands_queued),
    );
    out.per_shard(
        &shards,
        "discore_rate_limit_waits_total",
        "counter",
        "Times a command had to wait for the gateway rate limiter.",
        |s| Some(s.rate_limit_waits),
    );
    out.per_shard(
        &shards,
        "discore_events_outstanding",
        "gauge",
        "Delivered events subscribers still hold (delivery credits out).",
        |s| Some(s.events_outstanding),
    );
    out.per_shard(
        &shards,
        "discore_inbound_wire_bytes_total",
        "counter",
        "Bytes read from the socket, compressed when compression is on.",
        |s| Some(s.inbound_wire_bytes),
    );
    out.per_shard(
        &shards,
        "discore_inbound_inflated_bytes_total",
        "counter",
        "Payload bytes after decompression.",
        |s| Some(s.inbound_inflated_bytes),
    );

    if let Some(identify) = &snapshot.identify {
        out.family(
            "discore_identify_slots_granted_total",
            "counter",
            "Identify slots the identify queue granted.",
        );
        out.sample(
            "discore_identify_slots_granted_total",
            &[],
            identify.granted,
        );
        out.family(
            "discore_identify_queue_waiting",
            "gauge",
            "Shards waiting for an identify slot.",
        );
        out.sample("discore_identify_queue_waiting", &[], identify.waiting);
        let bounds: Vec<String> = IDENTIFY_WAIT_BUCKETS.iter().map(f64::to_string).collect();
        out.family(
            "discore_identify_queue_wait_seconds",
            "histogram",
            "Time shards waited for an identify slot.",
        );
        out.histogram(
            "discore_identify_queue_wait_seconds",
            &[],
            &bounds,
            &identify.wait_buckets,
            Some(identify.wait_sum.as_secs_f64()),
        );
        if let Some(remaining) = identify.budget_remaining {
            out.family(
                "discore_identify_budget_remaining",
                "gauge",
                "Identifies left in the daily session start budget.",
            );
            out.sample("discore_identify_budget_remaining", &[], remaining);
        }
        if let Some(total) = identify.budget_total {
            out.family(
                "discore_identify_budget_limit",
                "gauge",
                "The daily session start budget after a reset.",
            );
            out.sample("discore_identify_budget_limit", &[], total);
        }
    }
    out.0
}

#[cfg(test)]
mod tests {
    use super::render;
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
            sum: None,
        });
        shard.events_by_type.insert("WEIRD\"\\\nNAME".into(), 2);
        let text = render(&FleetSnapshot {
            total: 4,
            shards: vec![shard],
            ..FleetSnapshot::default()
        });
        assert!(
            text.contains("discore_heartbeat_latency_seconds_bucket{shard=\"3\",le=\"0.005\"} 1\n")
        );
        assert!(
            text.contains("discore_heartbeat_latency_seconds_bucket{shard=\"3\",le=\"0.025\"} 3\n")
        );
        assert!(
            text.contains("discore_heartbeat_latency_seconds_bucket{shard=\"3\",le=\"+Inf\"} 3\n")
        );
        assert!(text.contains("discore_heartbeat_latency_seconds_count{shard=\"3\"} 3\n"));
        assert!(
            text.contains("event=\"WEIRD\\\"\\\\\\nNAME\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("discore_shard_state{shard=\"3\",state=\"active\"} 1\n"));
        assert!(text.contains("discore_shard_state{shard=\"3\",state=\"failed\"} 0\n"));
    }
}
