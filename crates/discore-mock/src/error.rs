//! Errors of the emulator's API.

use std::time::Duration;

/// Why an emulator operation failed. Never contains the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MockError {
    /// The configuration cannot work (e.g. an empty token).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The listener could not be bound.
    #[error("could not bind the listener")]
    Bind(#[source] std::io::Error),
    /// No channel of the world has this id.
    #[error("unknown channel {0}")]
    UnknownChannel(u64),
    /// No guild of the world has this id.
    #[error("unknown guild {0}")]
    UnknownGuild(u64),
    /// The channel is not a text channel.
    #[error("channel {0} is not a text channel")]
    NotTextChannel(u64),
    /// Discord would refuse the message (empty, too long).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
}

/// [`MockServer::wait_until`](crate::MockServer::wait_until) gave up.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("condition not met within {0:?}")]
pub struct WaitTimeout(pub Duration);

#[cfg(test)]
mod tests {
    use super::MockError;
    use std::error::Error as _;

    /// Each message of the chain, walked through `source()` (the emulator
    /// depends on no discore crate, so not through discore's `ErrorChain`).
    fn messages(error: &dyn std::error::Error) -> Vec<String> {
        let mut messages = vec![error.to_string()];
        let mut source = error.source();
        while let Some(error) = source {
            messages.push(error.to_string());
            source = error.source();
        }
        messages
    }

    #[test]
    fn messages_do_not_repeat_their_sources() {
        let error = MockError::Bind(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "address in use",
        ));
        let messages = messages(&error);
        assert_eq!(messages.len(), 2, "{messages:?} has its source");
        assert!(!messages[0].contains(&messages[1]), "{messages:?}");
        assert!(error.source().is_some());
    }
}
