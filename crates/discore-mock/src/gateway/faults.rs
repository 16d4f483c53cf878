//! Faults and the other control messages the handle sends a connection.

use super::connection::{Connection, Exit};
use crate::{control::Fault, state::Control};
use std::time::{Duration, Instant};

impl Connection {
    pub(super) fn on_control(&mut self, control: Control) -> Option<Exit> {
        match control {
            Control::Shutdown => {
                self.shutting_down = true;
                Some(Exit::Close(1001, "server stopping".to_owned()))
            }
            Control::Flood { count, done } => {
                self.abort_flood();
                self.start_flood(count, done);
                None
            }
            Control::Fault(fault) => self.on_fault(fault),
            Control::ReleaseResume => self.release_resume(),
        }
    }

    pub(super) fn on_fault(&mut self, fault: Fault) -> Option<Exit> {
        let now = Instant::now();
        match fault {
            Fault::Reconnect => {
                self.send_raw(br#"{"t":null,"s":null,"op":7,"d":null}"#);
                if self.reconnect_deadline.is_none() {
                    self.reconnect_deadline =
                        self.shared.config.reconnect_close_after.map(|d| now + d);
                }
                None
            }
            Fault::InvalidSession { resumable } => {
                if !resumable && let Some(session_id) = self.session_id.take() {
                    self.shared.lock().destroy_session(&session_id);
                    self.shard = None;
                }
                self.send_invalid_session(resumable)
            }
            Fault::Close { code, reason } => Some(Exit::Close(
                code,
                reason.unwrap_or_else(|| "closed by discore-mock".to_owned()),
            )),
            Fault::DropTcp => Some(Exit::Drop),
            Fault::HeartbeatAcks { enabled } => {
                self.acks = enabled;
                None
            }
            Fault::RequestHeartbeat => {
                self.send_raw(br#"{"t":null,"s":null,"op":1,"d":null}"#);
                None
            }
            Fault::Stall { millis } => {
                self.seal(None);
                self.stall_until = Some(now + Duration::from_millis(millis));
                None
            }
            Fault::Delay { millis, for_millis } => {
                self.seal(None);
                self.delay = Some((
                    Duration::from_millis(millis),
                    now + Duration::from_millis(for_millis),
                ));
                None
            }
            Fault::CorruptNextFrame => {
                self.encoder.garbage(&mut self.pending);
                None
            }
            Fault::MalformedJson => {
                self.send_raw(br#"{"t":"MESSAGE_CREATE","s":"#);
                None
            }
            Fault::MalformedDispatchData => {
                let next = self.shared.lock().session_of(self.id).map_or(0, |s| s.seq) + 1;
                let frame = format!(
                    r#"{{"t":"MESSAGE_CREATE","s":{next},"op":0,"d":{{"content":"broken",}}}}"#
                );
                self.send_raw(frame.as_bytes());
                None
            }
            Fault::Payload { bytes } => {
                self.send_raw(&bytes);
                None
            }
        }
    }
}
