//! One configuration for the gateway and REST: the embedded emulator by
//! default, Discord when `DISCORD_TOKEN` is set.
//!
//! The only differences between the two are the token and the REST base
//! URL. discore's `DiscoveryConfig::rest_url` takes the base URL as it is;
//! twilight-http takes a host through `ClientBuilder::proxy(host, use_http)`
//! and adds `/api/v10` itself, so [`RestBase`] turns one into the other.

use discore::{
    Backoff, DiscoveryConfig, IdentifyConfig, IdentifyLimits, Intents, ManagerConfig, ShardConfig,
    SupervisionConfig, Token,
};
use discore_mock::{MockConfig, MockServer};
use std::{fmt, time::Duration};

/// The token of the embedded emulator.
pub const EMULATOR_TOKEN: &str = "mock-token";

/// Discord's REST base, the default.
pub const DISCORD_REST_URL: &str = "https://discord.com/api/v10";

/// The emulator's identify window, scaled down so a fleet starts at once.
const EMULATOR_IDENTIFY_WINDOW: Duration = Duration::from_millis(50);

/// Starts `env_logger` at `info` (or `RUST_LOG`), with twilight-http's
/// per-request lines and songbird's spans left out by default: request
/// paths carry interaction tokens, which are credentials.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(
        "info,twilight_http=warn,twilight_http_ratelimiting=warn,tracing::span=warn",
    ))
    .init();
}

/// Why the environment could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The token is not usable (empty, or with whitespace).
    #[error("the token is not valid")]
    Token,
    /// The REST base URL is not `http(s)://host[:port]/api/v10`.
    #[error("REST base URL {0:?} is not http(s)://host[:port]/api/v10")]
    RestUrl(String),
    /// The emulator did not start.
    #[error("the emulator did not start")]
    Emulator(#[from] discore_mock::MockError),
}

/// Where twilight-http sends requests.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum RestBase {
    /// `https://discord.com/api/v10`: twilight-http's default.
    Discord,
    /// Another server speaking Discord's REST API under `/api/v10`, such
    /// as the emulator: twilight-http's `proxy(host, use_http)`.
    Proxy {
        /// `host[:port]`.
        host: String,
        /// Plain HTTP rather than HTTPS.
        use_http: bool,
    },
}

impl RestBase {
    /// Reads a REST base URL as discore takes it
    /// (`http://127.0.0.1:PORT/api/v10`).
    ///
    /// # Errors
    ///
    /// [`SetupError::RestUrl`] for another shape: twilight-http always
    /// appends `/api/v10`, so the URL must end with it.
    pub fn parse(url: &str) -> Result<Self, SetupError> {
        let bad = || SetupError::RestUrl(url.to_owned());
        let trimmed = url.trim_end_matches('/');
        if trimmed == DISCORD_REST_URL {
            return Ok(Self::Discord);
        }
        let (use_http, rest) = if let Some(rest) = trimmed.strip_prefix("http://") {
            (true, rest)
        } else if let Some(rest) = trimmed.strip_prefix("https://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let host = rest.strip_suffix("/api/v10").ok_or_else(bad)?;
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(Self::Proxy {
            host: host.to_owned(),
            use_http,
        })
    }

    /// A twilight-http client for `token` on this base.
    pub fn client(&self, token: &str) -> twilight_http::Client {
        let builder = twilight_http::Client::builder().token(token.to_owned());
        match self {
            Self::Discord => builder.build(),
            Self::Proxy { host, use_http } => builder.proxy(host.clone(), *use_http).build(),
        }
    }
}

/// Where the bot runs: the embedded emulator, or Discord (or any server at
/// `DISCORE_REST_URL`) with `DISCORD_TOKEN`.
pub struct Environment {
    token: String,
    rest_url: String,
    mock: Option<MockServer>,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("token", &"[redacted]")
            .field("rest_url", &self.rest_url)
            .field("emulator", &self.mock.is_some())
            .finish()
    }
}

impl Environment {
    /// Discord when `DISCORD_TOKEN` is set (at `DISCORE_REST_URL` when
    /// that is set too), otherwise a new emulator with `world`.
    ///
    /// # Errors
    ///
    /// [`SetupError`] when the token or URL is unusable or the emulator
    /// does not start.
    pub async fn from_env(world: MockConfig) -> Result<Self, SetupError> {
        match std::env::var("DISCORD_TOKEN") {
            Ok(token) => {
                let rest_url = std::env::var("DISCORE_REST_URL")
                    .unwrap_or_else(|_| DISCORD_REST_URL.to_owned());
                Self::remote(token, rest_url)
            }
            Err(_) => Self::emulator(world).await,
        }
    }

