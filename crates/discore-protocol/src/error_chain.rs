//! An error with its sources, on one line.
//!
//! discore's errors follow one rule: an error's message says what failed
//! at its own level and does not repeat its source, which
//! [`Error::source`] carries. A log line or a report that wants the whole
//! story prints [`ErrorChain`] instead of the error alone.

use std::{error::Error, fmt};

/// Displays an error followed by each of its sources: `error: source:
/// source's source`.
///
/// ```
/// use discore_protocol::{Envelope, ErrorChain};
///
/// let error = Envelope::peek("not json").expect_err("not an envelope");
/// let line = ErrorChain(&error).to_string();
/// assert!(line.starts_with("malformed gateway payload: "));
/// assert!(line.len() > "malformed gateway payload: ".len());
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl ErrorChain<'_> {
    /// Each error's own message, the outermost first.
    pub fn messages(&self) -> Vec<String> {
        let mut messages = vec![self.0.to_string()];
        let mut source = self.0.source();
        while let Some(error) = source {
            messages.push(error.to_string());
            source = error.source();
        }
        messages
    }
}

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorChain;
    use crate::{Envelope, commands};

    /// No error of this crate repeats its source's message in its own.
    #[test]
    fn messages_do_not_repeat_their_sources() {
        let malformed = Envelope::peek("not json").expect_err("not an envelope");
        let mismatch = Envelope::peek(r#"{"op":10,"d":{"heartbeat_interval":1}}"#)
            .expect("an envelope")
            .data
            .expect("data")
            .deserialize::<Vec<u8>>()
            .expect_err("not a list");
        let json = serde_json::from_str::<u8>("x").expect_err("not a number");
        let encode = commands::EncodeError::Json(json);
        let errors: [&(dyn std::error::Error + 'static); 3] = [&malformed, &mismatch, &encode];
        for error in errors {
            let messages = ErrorChain(error).messages();
            assert!(messages.len() > 1, "{messages:?} has its source");
            for pair in messages.windows(2) {
                assert!(!pair[0].contains(&pair[1]), "{messages:?}");
            }
        }
    }

    #[test]
    fn the_chain_shows_every_level() {
        let error = Envelope::peek("not json").expect_err("not an envelope");
        let messages = ErrorChain(&error).messages();
        assert_eq!(ErrorChain(&error).to_string(), messages.join(": "));
    }
}
