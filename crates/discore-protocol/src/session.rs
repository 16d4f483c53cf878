//! What a client keeps to resume a session (`docs/protocol.md`, "Resuming").

use serde::{Deserialize, Serialize};

/// A resumable Gateway session.
///
/// Serializable so that a process can hand it to its successor (a deploy, a
/// restart, another machine) which then resumes instead of identifying.
#[derive(Clone, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
pub struct Session {
    /// `session_id` from READY.
    pub id: String,
    /// The last dispatch sequence number received.
    pub sequence: u64,
    /// `resume_gateway_url` from READY, if the gateway sent one.
    pub resume_url: Option<String>,
}

impl Session {
    /// A session as READY starts it.
    pub fn new(id: impl Into<String>, sequence: u64, resume_url: Option<String>) -> Self {
        Self {
            id: id.into(),
            sequence,
            resume_url,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Session;

    #[test]
    fn round_trips_through_json() {
        let session = Session::new("abc", 17, Some("wss://resume.example".to_owned()));
        let json = serde_json::to_string(&session).expect("serializable");
        let back: Session = serde_json::from_str(&json).expect("deserializable");
        assert_eq!(back, session);
    }
}
