//! `GET` on a gateway URL: the WebSocket upgrade, the query it carries and
//! the refusals Discord sends as close codes right after the upgrade.
//!
//! Two listeners take upgrades. The discovery listener is the URL that
//! `/gateway` and `/gateway/bot` hand out; the resume listener is READY's
//! `resume_gateway_url`. Both are bare `ws://host:port`, as Discord's are, so
//! a connection is told from the other by the listener it came in on, not
//! by its path. Libraries build the URL they connect to from those in
//! every form: `{url}/?v=10…`, `{url}?v=10…` (both `/` on the wire), or
//! from a URL with a trailing slash already (`//`); each is accepted.
//! With [`session_resume_urls`](crate::MockConfig::session_resume_urls) the
//! resume URL names the session in its one path segment.

use super::{
    connection::{BATCH, Connection, MAX_FRAME},
    socket::{Incoming, Outgoing},
};
use crate::{
    limits,
    observe::{Compression, ConnectionRecord, RefusedUpgrade},
    rate::SlidingWindow,
    state::{ConnHandle, Shared, Written},
    transport::Encoder,
};
use actix_http::ws::Codec;
use actix_web::{HttpRequest, HttpResponse, body::MessageBody, web};
use bytes::BytesMut;
use serde_json::json;
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, atomic::AtomicBool},
    time::Instant,
};
use tokio::sync::{Notify, mpsc};

/// The query string of a gateway URL.
struct GatewayQuery {
    version: Option<u8>,
    encoding: Option<String>,
    compress: Option<String>,
}

impl GatewayQuery {
    fn parse(query: &str) -> Self {
        let params = web::Query::<HashMap<String, String>>::from_query(query)
            .map(web::Query::into_inner)
            .unwrap_or_default();
        Self {
            version: params.get("v").and_then(|v| v.parse().ok()),
            encoding: params.get("encoding").cloned(),
            compress: params.get("compress").cloned(),
        }
    }
}

/// Whether `path` is one a gateway URL of this listener produces: `/` or
/// `//` on either, and on the resume listener one segment naming a session.
fn gateway_path(path: &str, on_resume_listener: bool) -> bool {
    match path {
        "/" | "//" => true,
        _ => {
            on_resume_listener && {
                let segment = path.trim_start_matches('/').trim_end_matches('/');
                !segment.is_empty() && !segment.contains('/')
            }
        }
    }
}

/// `GET` on a gateway URL: the WebSocket upgrade.
pub(crate) async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Arc<Shared>>,
) -> Result<HttpResponse, actix_web::Error> {
    let shared = Arc::clone(shared.get_ref());
    let now = Instant::now();
    let on_resume_url = shared.is_resume_listener(req.app_config().local_addr());
    if !gateway_path(req.path(), on_resume_url) {
        return Ok(crate::rest::not_found_response());
    }
    {
        let mut state = shared.lock();
        if state.stopping || state.outage_until.is_some_and(|until| until > now) {
            crate::observe::push_bounded(
                &mut state.observed.refused_upgrades,
                RefusedUpgrade {
                    path: req.path().to_owned(),
                    on_resume_url,
                    at: shared.elapsed(),
                },
            );
            return Ok(HttpResponse::ServiceUnavailable()
                .insert_header(("retry-after", "1"))
                .json(json!({"message": "503: Service Unavailable", "code": 0})));
        }
    }
    let mut response = match actix_http::ws::handshake(req.head()) {
        Ok(response) => response,
        Err(e) => return Ok(actix_http::Response::from(e).into()),
    };
    let query = GatewayQuery::parse(req.query_string());
    let path = req.path().to_owned();
    let compression = match query.compress.as_deref() {
        Some("zlib-stream") => Ok(Compression::ZlibStream),
        Some("zstd-stream") => Ok(Compression::ZstdStream),
        None | Some("") => Ok(Compression::None),
        Some(_) => Err((4002, "unknown compress value")),
    };
    // Refusals that Discord answers after the upgrade, with a close code.
    let refusal = match (&compression, query.version, query.encoding.as_deref()) {
        (_, v, _) if !v.is_some_and(|v| shared.config.api_versions.contains(&v)) => {
            Some((4012, "invalid api version"))
        }
        (_, _, Some(e)) if e != "json" => {
            Some((4002, "only encoding=json is supported by discore-mock"))
        }
        (Err(refusal), _, _) => Some(*refusal),
        _ => None,
    };
    let compression = compression.unwrap_or_default();

    let (out_tx, out_rx) = mpsc::channel(8);
    let abort = Arc::new(AtomicBool::new(false));
    let body = actix_web::body::BodyStream::new(Outgoing {
        rx: out_rx,
        abort: Arc::clone(&abort),
        shared: Arc::clone(&shared),
    });
    let response: HttpResponse = response.message_body(body.boxed())?.into();

    let wake = Arc::new(Notify::new());
    let written = Arc::new(Written::default());
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let at = shared.elapsed();
    let (id, reconnect_first) = {
        let mut state = shared.lock();
        let id = state.next_connection_id();
        state.connections.insert(
            id,
            ConnHandle {
                wake: Arc::clone(&wake),
                control: control_tx,
                session: None,
                shard: None,
                written: Arc::clone(&written),
            },
        );
        crate::observe::push_bounded_if(
            &mut state.observed.connections,
            ConnectionRecord {
                id,
                path: path.clone(),
                on_resume_url,
                query: req.query_string().to_owned(),
                version: query.version,
                compression,
                opened_at: at,
                closed_at: None,
                end: None,
                shard: None,
                session_id: None,
                received: Vec::new(),
                received_count: 0,
                dispatches_sent: 0,
                first_sequence_written: None,
                last_sequence_written: None,
                close_sent: None,
                close_received: None,
            },
            |record| !record.is_open(),
        );
        state.purge(now);
        let reconnect_first = refusal.is_none() && state.reconnect_instead_of_hello > 0;
        if reconnect_first {
            state.reconnect_instead_of_hello -= 1;
        }
        (id, reconnect_first)
    };
    log::debug!("{id} opened on {path} ({compression:?})");
    let encoder = Encoder::new(compression, shared.config.max_frame_payload)
        .map_err(actix_web::error::ErrorInternalServerError)?;
    let timeout = shared.config.heartbeat_timeout();
    let connection = Connection {
        id,
        on_resume_url,
        version: query.version.unwrap_or(limits::API_VERSION),
        encoder,
        incoming: Incoming {
            payload,
            buf: BytesMut::new(),
            codec: Codec::new().max_size(MAX_FRAME),
        },
        out_tx,
        abort,
        out_queue: VecDeque::new(),
        out_bytes: 0,
        pending: BytesMut::new(),
        pending_sequences: (0, 0),
        written,
        session_written: None,
        wake,
        timer: Box::pin(tokio::time::sleep_until((now + timeout).into())),
        control: control_rx,
        session_id: None,
        shard: None,
        intents: 0,
        heartbeat_deadline: now + timeout,
        acks: true,
        send_limit: SlidingWindow::new(shared.config.send_limit, shared.config.send_window),
        presence_limit: SlidingWindow::new(
            shared.config.presence_limit,
            shared.config.presence_window,
        ),
        held_resume: None,
        stall_until: None,
        delay: None,
        reconnect_deadline: None,
        flood: None,
        outbox_pending: false,
        batch: BATCH,
        heartbeat_overdue: false,
        fragment: None,
        close_received: None,
        shutting_down: false,
        shared,
    };
    actix_web::rt::spawn(connection.run(refusal, reconnect_first));
    Ok(response)
}
