//! Op 3 Presence Update: validated and counted against the presence limit.

use crate::gateway::{
    connection::{Connection, Exit},
    inbound::validate_presence,
};
use crate::observe::ViolationKind;
use serde_json::Value;
use std::{sync::Arc, time::Instant};

impl Connection {
    pub(in crate::gateway) fn on_presence(&mut self, data: &Value, now: Instant) -> Option<Exit> {
        if !validate_presence(data) {
            return self.invalid("presence update");
        }
        let config = Arc::clone(&self.shared.config);
        if now.saturating_duration_since(self.presence_window.0) >= config.presence_window {
            self.presence_window = (now, 0);
        }
        self.presence_window.1 += 1;
        if self.presence_window.1 > config.presence_limit {
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
