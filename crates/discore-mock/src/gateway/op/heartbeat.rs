//! Op 1 Heartbeat: recorded, checked against what the session was sent, and
//! acknowledged with op 11 (unless a fault turned the ACKs off).

use crate::gateway::{
    connection::{Connection, Exit},
    inbound,
};
use crate::observe::{HeartbeatRecord, ViolationKind};
use serde_json::Value;
use std::time::Instant;

impl Connection {
    pub(in crate::gateway) fn on_heartbeat(&mut self, data: &Value) -> Option<Exit> {
        let sequence = match inbound::heartbeat(data) {
            Ok(sequence) => sequence,
            Err(invalid) => return self.invalid("heartbeat", &invalid.0),
        };
        let now = Instant::now();
        self.heartbeat_deadline = now + self.shared.config.heartbeat_timeout();
        self.heartbeat_overdue = false;
        let at = self.shared.elapsed();
        crate::observe::push_bounded(
            &mut self.shared.lock().observed.heartbeats,
            HeartbeatRecord {
                connection: self.id,
                sequence,
                acked: self.acks,
                at,
            },
        );
        let written = self.session_written.as_ref().map(|w| w.last());
        if let (Some(s), Some(last)) = (sequence, written)
            && s > last
        {
            self.violation(
                ViolationKind::HeartbeatSequenceAhead,
                format!("heartbeat {s} but the last dispatch written was {last}"),
            );
        }
        if self.acks {
            self.send_raw(br#"{"t":null,"s":null,"op":11,"d":null}"#);
        }
        None
    }
}
