//! Op 31 Request Soundboard Sounds: one SOUNDBOARD_SOUNDS per own guild.

use crate::gateway::{
    connection::{Connection, Exit},
    inbound::{self, Quirks},
};
use crate::{event::Event, payloads};
use serde_json::Value;
use std::sync::Arc;

impl Connection {
    pub(in crate::gateway) fn on_soundboard(
        &mut self,
        data: &Value,
        quirks: &mut Quirks,
    ) -> Option<Exit> {
        let guild_ids = match inbound::request_soundboard_sounds(data, quirks) {
            Ok(ids) => ids,
            Err(invalid) => return self.invalid("request soundboard sounds", &invalid.0),
        };
        let session_id = self.session_id.clone()?;
        let mut state = self.shared.lock();
        let world = Arc::clone(&state.world);
        for guild_id in guild_ids {
            if let Some(guild) = self.own_guild(&world, guild_id) {
                let data = payloads::soundboard_sounds(&world, guild);
                state.deliver(
                    &session_id,
                    &Event::plain("SOUNDBOARD_SOUNDS", &data, Some(guild_id)),
                );
            }
        }
        None
    }
}
