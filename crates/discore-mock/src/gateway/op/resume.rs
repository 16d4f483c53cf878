//! Op 6 Resume: the state judges token, session and sequence; a resumed
//! session's missed dispatches are replayed, then RESUMED. While the handle
//! holds resumes, the payload waits unanswered until they are released.

use crate::gateway::{
    connection::{Connection, Exit},
    inbound::{self, Quirks},
};
use crate::state::ResumeResult;
use serde_json::Value;
use std::time::Instant;

impl Connection {
    pub(in crate::gateway) fn on_resume(
        &mut self,
        data: Value,
        quirks: &mut Quirks,
    ) -> Option<Exit> {
        let resume = match inbound::resume(&data, quirks) {
            Ok(resume) => resume,
            Err(invalid) => return self.invalid("resume", &invalid.0),
        };
        if self.shared.lock().resumes_held {
            log::debug!("{}: resume held", self.id);
            self.held_resume = Some(data);
            return None;
        }
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
            ResumeResult::Resumed {
                session_id,
                shard,
                intents,
                written,
            } => {
                log::info!("{} resumed shard {shard:?}", self.id);
                self.intents = intents;
                self.session_id = Some(session_id);
                self.shard = Some(shard);
                self.session_written = Some(written);
                self.outbox_pending = true;
                None
            }
        }
    }

    /// Answers the Resume held while resumes were held.
    pub(in crate::gateway) fn release_resume(&mut self) -> Option<Exit> {
        let data = self.held_resume.take()?;
        let mut quirks = Quirks::default();
        self.on_resume(data, &mut quirks)
    }
}
