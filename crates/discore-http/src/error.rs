//! Why a REST call failed. No variant ever carries the token.

use std::time::Duration;

/// A REST call failed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// 401: Discord rejected the bot token. Every call will fail the same way
    /// until the token is replaced.
    #[error(
        "the bot's token was refused (401 Unauthorized): check DISCORD_TOKEN (a token reset in the Developer Portal must be replaced)"
    )]
    Unauthorized,
    /// 429, still rate limited after the allowed attempts, or asked to wait
    /// longer than the configured maximum.
    #[error(
        "rate limited on {route} after {attempts} attempts (Discord asks to wait {retry_after:?}): \
         retry later, or allow more with RestClientBuilder::max_attempts and max_retry_after"
    )]
    RateLimited {
        /// The route, such as `/gateway/bot`.
        route: String,
        /// The wait Discord asked for last.
        retry_after: Duration,
        /// Requests sent.
        attempts: u32,
    },
    /// Any other unsuccessful status.
    #[error(
        "request to {route} answered {status}{}: {}",
        message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default(),
        status_advice(*status)
    )]
    Status {
        /// The route.
        route: String,
        /// The HTTP status code.
        status: u16,
        /// Discord's error message, when the body had one.
        message: Option<String>,
    },
    /// The request did not complete: connection, TLS, timeout.
    #[error("request to {route} failed ({reason}): check the network and the REST base url")]
    Transport {
        /// The route.
        route: String,
        /// What went wrong.
        reason: String,
    },
    /// The response body was not the expected JSON.
    #[error(
        "unexpected response body from {route} ({reason}): check that the REST base url is Discord's API"
    )]
    InvalidBody {
        /// The route.
        route: String,
        /// The parse error.
        reason: String,
    },
    /// The base URL is not an `http://` or `https://` URL with a host.
    #[error(
        "invalid REST base url {0}: give an http:// or https:// url with a host, such as https://discord.com/api/v10"
    )]
    InvalidBaseUrl(String),
    /// The TLS configuration could not be built.
    #[error("TLS setup failed ({0}): check the TLS configuration and its root certificates")]
    Tls(String),
}

/// What to do after an unsuccessful status, by what Discord means with it
/// (<https://discord.com/developers/docs/topics/opcodes-and-status-codes#http>).
fn status_advice(status: u16) -> &'static str {
    match status {
        400 => "check the request's fields",
        403 => "the bot lacks a permission or access for this: grant it, or skip the call",
        404 => "check the ids in the route",
        405 | 415 => "check the method and the request body",
        500..=599 => "Discord had a problem: retry later",
        _ => "check the request",
    }
}

impl HttpError {
    /// Whether retrying later can help: rate limits, transport failures and
    /// server errors, but not a rejected token or a malformed answer.
    pub const fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Transport { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            Self::Unauthorized
            | Self::InvalidBody { .. }
            | Self::InvalidBaseUrl(_)
            | Self::Tls(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HttpError;
    use std::time::Duration;

    #[test]
    fn messages_are_lower_case_and_informative() {
        let errors = [
            HttpError::Unauthorized,
            HttpError::RateLimited {
                route: "/gateway/bot".into(),
                retry_after: Duration::from_millis(1500),
                attempts: 3,
            },
            HttpError::Status {
                route: "/gateway/bot".into(),
                status: 502,
                message: None,
            },
            HttpError::Status {
                route: "/gateway/bot".into(),
                status: 403,
                message: Some("Missing Access".into()),
            },
        ];
        for error in &errors {
            let text = error.to_string();
            assert!(text.starts_with(char::is_lowercase), "{text}");
            assert!(!text.ends_with('.'), "{text}");
        }
        assert!(errors[0].to_string().contains("401"));
        assert_eq!(
            errors[3].to_string(),
            "request to /gateway/bot answered 403 (Missing Access): the bot lacks a permission \
             or access for this: grant it, or skip the call"
        );
    }

    #[test]
    fn transient_errors() {
        assert!(!HttpError::Unauthorized.is_transient());
        assert!(
            HttpError::Status {
                route: String::new(),
                status: 503,
                message: None
            }
            .is_transient()
        );
        assert!(
            !HttpError::Status {
                route: String::new(),
                status: 404,
                message: None
            }
            .is_transient()
        );
    }
}
