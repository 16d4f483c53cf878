//! The bot token, kept out of every log line and error message.

use std::{fmt, sync::Arc};

/// A bot token.
///
/// `Debug` prints a redaction and there is no `Display`, so the token cannot
/// reach a log line by accident; [`Token::expose`] is the one way to read it.
#[derive(Clone, Eq, PartialEq)]
pub struct Token(Arc<str>);

impl Token {
    /// Validates a token. A leading `Bot ` (as used in REST headers) is removed.
    ///
    /// # Errors
    ///
    /// [`InvalidToken`] when the token is empty or contains whitespace or
    /// control characters, which would break an HTTP header or a JSON payload.
    pub fn new(token: impl AsRef<str>) -> Result<Self, InvalidToken> {
        let token = token.as_ref();
        let token = token.strip_prefix("Bot ").unwrap_or(token);
        if token.is_empty() {
            return Err(InvalidToken::Empty);
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidToken::ForbiddenCharacter);
        }
        Ok(Self(Arc::from(token)))
    }

    /// The raw token, as Identify and Resume send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value of an HTTP `Authorization` header: `Bot <token>`.
    pub fn authorization_header(&self) -> String {
        format!("Bot {}", self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Why a token was refused. Never contains the token.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum InvalidToken {
    /// The token is empty.
    Empty,
    /// The token contains whitespace or a control character.
    ForbiddenCharacter,
}

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "the token is empty: set DISCORD_TOKEN to the bot's token",
            Self::ForbiddenCharacter => {
                "the token contains whitespace or a control character: \
                 copy it again from the Developer Portal, without spaces or a newline"
            }
        })
    }
}

impl std::error::Error for InvalidToken {}

#[cfg(test)]
mod tests {
    use super::{InvalidToken, Token};

    const SECRET: &str = "MTIz.secret-part.xyz";

    #[test]
    fn debug_redacts() {
        let token = Token::new(SECRET).expect("valid");
        let debug = format!("{token:?} {:?}", Some(token.clone()));
        assert!(!debug.contains("secret"), "{debug}");
        assert_eq!(token.expose(), SECRET);
    }

    #[test]
    fn strips_bot_prefix() {
        let token = Token::new(format!("Bot {SECRET}")).expect("valid");
        assert_eq!(token.expose(), SECRET);
        assert_eq!(token.authorization_header(), format!("Bot {SECRET}"));
    }

    #[test]
    fn refuses_newlines_and_empty() {
        assert_eq!(Token::new(""), Err(InvalidToken::Empty));
        assert_eq!(Token::new("Bot "), Err(InvalidToken::Empty));
        let err = Token::new(format!("{SECRET}\n")).expect_err("newline refused");
        assert_eq!(err, InvalidToken::ForbiddenCharacter);
        assert!(!err.to_string().contains("secret"));
        assert!(Token::new("a b").is_err());
    }
}
