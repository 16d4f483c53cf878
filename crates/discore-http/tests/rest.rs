//! The REST client against a scripted local HTTP server: parsing, the
//! Authorization header, 401, 429 retries, server errors and bad bodies.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use discore_http::{HttpError, RestClient};
use discore_protocol::Token;
use std::{
    collections::VecDeque,
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

const SECRET: &str = "MTIz.secret-part.xyz";

/// One scripted answer: status, body, optional Retry-After header.
type Answer = (u16, &'static str, Option<&'static str>);

/// What the server saw: path and Authorization header of each request.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Script {
    answers: Mutex<VecDeque<Answer>>,
    seen: Seen,
}

async fn respond(request: HttpRequest, script: web::Data<Script>) -> HttpResponse {
    let auth = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    script
        .seen
        .lock()
        .expect("lock")
        .push((request.path().to_owned(), auth));
    let (status, body, retry_after) =
        script
            .answers
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or((500, "script exhausted", None));
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("valid status"));
    if let Some(wait) = retry_after {
        response.insert_header(("Retry-After", wait));
    }
    response.content_type("application/json").body(body)
}

/// Starts a server answering `answers` in order; returns the client and
/// what the server saw.
fn serve(answers: Vec<Answer>) -> (RestClient, Seen) {
    let seen: Seen = Arc::default();
    let script = web::Data::new(Script {
        answers: Mutex::new(answers.into()),
        seen: Arc::clone(&seen),
    });
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(script.clone())
            .default_service(web::to(respond))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    actix_rt::spawn(server);
    let client = RestClient::builder(Token::new(SECRET).expect("valid token"))
        .base_url(format!("http://127.0.0.1:{port}/api/v10/"))
        .retry_delay(Duration::from_millis(5))
        .max_attempts(3)
        .build()
        .expect("client");
    (client, seen)
}

const GATEWAY_BOT: &str = r#"{"url":"ws://127.0.0.1:1/","shards":9,"session_start_limit":{"total":1000,"remaining":999,"reset_after":14400000,"max_concurrency":16}}"#;

#[actix_rt::test]
async fn gateway_bot_parses_and_sends_the_bot_token() {
    let (client, seen) = serve(vec![(200, GATEWAY_BOT, None)]);
    let info = client.gateway_bot().await.expect("gateway bot");
    assert_eq!(info.shards, 9);
    assert_eq!(info.url, "ws://127.0.0.1:1/");
    assert_eq!(info.session_start_limit.total, 1000);
    assert_eq!(info.session_start_limit.remaining, 999);
    assert_eq!(info.session_start_limit.reset_after, 14_400_000);
    assert_eq!(info.session_start_limit.max_concurrency, 16);
    let seen = seen.lock().expect("lock");
    assert_eq!(
        *seen,
        vec![(
            "/api/v10/gateway/bot".to_owned(),
            Some(format!("Bot {SECRET}"))
        )]
    );
}

