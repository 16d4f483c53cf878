use crate::harness::*;
use discore::{
    GetShardStatus, Intents, Lifecycle, ShardConfig, ShardFailureReason, ShardStartError,
    ShardState,
};
use discore_mock::{MockServer, Target};
use std::time::Duration;

async fn start_error(config: ShardConfig) -> ShardStartError {
    shard(config, &Recorded::start())
        .start()
        .await
        .expect_err("the gateway refuses this shard")
}

/// A fatal close code stops the shard with its reason, and it never
/// connects again.
#[actix_rt::test]
async fn fatal_close_codes_fail_without_reconnecting() {
    let cases = [
        (4004, ShardFailureReason::AuthenticationFailed),
        (4010, ShardFailureReason::ShardInvalid),
        (4011, ShardFailureReason::ShardingRequired),
        (4012, ShardFailureReason::InvalidApiVersion),
        (4013, ShardFailureReason::InvalidIntents),
        // The shard asked for MESSAGE_CONTENT, its one privileged intent.
        (
            4014,
            ShardFailureReason::DisallowedIntents {
                requested: Intents::MESSAGE_CONTENT,
            },
        ),
    ];
    for (code, reason) in cases {
        let (mock, recorded, shard) = ready_shard().await;
        assert_eq!(mock.close(&Target::Shard(0), code), 1);
        recorded.wait_for_lifecycle(Lifecycle::Failed(reason)).await;
        let status = shard.send(GetShardStatus).await.expect("status");
        assert_eq!(status.state, ShardState::Failed(reason), "{code}");
        assert_eq!(status.last_close_code, Some(code));
        // Long enough for several backoff rounds of the test configuration.
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            mock.observed().connections.len(),
            1,
            "{code}: no new connection"
        );
        mock.stop().await;
    }
}

/// A wrong token fails the start with AuthenticationFailed.
#[actix_rt::test]
async fn wrong_token_fails_the_start() {
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    let error = discore::Shard::new(
        discore::Token::new("not-the-token").expect("valid shape"),
        discore::ShardId::new(0, 1),
        shard_config(&mock),
    )
    .start()
    .await
    .expect_err("refused");
    assert_eq!(
        error.reason(),
        Some(ShardFailureReason::AuthenticationFailed)
    );
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.observed().connections.len(), 1, "no retry after 4004");
}

/// Privileged intents the application lacks fail with DisallowedIntents.
#[actix_rt::test]
async fn disallowed_intents_fail_the_start() {
    let mock = MockServer::start(mock_config().granted_intents(Intents::empty()))
        .await
        .expect("emulator");
    let error = start_error(shard_config(&mock).intents(Intents::GUILD_MEMBERS)).await;
    assert_eq!(
        error,
        ShardStartError::Failed(ShardFailureReason::DisallowedIntents {
            requested: Intents::GUILD_MEMBERS
        })
    );
    assert_eq!(
        error.to_string(),
        "the gateway refused the shard: privileged intent GUILD_MEMBERS not enabled for this \
         bot (4014): enable it in the Developer Portal, or drop the intent"
    );
}

/// Undocumented intent bits fail with InvalidIntents.
#[actix_rt::test]
async fn invalid_intents_fail_the_start() {
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    let intents = Intents::from_bits_retain(1 << 18);
    let error = start_error(shard_config(&mock).intents(intents)).await;
    assert_eq!(
        error,
        ShardStartError::Failed(ShardFailureReason::InvalidIntents)
    );
}

/// An API version the gateway does not serve fails with InvalidApiVersion.
#[actix_rt::test]
async fn invalid_api_version_fails_the_start() {
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    let error = start_error(shard_config(&mock).api_version(42)).await;
    assert_eq!(
        error,
        ShardStartError::Failed(ShardFailureReason::InvalidApiVersion)
    );
}

/// Too many guilds for one shard fails with ShardingRequired.
#[actix_rt::test]
async fn too_many_guilds_fail_with_sharding_required() {
    let mock = MockServer::start(mock_config().guilds(5).max_guilds_per_shard(2))
        .await
        .expect("emulator");
    let error = start_error(shard_config(&mock)).await;
    assert_eq!(
        error,
        ShardStartError::Failed(ShardFailureReason::ShardingRequired)
    );
}

/// A gateway URL that does not parse is refused before any connection.
#[actix_rt::test]
async fn invalid_gateway_url_is_refused() {
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    for url in ["not a url", "https://example.com", "ws://"] {
        let error = start_error(shard_config(&mock).gateway_url(url)).await;
        assert!(
            matches!(error, ShardStartError::InvalidGatewayUrl(_)),
            "{url}: {error:?}"
        );
    }
    assert!(mock.observed().connections.is_empty());
}

/// A gateway nobody answers fails the start after the configured attempts.
#[actix_rt::test]
async fn unreachable_gateway_fails_after_the_attempts() {
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = shard_config(&mock)
        .gateway_url(format!("ws://127.0.0.1:{port}"))
        .start_attempts(3);
    let error = start_error(config).await;
    assert_eq!(error, ShardStartError::Unreachable { attempts: 3 });
}
