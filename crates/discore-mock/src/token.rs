//! The bot token the emulator expects: kept out of every `Debug`, log and
//! error, and compared in the two forms Discord accepts.

use std::fmt;

/// The configured bot token. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct BotToken(String);

/// Why a token cannot be used.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub(crate) enum InvalidToken {
    /// The token is empty.
    #[error("the token is empty")]
    Empty,
    /// The token contains whitespace (a pasted `Bot ` prefix, a newline).
    #[error("the token contains whitespace")]
    Whitespace,
}

impl BotToken {
    pub(crate) fn new(token: impl AsRef<str>) -> Result<Self, InvalidToken> {
        let token = token.as_ref();
        if token.is_empty() {
            Err(InvalidToken::Empty)
        } else if token.chars().any(char::is_whitespace) {
            Err(InvalidToken::Whitespace)
        } else {
            Ok(Self(token.to_owned()))
        }
    }

    /// The raw token, for redacting it from recorded payloads.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` (Identify's or Resume's `token`) is this token.
    /// Discord takes the raw token there, and the REST form `Bot <token>`
    /// too (twilight-gateway and serenity send that).
    pub(crate) fn matches_gateway(&self, given: &str) -> bool {
        given.strip_prefix("Bot ").unwrap_or(given) == self.0
    }

    /// Whether `header` (a REST `Authorization` header) is `Bot <token>`.
    pub(crate) fn matches_authorization(&self, header: &str) -> bool {
        header.strip_prefix("Bot ") == Some(self.0.as_str())
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BotToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::{BotToken, InvalidToken};

    #[test]
    fn forms_and_redaction() {
        let token = BotToken::new("abc.def").expect("valid");
        assert!(token.matches_gateway("abc.def"));
        assert!(token.matches_gateway("Bot abc.def"));
        assert!(!token.matches_gateway("abc"));
        assert!(token.matches_authorization("Bot abc.def"));
        assert!(!token.matches_authorization("abc.def"));
        assert!(!token.matches_authorization("Bearer abc.def"));
        assert!(!format!("{token:?}").contains("abc"));
        assert_eq!(BotToken::new(""), Err(InvalidToken::Empty));
        assert_eq!(BotToken::new("Bot x"), Err(InvalidToken::Whitespace));
    }
}