#[actix_rt::test]
async fn gateway_needs_no_token() {
    let (client, seen) = serve(vec![(200, r#"{"url":"wss://gateway.discord.gg"}"#, None)]);
    let info = client.gateway().await.expect("gateway");
    assert_eq!(info.url, "wss://gateway.discord.gg");
    assert_eq!(
        seen.lock().expect("lock")[0],
        ("/api/v10/gateway".to_owned(), None)
    );
}

#[actix_rt::test]
async fn current_user_parses() {
    let user = r#"{"id":"1","username":"bot","discriminator":"0","global_name":null,"avatar":null,"bot":true,"mfa_enabled":false,"flags":0,"public_flags":0}"#;
    let (client, seen) = serve(vec![(200, user, None)]);
    let me = client.current_user().await.expect("current user");
    assert_eq!(me.name, "bot");
    assert!(me.bot);
    assert_eq!(seen.lock().expect("lock")[0].0, "/api/v10/users/@me");
}

#[actix_rt::test]
async fn unauthorized_is_clear_and_never_retried() {
    let (client, seen) = serve(vec![(
        401,
        r#"{"message":"401: Unauthorized","code":0}"#,
        None,
    )]);
    let error = client.gateway_bot().await.expect_err("401");
    assert_eq!(error, HttpError::Unauthorized);
    assert!(!error.to_string().contains("secret"));
    assert!(!format!("{error:?} {client:?}").contains("secret"));
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[actix_rt::test]
async fn rate_limit_is_waited_out_then_retried() {
    let limited = r#"{"message":"You are being rate limited.","retry_after":0.02,"global":false}"#;
    let (client, seen) = serve(vec![(429, limited, None), (200, GATEWAY_BOT, None)]);
    let info = client.gateway_bot().await.expect("second attempt succeeds");
    assert_eq!(info.shards, 9);
    assert_eq!(seen.lock().expect("lock").len(), 2);
}

#[actix_rt::test]
async fn rate_limit_header_is_used_without_a_body() {
    let (client, seen) = serve(vec![(429, "", Some("0.01")), (200, GATEWAY_BOT, None)]);
    client.gateway_bot().await.expect("second attempt succeeds");
    assert_eq!(seen.lock().expect("lock").len(), 2);
}

#[actix_rt::test]
async fn rate_limit_gives_up_after_the_attempts() {
    let limited = r#"{"message":"slow down","retry_after":0.01,"global":true}"#;
    let (client, seen) = serve(vec![(429, limited, None); 5]);
    let error = client.gateway_bot().await.expect_err("still limited");
    let HttpError::RateLimited {
        attempts,
        retry_after,
        ..
    } = error
    else {
        panic!("expected RateLimited, got {error:?}");
    };
    assert_eq!(attempts, 3);
    assert_eq!(retry_after, Duration::from_millis(10));
    assert_eq!(seen.lock().expect("lock").len(), 3);
}

#[actix_rt::test]
async fn long_rate_limit_is_returned_at_once() {
    let limited = r#"{"message":"slow down","retry_after":3600,"global":false}"#;
    let (client, seen) = serve(vec![(429, limited, None), (200, GATEWAY_BOT, None)]);
    let error = client.gateway_bot().await.expect_err("too long to wait");
    assert!(matches!(
        error,
        HttpError::RateLimited { attempts: 1, retry_after, .. } if retry_after == Duration::from_secs(3600)
    ));
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[actix_rt::test]
async fn server_errors_are_retried() {
    let (client, seen) = serve(vec![
        (502, "", None),
        (503, "", None),
        (200, GATEWAY_BOT, None),
    ]);
    client.gateway_bot().await.expect("third attempt succeeds");
    assert_eq!(seen.lock().expect("lock").len(), 3);
}

#[actix_rt::test]
async fn other_statuses_carry_discords_message() {
    let (client, _) = serve(vec![(
        403,
        r#"{"message":"Missing Access","code":50001}"#,
        None,
    )]);
    let error = client.gateway_bot().await.expect_err("403");
    assert_eq!(
        error,
        HttpError::Status {
            route: "/gateway/bot".into(),
            status: 403,
            message: Some("Missing Access".into()),
        }
    );
}

#[actix_rt::test]
async fn bad_json_is_an_invalid_body() {
    let (client, _) = serve(vec![(200, r#"{"url":"x","shards":"many"}"#, None)]);
    let error = client.gateway_bot().await.expect_err("bad body");
    assert!(matches!(error, HttpError::InvalidBody { .. }), "{error:?}");
}

#[actix_rt::test]
async fn refused_connection_is_a_transport_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let client = RestClient::builder(Token::new(SECRET).expect("valid"))
        .base_url(format!("http://127.0.0.1:{port}/api/v10"))
        .retry_delay(Duration::from_millis(1))
        .max_attempts(2)
        .build()
        .expect("client");
    let error = client.gateway_bot().await.expect_err("nothing listens");
    assert!(matches!(error, HttpError::Transport { .. }), "{error:?}");
    assert!(error.is_transient());
}
