//! The REST client: awc over rustls, `Authorization: Bot <token>`, bounded
//! retries for 429 and server errors.

use crate::error::HttpError;
use awc::http::{
    StatusCode, Uri,
    header::{AUTHORIZATION, RETRY_AFTER, USER_AGENT},
};
use discore_protocol::Token;
use serde::{Deserialize, de::DeserializeOwned};
use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};
use twilight_model::{
    gateway::connection_info::{BotConnectionInfo, ConnectionInfo},
    user::CurrentUser,
};

/// Discord's REST API, version 10, used when no base URL is configured.
pub const DISCORD_API_URL: &str = "https://discord.com/api/v10";

/// Discord asks every bot to name itself this way.
const USER_AGENT_VALUE: &str = concat!(
    "DiscordBot (",
    env!("CARGO_PKG_REPOSITORY"),
    ", ",
    env!("CARGO_PKG_VERSION"),
    ")"
);

/// Largest response body read; the gateway routes answer a few hundred bytes.
const BODY_LIMIT: usize = 256 * 1024;

/// A client for the REST routes around the Gateway.
///
/// Cheap to clone. It lives on the actix arbiter that created it (awc
/// clients are not `Send`).
///
/// ```no_run
/// use discore_http::RestClient;
/// use discore_protocol::Token;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let token = Token::new(std::env::var("DISCORD_TOKEN")?)?;
/// let rest = RestClient::new(token)?;
/// let info = rest.gateway_bot().await?;
/// println!(
///     "{} shards recommended, {} identifies left today, {} at a time",
///     info.shards,
///     info.session_start_limit.remaining,
///     info.session_start_limit.max_concurrency
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RestClient {
    base: Arc<str>,
    token: Token,
    client: awc::Client,
    max_attempts: u32,
    max_retry_after: Duration,
    retry_delay: Duration,
}

impl fmt::Debug for RestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base)
            .field("token", &self.token)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`RestClient`]; every setter documents its default.
#[derive(Clone, Debug)]
#[must_use]
pub struct RestClientBuilder {
    base: String,
    token: Token,
    timeout: Duration,
    max_attempts: u32,
    max_retry_after: Duration,
    retry_delay: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl RestClientBuilder {
    /// The API base URL including the version, such as the emulator's
    /// `http://127.0.0.1:PORT/api/v10`. Default [`DISCORD_API_URL`].
    pub fn base_url(mut self, base: impl Into<String>) -> Self {
        self.base = base.into();
        self
    }

    /// Longest time for one request, connection included. Default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Requests sent at most per call, the first one included, when Discord
    /// answers 429 or 5xx or the connection fails. Default 3.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Longest `retry_after` waited for; a longer one is returned as
    /// [`HttpError::RateLimited`] at once. Default 60 s.
    pub fn max_retry_after(mut self, wait: Duration) -> Self {
        self.max_retry_after = wait;
        self
    }

    /// The wait before retrying after a server error or a failed connection,
    /// doubled for each further attempt. Default 500 ms.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// The TLS configuration for `https://`. Default: Mozilla's root
    /// certificates (webpki-roots) with full verification, ring as the
    /// crypto provider.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`HttpError::InvalidBaseUrl`] when the base is not an `http://` or
    /// `https://` URL with a host; [`HttpError::Tls`] when the default TLS
    /// configuration cannot be built.
    pub fn build(self) -> Result<RestClient, HttpError> {
        let base = validate_base(&self.base)?;
        let tls = match self.tls {
            Some(tls) => tls,
            None => default_tls()?,
        };
        let connector = awc::Connector::new().rustls_0_23(tls).timeout(self.timeout);
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(self.timeout)
            .disable_redirects()
            .add_default_header((USER_AGENT, USER_AGENT_VALUE))
            .finish();
        Ok(RestClient {
            base: base.into(),
            token: self.token,
            client,
            max_attempts: self.max_attempts,
            max_retry_after: self.max_retry_after,
            retry_delay: self.retry_delay,
        })
    }
}

/// The body of a 429 answer.
#[derive(Deserialize)]
struct RateLimitBody {
    /// Seconds, fractional.
    retry_after: f64,
    #[serde(default)]
    global: bool,
}

/// The body of an error answer: `{"code": 0, "message": "..."}`.
#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

impl RestClient {
    /// A client for Discord's API with every setting at its default.
    ///
    /// # Errors
    ///
    /// [`HttpError::Tls`] when the TLS configuration cannot be built.
    pub fn new(token: Token) -> Result<Self, HttpError> {
        Self::builder(token).build()
    }

    /// A builder, to point the client at the emulator or change its retries.
    pub fn builder(token: Token) -> RestClientBuilder {
        RestClientBuilder {
            base: DISCORD_API_URL.to_owned(),
            token,
            timeout: Duration::from_secs(10),
            max_attempts: 3,
            max_retry_after: Duration::from_secs(60),
            retry_delay: Duration::from_millis(500),
            tls: None,
        }
    }

    /// The API base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /gateway/bot`: the gateway URL, the recommended shard count, and
    /// the session start limit with `max_concurrency` (`docs/protocol.md`,
    /// "Discovery").
    /// Not cached: the values change as the bot joins guilds.
    ///
    /// # Errors
    ///
    /// [`HttpError::Unauthorized`] for a rejected token, and the other
    /// [`HttpError`]s for rate limits, statuses, transport and bad JSON.
    pub async fn gateway_bot(&self) -> Result<BotConnectionInfo, HttpError> {
        self.get("/gateway/bot", true).await
    }

