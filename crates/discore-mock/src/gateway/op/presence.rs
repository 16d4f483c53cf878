//! Op 3 Presence Update: read, and counted against the presence limit (an
//! update over it is recorded as a violation and dropped).

use crate::gateway::{
    connection::{Connection, Exit},
    inbound::{self, Quirks},
};
use crate::observe::ViolationKind;
use serde_json::Value;
use std::time::Instant;

impl Connection {
    pub(in crate::gateway) fn on_presence(
        &mut self,
        data: &Value,
        now: Instant,
        quirks: &mut Quirks,
    ) -> Option<Exit> {
        if let Err(invalid) = inbound::presence(data, quirks) {
            return self.invalid("presence update", &invalid.0);
        }
        if !self.presence_limit.admit(now) {
            let config = &self.shared.config;
            self.violation(
                ViolationKind::PresenceRateExceeded,
                format!(
                    "more than {} presence updates in {:?}",
                    config.presence_limit, config.presence_window
                ),
            );
        }
        None
    }
}
