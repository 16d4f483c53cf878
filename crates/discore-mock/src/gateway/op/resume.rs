//! Op 6 Resume: the state judges token, session and sequence; a resumed
//! session's missed dispatches are replayed, then RESUMED.

use crate::gateway::{
    connection::{Connection, Exit},
    inbound::ResumeData,
};
use crate::state::ResumeResult;
use serde::Deserialize;
use serde_json::Value;
use std::time::Instant;

impl Connection {
    pub(in crate::gateway) fn on_resume(&mut self, data: Value) -> Option<Exit> {
        let Ok(resume) = ResumeData::deserialize(&data) else {
            return self.invalid("resume");
        };
        let token_ok = self.token_ok(&resume.token);
        let now = Instant::now();
        let at = self.shared.elapsed();
        let result = self.shared.lock().resume(
            self.id,
            token_ok,
            &resume.session_id,
            resume.seq,
            self.on_resume_url,
            now,
            at,
        );
        match result {
            ResumeResult::Close(code, reason) => Some(Exit::Close(code, reason.to_owned())),
            ResumeResult::InvalidSession => self.send_invalid_session(false),
            ResumeResult::Resumed { session_id, shard } => {
                log::info!("{} resumed shard {shard:?}", self.id);
                self.intents = self
                    .shared
                    .lock()
                    .sessions
                    .get(&session_id)
                    .map_or(0, |s| s.intents);
                self.session_id = Some(session_id);
                self.shard = Some(shard);
                self.outbox_pending = true;
                None
            }
        }
    }
}
