//! Op 1 Heartbeat: recorded, checked against the session's sequence and
//! acknowledged with op 11 (unless a fault turned the ACKs off).

use crate::gateway::connection::{Connection, Exit};
use crate::observe::{HeartbeatRecord, ViolationKind};
use serde_json::Value;
use std::time::Instant;

impl Connection {
    pub(in crate::gateway) fn on_heartbeat(&mut self, data: &Value) -> Option<Exit> {
        let sequence = match data {
            Value::Null => None,
            Value::Number(n) => match n.as_u64() {
                Some(n) => Some(n),
                None => return self.invalid("heartbeat"),
            },
            _ => return self.invalid("heartbeat"),
        };
        let now = Instant::now();
        self.heartbeat_deadline = now + self.shared.config.heartbeat_timeout();
        self.heartbeat_overdue = false;
        let at = self.shared.elapsed();
        let ahead = {
            let mut state = self.shared.lock();
            crate::observe::push_bounded(
                &mut state.observed.heartbeats,
                HeartbeatRecord {
                    connection: self.id,
                    sequence,
                    acked: self.acks,
                    at,
                },
            );
            let last = state.session_of(self.id).map(|s| s.seq);
            match (sequence, last) {
                (Some(s), Some(last)) if s > last => Some((s, last)),
                _ => None,
            }
        };
        if let Some((s, last)) = ahead {
            self.violation(
                ViolationKind::HeartbeatSequenceAhead,
                format!("heartbeat {s} but the last dispatch sent was {last}"),
            );
        }
        if self.acks {
            self.send_raw(br#"{"t":null,"s":null,"op":11,"d":null}"#);
        }
        None
    }
}
