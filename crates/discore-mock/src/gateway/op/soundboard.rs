//! Op 31 Request Soundboard Sounds: one SOUNDBOARD_SOUNDS per own guild.

use crate::gateway::connection::{Connection, Exit};
use crate::{event::Event, payloads};
use discore_protocol::commands::RequestSoundboardSounds;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

impl Connection {
    pub(in crate::gateway) fn on_soundboard(&mut self, data: Value) -> Option<Exit> {
        let Ok(request) = RequestSoundboardSounds::deserialize(&data) else {
            return self.invalid("request soundboard sounds");
        };
        let session_id = self.session_id.clone()?;
        let mut state = self.shared.lock();
        let world = Arc::clone(&state.world);
        for guild_id in request.guild_ids {
            if let Some(guild) = self.own_guild(&world, guild_id.get()) {
                let data = payloads::soundboard_sounds(&world, guild);
                state.deliver(
                    &session_id,
                    &Event::plain("SOUNDBOARD_SOUNDS", &data, Some(guild_id.get())),
                );
            }
        }
        None
    }
}