    /// A server speaking Discord's API at `rest_url` (Discord itself, or
    /// the `discore-mock` binary).
    ///
    /// # Errors
    ///
    /// [`SetupError`] for an unusable token or URL.
    pub fn remote(token: String, rest_url: String) -> Result<Self, SetupError> {
        Token::new(token.clone()).map_err(|_| SetupError::Token)?;
        RestBase::parse(&rest_url)?;
        Ok(Self {
            token,
            rest_url,
            mock: None,
        })
    }

    /// Starts an emulator with `world`, its token set to
    /// [`EMULATOR_TOKEN`] and a short identify window.
    ///
    /// # Errors
    ///
    /// [`SetupError::Emulator`] when it does not start.
    pub async fn emulator(world: MockConfig) -> Result<Self, SetupError> {
        let mock = MockServer::start(
            world
                .token(EMULATOR_TOKEN)
                .identify_window(EMULATOR_IDENTIFY_WINDOW),
        )
        .await?;
        Ok(Self {
            token: EMULATOR_TOKEN.to_owned(),
            rest_url: mock.rest_url(),
            mock: Some(mock),
        })
    }

    /// The embedded emulator, if the bot runs on one.
    pub fn mock(&self) -> Option<&MockServer> {
        self.mock.as_ref()
    }

    /// The REST base URL.
    pub fn rest_url(&self) -> &str {
        &self.rest_url
    }

    /// The fleet's configuration. On the embedded emulator the identify
    /// window, the reconnect backoff and the wait after an invalid session
    /// are scaled down.
    ///
    /// # Errors
    ///
    /// [`SetupError::Token`] for an unusable token.
    pub fn manager_config(&self, intents: Intents) -> Result<ManagerConfig, SetupError> {
        let token = Token::new(self.token.clone()).map_err(|_| SetupError::Token)?;
        let config = ManagerConfig::new(token, intents)
            .discovery(DiscoveryConfig::at(self.rest_url.clone()));
        Ok(if self.mock.is_some() {
            let shards = ShardConfig::new(intents)
                .backoff(Backoff {
                    base: Duration::from_millis(20),
                    cap: Duration::from_millis(200),
                })
                // Discord asks for 1-5 s before identifying after op 9.
                .invalid_session_delay(Duration::from_millis(10)..=Duration::from_millis(50));
            config
                .identify(IdentifyConfig::in_memory(IdentifyLimits {
                    // A little above the emulator's window.
                    window: EMULATOR_IDENTIFY_WINDOW * 3,
                    ..IdentifyLimits::default()
                }))
                .supervision(SupervisionConfig {
                    status_interval: Duration::from_millis(20),
                    ..SupervisionConfig::default()
                })
                .shard_config(shards)
        } else {
            config
        })
    }

    /// A twilight-http client for the same server and token.
    ///
    /// # Errors
    ///
    /// [`SetupError::RestUrl`] when the REST base is not one twilight-http
    /// can reach.
    pub fn http(&self) -> Result<twilight_http::Client, SetupError> {
        Ok(RestBase::parse(&self.rest_url)?.client(&self.token))
    }

    /// Stops the embedded emulator, if any.
    pub async fn stop(&self) {
        if let Some(mock) = &self.mock {
            mock.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{RestBase, SetupError};
    use discore::ErrorChain;

    #[test]
    fn discord_is_twilight_default() {
        assert_eq!(
            RestBase::parse("https://discord.com/api/v10").expect("parses"),
            RestBase::Discord
        );
        assert_eq!(
            RestBase::parse("https://discord.com/api/v10/").expect("parses"),
            RestBase::Discord
        );
    }

    #[test]
    fn emulator_is_a_plain_http_proxy() {
        assert_eq!(
            RestBase::parse("http://127.0.0.1:40051/api/v10").expect("parses"),
            RestBase::Proxy {
                host: "127.0.0.1:40051".into(),
                use_http: true
            }
        );
        assert_eq!(
            RestBase::parse("https://rest.example.internal/api/v10").expect("parses"),
            RestBase::Proxy {
                host: "rest.example.internal".into(),
                use_http: false
            }
        );
    }

    #[test]
    fn other_shapes_are_refused() {
        for url in [
            "http://127.0.0.1:1/api/v9",
            "http://127.0.0.1:1",
            "ftp://127.0.0.1/api/v10",
            "http:///api/v10",
            "http://a/b/api/v10",
        ] {
            assert!(
                matches!(RestBase::parse(url), Err(SetupError::RestUrl(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn messages_do_not_repeat_their_sources() {
        let error = SetupError::Emulator(discore_mock::MockError::Bind(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "address in use",
        )));
        let messages = ErrorChain(&error).messages();
        assert_eq!(
            messages.len(),
            3,
            "{messages:?}: the emulator's error, then the system's"
        );
        for pair in messages.windows(2) {
            assert!(!pair[0].contains(&pair[1]), "{messages:?}");
        }
    }
}
