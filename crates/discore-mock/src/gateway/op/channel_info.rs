//! Op 43 Request Channel Info: CHANNEL_INFO for the guild's voice channels.

use crate::gateway::{
    connection::{Connection, Exit},
    inbound::{self, Quirks},
};
use crate::{event::Event, payloads};
use serde_json::Value;
use std::sync::Arc;

impl Connection {
    pub(in crate::gateway) fn on_channel_info(
        &mut self,
        data: &Value,
        quirks: &mut Quirks,
    ) -> Option<Exit> {
        let request = match inbound::request_channel_info(data, quirks) {
            Ok(request) => request,
            Err(invalid) => return self.invalid("request channel info", &invalid.0),
        };
        let session_id = self.session_id.clone()?;
        let mut state = self.shared.lock();
        let world = Arc::clone(&state.world);
        let guild = self.own_guild(&world, request.guild_id)?;
        let data = payloads::channel_info(&world, guild, request.status, request.voice_start_time);
        state.deliver(
            &session_id,
            &Event::plain("CHANNEL_INFO", &data, Some(request.guild_id)),
        );
        None
    }
}