    /// `GET /gateway`: the gateway URL. Needs no token.
    ///
    /// # Errors
    ///
    /// The [`HttpError`]s for rate limits, statuses, transport and bad JSON.
    pub async fn gateway(&self) -> Result<ConnectionInfo, HttpError> {
        self.get("/gateway", false).await
    }

    /// `GET /users/@me`: the bot's own user; a cheap way to check a token.
    ///
    /// # Errors
    ///
    /// [`HttpError::Unauthorized`] for a rejected token, and the other
    /// [`HttpError`]s for rate limits, statuses, transport and bad JSON.
    pub async fn current_user(&self) -> Result<CurrentUser, HttpError> {
        self.get("/users/@me", true).await
    }

    async fn get<T: DeserializeOwned>(&self, route: &str, auth: bool) -> Result<T, HttpError> {
        let url = format!("{}{route}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.max_attempts;
            let mut request = self.client.get(url.as_str());
            if auth {
                request = request.insert_header((AUTHORIZATION, self.token.authorization_header()));
            }
            let mut response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    let reason = error.to_string();
                    if last {
                        return Err(HttpError::Transport {
                            route: route.to_owned(),
                            reason,
                        });
                    }
                    let delay = self.retry_delay_for(attempt);
                    log::warn!("GET {route} failed ({reason}); retrying in {delay:?}");
                    actix_rt::time::sleep(delay).await;
                    continue;
                }
            };
            let status = response.status();
            let header_wait = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<f64>().ok());
            let body =
                response
                    .body()
                    .limit(BODY_LIMIT)
                    .await
                    .map_err(|error| HttpError::Transport {
                        route: route.to_owned(),
                        reason: error.to_string(),
                    })?;
            if status.is_success() {
                return serde_json::from_slice(&body).map_err(|error| HttpError::InvalidBody {
                    route: route.to_owned(),
                    reason: error.to_string(),
                });
            }
            match status {
                StatusCode::UNAUTHORIZED => return Err(HttpError::Unauthorized),
                StatusCode::TOO_MANY_REQUESTS => {
                    let parsed = serde_json::from_slice::<RateLimitBody>(&body).ok();
                    let global = parsed.as_ref().is_some_and(|b| b.global);
                    let seconds = parsed.map(|b| b.retry_after).or(header_wait).unwrap_or(1.0);
                    let retry_after =
                        Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX);
                    if last || retry_after > self.max_retry_after {
                        return Err(HttpError::RateLimited {
                            route: route.to_owned(),
                            retry_after,
                            attempts: attempt,
                        });
                    }
                    log::warn!(
                        "GET {route} rate limited{}: retrying in {retry_after:?}",
                        if global { " (global)" } else { "" }
                    );
                    actix_rt::time::sleep(retry_after).await;
                }
                status if status.is_server_error() && !last => {
                    let delay = self.retry_delay_for(attempt);
                    log::warn!("GET {route} answered {status}; retrying in {delay:?}");
                    actix_rt::time::sleep(delay).await;
                }
                status => {
                    let message = serde_json::from_slice::<ErrorBody>(&body)
                        .ok()
                        .map(|b| b.message);
                    return Err(HttpError::Status {
                        route: route.to_owned(),
                        status: status.as_u16(),
                        message,
                    });
                }
            }
        }
    }

    fn retry_delay_for(&self, attempt: u32) -> Duration {
        self.retry_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
    }
}

/// Checks the base URL and removes a trailing slash.
fn validate_base(base: &str) -> Result<String, HttpError> {
    let trimmed = base.trim_end_matches('/');
    let uri: Uri = trimmed
        .parse()
        .map_err(|e| HttpError::InvalidBaseUrl(format!("{base}: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(HttpError::InvalidBaseUrl(format!(
                "{base}: the scheme is not http or https"
            )));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(HttpError::InvalidBaseUrl(format!("{base}: no host")));
    }
    if uri.query().is_some() {
        return Err(HttpError::InvalidBaseUrl(format!(
            "{base}: a base url takes no query"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Webpki roots, ring, HTTP/1.1; built once per process.
fn default_tls() -> Result<Arc<rustls::ClientConfig>, HttpError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots =
                rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(HttpError::Tls)
}

#[cfg(test)]
mod tests {
    use super::{USER_AGENT_VALUE, validate_base};

    #[test]
    fn base_urls() {
        assert_eq!(
            validate_base("https://discord.com/api/v10/").as_deref(),
            Ok("https://discord.com/api/v10")
        );
        assert_eq!(
            validate_base("http://127.0.0.1:3000/api/v10").as_deref(),
            Ok("http://127.0.0.1:3000/api/v10")
        );
        for bad in [
            "",
            "discord.com/api",
            "wss://gateway.discord.gg",
            "https://",
            "https://x/api?v=1",
        ] {
            assert!(validate_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_agent_follows_discords_format() {
        assert!(USER_AGENT_VALUE.starts_with("DiscordBot ("));
        assert!(USER_AGENT_VALUE.ends_with(')'));
    }
}
