//! The admin server's errors.

use std::{io, net::SocketAddr};

/// Why a [`StatusSource`](crate::StatusSource) gave no snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The actor it asks has stopped.
    #[error("the shards' supervisor is gone")]
    Gone,
    /// Something else, described.
    #[error("the status source failed: {0}")]
    Other(String),
}

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The address could not be bound (in use, not allowed).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// A given listener could not be used.
    #[error("cannot use the listener")]
    Listener(#[source] io::Error),
}

#[cfg(test)]
mod tests {
    use super::AdminError;
    use discore_protocol::ErrorChain;
    use std::io;

    #[test]
    fn messages_do_not_repeat_their_sources() {
        let refused = || io::Error::new(io::ErrorKind::AddrInUse, "address in use");
        for error in [
            AdminError::Bind {
                addr: "127.0.0.1:9299".parse().expect("an address"),
                source: refused(),
            },
            AdminError::Listener(refused()),
        ] {
            let messages = ErrorChain(&error).messages();
            assert_eq!(messages.len(), 2, "{messages:?} has its source");
            assert!(!messages[0].contains(&messages[1]), "{messages:?}");
        }
    }
}
