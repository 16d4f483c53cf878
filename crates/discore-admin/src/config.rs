//! How the admin server runs: [`AdminConfig`].

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

/// The admin server's default address: loopback only.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9299);

/// Everything the admin server needs besides its data. Every setter
/// documents its default.
///
/// ```
/// use discore_admin::AdminConfig;
/// use std::time::Duration;
///
/// let config = AdminConfig::new()
///     .bind("127.0.0.1:0".parse().expect("an address"))
///     .bearer_token("s3cret")
///     .page_refresh(Duration::from_secs(5));
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[must_use]
pub struct AdminConfig {
    pub(crate) bind: SocketAddr,
    pub(crate) bearer_token: Option<String>,
    pub(crate) workers: usize,
    pub(crate) min_refresh: Duration,
    pub(crate) page_refresh: Duration,
    pub(crate) title: String,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("bind", &self.bind)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "[redacted]"),
            )
            .field("workers", &self.workers)
            .field("min_refresh", &self.min_refresh)
            .field("page_refresh", &self.page_refresh)
            .field("title", &self.title)
            .finish()
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl AdminConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self {
            bind: DEFAULT_ADDR,
            bearer_token: None,
            workers: 1,
            min_refresh: Duration::from_millis(250),
            page_refresh: Duration::from_secs(2),
            title: "discore".to_owned(),
        }
    }

    /// The address to listen on. Default `127.0.0.1:9299`: loopback only.
    /// Port 0 picks a free port (read it back with
    /// [`AdminServer::local_addr`](crate::AdminServer::local_addr)). Bind
    /// another interface only behind a bearer token or a proxy that
    /// authenticates.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Requires `Authorization: Bearer <token>` on `/metrics` and
    /// `/api/shards` (the page itself holds no data; it reads the token
    /// from its URL fragment, `/#token=...`). Default: no token. An empty
    /// token means none.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.bearer_token = (!token.is_empty()).then_some(token);
        self
    }

    /// The address [`AdminServer::start`](crate::AdminServer::start) binds.
    pub const fn addr(&self) -> SocketAddr {
        self.bind
    }

    /// HTTP worker threads. Default 1: the server answers a scraper and a
    /// few browsers.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Requests within this time of the last snapshot reuse it instead of
    /// asking the source again, which bounds the load many scrapers and
    /// browsers put on the fleet. Default 250 ms.
    pub fn min_refresh(mut self, interval: Duration) -> Self {
        self.min_refresh = interval;
        self
    }

    /// How often the status page refreshes itself. Default 2 s.
    pub fn page_refresh(mut self, interval: Duration) -> Self {
        self.page_refresh = interval.max(Duration::from_millis(100));
        self
    }

    /// The page's title, such as the bot's name. Default `discore`.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }
}
