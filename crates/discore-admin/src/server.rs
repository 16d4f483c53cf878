//! The HTTP server: routes, the bearer token check and the snapshot cache.

use crate::{
    config::AdminConfig,
    error::{AdminError, SourceError},
    metrics,
    snapshot::FleetSnapshot,
    source::StatusSource,
    view::{Rates, ShardsView},
};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, dev::ServerHandle, http::header, web};
use std::{
    collections::HashMap,
    net::{SocketAddr, TcpListener},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

/// The status page, with `{{TITLE}}` and `{{REFRESH_MS}}` to fill in.
const PAGE: &str = include_str!("page.html");

/// The page's security headers: no external anything, scripts and styles
/// only inline, requests only to this server.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A snapshot with the rates measured when it was taken.
struct Sampled {
    snapshot: Arc<FleetSnapshot>,
    rates: HashMap<(u32, u32), f64>,
    taken_at: Instant,
    taken: SystemTime,
}

struct State {
    source: Box<dyn StatusSource>,
    token: Option<String>,
    title: String,
    page: String,
    page_refresh: Duration,
    min_refresh: Duration,
    cache: Mutex<(Option<Arc<Sampled>>, Rates)>,
}

impl State {
    /// The last snapshot if it is recent enough, or a fresh one.
    async fn sample(&self) -> Result<Arc<Sampled>, SourceError> {
        if let Ok(cache) = self.cache.lock()
            && let Some(last) = &cache.0
            && last.taken_at.elapsed() < self.min_refresh
        {
            return Ok(Arc::clone(last));
        }
        let snapshot = self.source.snapshot().await?;
        let now = Instant::now();
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| SourceError::Other("the snapshot cache is poisoned".into()))?;
        let rates = cache.1.update(now, &snapshot);
        let sampled = Arc::new(Sampled {
            snapshot: Arc::new(snapshot),
            rates,
            taken_at: now,
            taken: SystemTime::now(),
        });
        cache.0 = Some(Arc::clone(&sampled));
        Ok(sampled)
    }

    /// Whether the request carries the bearer token, when one is required.
    fn authorized(&self, request: &HttpRequest) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(given) = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        constant_time_eq(given.trim().as_bytes(), token.as_bytes())
    }
}

/// Compares without returning early, so the time taken does not tell how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        difference |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    difference == 0
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"discore\""))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body("a bearer token is required\n")
}

fn unavailable(error: &SourceError) -> HttpResponse {
    log::warn!("admin: no snapshot: {error}");
    HttpResponse::ServiceUnavailable()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!("{error}\n"))
}

/// `GET /`: the status page (static; its data comes from `/api/shards`).
async fn page_route(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(state.page.clone())
}

/// `GET /metrics`: the OpenMetrics text format, by `prometheus-client`.
async fn metrics_route(request: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !state.authorized(&request) {
        return unauthorized();
    }
    let sampled = match state.sample().await {
        Ok(sampled) => sampled,
        Err(error) => return unavailable(&error),
    };
    match metrics::encode(Arc::clone(&sampled.snapshot)) {
        Ok(text) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, metrics::CONTENT_TYPE))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(text),
        Err(error) => {
            log::error!("admin: the metrics did not encode: {error}");
            HttpResponse::InternalServerError()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body("the metrics did not encode\n")
        }
    }
}

/// `GET /api/shards`: the page's data as JSON.
async fn shards_route(request: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !state.authorized(&request) {
        return unauthorized();
    }
    match state.sample().await {
        Ok(sampled) => {
            let view = ShardsView::new(
                &state.title,
                state.page_refresh,
                &sampled.snapshot,
                &sampled.rates,
                sampled.taken,
            );
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(view)
        }
        Err(error) => unavailable(&error),
    }
}

/// A running admin server. Dropping it leaves the server running until the
/// actix system stops; [`AdminServer::stop`] stops it.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl AdminServer {
    /// Binds `config`'s address (default `127.0.0.1:9299`) and serves
    /// `source`. Must be called inside an actix system.
    ///
    /// # Errors
    ///
    /// [`AdminError::Bind`] when the address cannot be bound.
    pub fn start(config: AdminConfig, source: impl StatusSource) -> Result<Self, AdminError> {
        let addr = config.bind;
        let listener =
            TcpListener::bind(addr).map_err(|source| AdminError::Bind { addr, source })?;
        Self::start_on(listener, config, source)
    }

    /// Serves `source` on an already bound listener (tests bind
    /// `127.0.0.1:0`); `config`'s address is ignored. Must be called inside
    /// an actix system.
    ///
    /// # Errors
    ///
    /// [`AdminError::Listener`] when the listener cannot be used.
    pub fn start_on(
        listener: TcpListener,
        config: AdminConfig,
        source: impl StatusSource,
    ) -> Result<Self, AdminError> {
        let addr = listener.local_addr().map_err(AdminError::Listener)?;
        let page = PAGE
            .replace("{{TITLE}}", &html_escape(&config.title))
            .replace(
                "{{REFRESH_MS}}",
                &config.page_refresh.as_millis().to_string(),
            );
        let state = web::Data::new(State {
            source: Box::new(source),
            token: config.bearer_token.clone(),
            title: config.title.clone(),
            page,
            page_refresh: config.page_refresh,
            min_refresh: config.min_refresh,
            cache: Mutex::new((None, Rates::default())),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/", web::get().to(page_route))
                .route("/metrics", web::get().to(metrics_route))
                .route("/api/shards", web::get().to(shards_route))
                .default_service(web::to(|| async {
                    HttpResponse::NotFound().body("not found\n")
                }))
        })
        .workers(config.workers)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .map_err(AdminError::Listener)?
        .run();
        let handle = server.handle();
        actix::spawn(async move {
            if let Err(error) = server.await {
                log::error!("admin server stopped: {error}");
            }
        });
        let auth = if config.bearer_token.is_some() {
            "bearer token required"
        } else {
            "no token"
        };
        log::info!("admin server on http://{addr}/ ({auth})");
        Ok(Self { addr, handle })
    }

    /// The address it listens on.
    pub const fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The status page's URL, such as `http://127.0.0.1:9299/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops accepting connections and waits (up to a second) for requests
    /// in flight.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, html_escape};

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"secrets", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"Secret", b"secret"));
    }

    #[test]
    fn titles_are_escaped() {
        assert_eq!(html_escape("<b>&\"'"), "&lt;b&gt;&amp;&quot;&#39;");
    }
}
