//! What a user reads when something fails: every error of the gateway, the
//! fleet and REST says, in one line, what went wrong and what to do next,
//! and never shows the token.

use discore::{
    CommandError, ConfigError, Intents, InvalidToken, ManagerError, ReshardMode, ReshardRefusal,
    RouteError, ShardFailure, ShardFailureReason, ShardId, ShardStartError, http::HttpError,
};
use std::time::Duration;

/// The token of the live runs below: it must appear in no error text.
const TOKEN: &str = "never-printed-token";

/// Each text is one line and says what to do next (after the last colon).
fn check_shape(text: &str) {
    assert!(!text.contains('\n'), "one line: {text:?}");
    assert!(!text.contains(TOKEN), "no token: {text:?}");
    assert!(!text.ends_with('.'), "no full stop: {text:?}");
    let advice = text.rsplit(": ").next().unwrap_or_default();
    assert!(
        advice.len() >= 10 && advice != text,
        "ends with what to do: {text:?}"
    );
}

fn table() -> Vec<(String, &'static str)> {
    use ShardFailureReason as R;
    let intents = |requested| R::DisallowedIntents { requested };
    vec![
        // The gateway's fatal close codes.
        (
            R::AuthenticationFailed.to_string(),
            "the bot's token was refused (4004): check DISCORD_TOKEN",
        ),
        (
            R::ShardInvalid.to_string(),
            "the shard id or shard count was refused (4010): use the count GET /gateway/bot \
             recommends (ShardCount::Auto)",
        ),
        (
            R::ShardingRequired.to_string(),
            "this shard would hold too many guilds (4011): start more shards \
             (ShardCount::Auto, or re-shard)",
        ),
        (
            R::InvalidApiVersion.to_string(),
            "the gateway refused the API version (4012): check the gateway URL's v= parameter, \
             or update discore",
        ),
        (
            R::InvalidIntents.to_string(),
            "the intents have undocumented bits (4013): build them from Intents' named flags only",
        ),
        (
            intents(Intents::MESSAGE_CONTENT).to_string(),
            "privileged intent MESSAGE_CONTENT not enabled for this bot (4014): enable it in the \
             Developer Portal, or drop the intent",
        ),
        (
            intents(Intents::GUILD_MEMBERS | Intents::MESSAGE_CONTENT).to_string(),
            "privileged intents GUILD_MEMBERS, MESSAGE_CONTENT requested, not all enabled for \
             this bot (4014): enable them in the Developer Portal, or drop the ones not enabled",
        ),
        (
            intents(Intents::empty()).to_string(),
            "a privileged intent (GUILD_MEMBERS, GUILD_PRESENCES or MESSAGE_CONTENT) is not \
             enabled for this bot (4014): enable it in the Developer Portal, or drop the intent",
        ),
        // The token's shape.
        (
            InvalidToken::Empty.to_string(),
            "the token is empty: set DISCORD_TOKEN to the bot's token",
        ),
        (
            InvalidToken::ForbiddenCharacter.to_string(),
            "the token contains whitespace or a control character: copy it again from the \
             Developer Portal, without spaces or a newline",
        ),
        // Starting a shard.
        (
            ShardStartError::Failed(R::AuthenticationFailed).to_string(),
            "the gateway refused the shard: the bot's token was refused (4004): check DISCORD_TOKEN",
        ),
        (
            ShardStartError::InvalidGatewayUrl("no host".into()).to_string(),
            "invalid gateway url (no host): give a ws:// or wss:// url with a host, such as \
             wss://gateway.discord.gg",
        ),
        (
            ShardStartError::Unreachable { attempts: 5 }.to_string(),
            "the gateway could not be reached in 5 attempts: check the network and the gateway url",
        ),
        (
            ShardStartError::Stopped.to_string(),
            "the shard was stopped before it was ready: start a new one if the stop was not meant",
        ),
        (
            ShardStartError::IdentifyTooLarge { size: 5000 }.to_string(),
            "the identify payload is 5000 bytes, over the gateway's 4096-byte limit: shorten the \
             presence or the client properties",
        ),
        // Commands.
        (
            CommandError::TooLarge { size: 5000 }.to_string(),
            "command payload is 5000 bytes, over the gateway's 4096-byte limit: split it into \
             smaller commands",
        ),
        (
            CommandError::QueueFull { capacity: 2048 }.to_string(),
            "command queue is full (2048 commands waiting): send more slowly, or raise \
             ShardConfig::command_queue_capacity",
        ),
        (
            CommandError::InvalidRaw("not JSON".into()).to_string(),
            "invalid raw command (not JSON): send a JSON object with a user command's op and its d",
        ),
        (
            CommandError::Encode("a map key".into()).to_string(),
            "command failed to encode (a map key): check the command's fields",
        ),
        (
            CommandError::ShardStopped.to_string(),
            "the shard has stopped: send to a running shard (its exit cause says why it stopped)",
        ),
        // The fleet.
        (
            ManagerError::Discovery(HttpError::Unauthorized).to_string(),
            "asking Discord for the gateway (GET /gateway/bot) failed, so the fleet did not \
             start: fix the cause that follows",
        ),
        (
            ManagerError::InvalidConfig(ConfigError::NoShards).to_string(),
            "invalid manager configuration: a fleet needs at least one shard: use \
             ShardCount::Auto, or a count above 0",
        ),
        (
            ConfigError::RangeOutsideTotal {
                ids: 4..9,
                total: 8,
            }
            .to_string(),
            "shard range 4..9 of 8 is empty or exceeds the total: pick ids from 0 to 8 (excluded)",
        ),
        (
            ConfigError::RangeReshards {
                ids: 0..4,
                total: 8,
                mode: ReshardMode::Disabled,
            }
            .to_string()
            .replace("Disabled, not Disabled", "Disabled, not …"),
            "shards 0..4 of 8 are part of a bot, which re-shards as a whole: a range needs \
             ReshardMode::Disabled, not …",
        ),
        (
            ConfigError::GatewayUrl("http://x".into()).to_string(),
            "gateway url http://x is not a ws:// or wss:// url: give one with a host, such as \
             wss://gateway.discord.gg",
        ),
        (
            ManagerError::ReshardRefused(ReshardRefusal::PartOfBot {
                ids: 0..4,
                total: 8,
            })
            .to_string(),
            "cannot re-shard: this manager runs shards 0..4 of 8, part of a bot that re-shards \
             as a whole: restart every process of the bot with the new total",
        ),
        (
            ReshardRefusal::NotANewCount {
                current: 4,
                requested: 4,
            }
            .to_string(),
            "the fleet has 4 shards, so 4 is not a new count: ask for another count above 0",
        ),
        (
            ManagerError::Fatal(R::AuthenticationFailed).to_string(),
            "the fleet stopped: the bot's token was refused (4004): check DISCORD_TOKEN",
        ),
        (
            ManagerError::ShardFailed {
                shard: ShardId::new(3, 4),
                failure: ShardFailure::Fatal(R::ShardingRequired),
            }
            .to_string(),
            "shard [3, 4] stopped for good: this shard would hold too many guilds (4011): start \
             more shards (ShardCount::Auto, or re-shard)",
        ),
        (
            ShardFailure::RestartIntensity {
                restarts: 5,
                window: Duration::from_secs(60),
            }
            .to_string(),
            "crashed again after 5 restarts within 60s, so it is not restarted: find the crash \
             in the log, or relax SupervisionConfig's restart policy",
        ),
        (
            ManagerError::Stopped.to_string(),
            "the manager has stopped: start a new ShardManager to go on",
        ),
        (
            RouteError::NotOwned {
                shard: 9,
                owned: 0..4,
            }
            .to_string(),
            "shard 9 is not run by this manager (it runs 0..4): send it to the process that runs it",
        ),
        (
            RouteError::Unavailable { shard: 2 }.to_string(),
            "shard 2 is not running (restarting or failed): retry once it is back",
        ),
        (
            RouteError::Refused {
                shard: 1,
                error: CommandError::QueueFull { capacity: 8 },
            }
            .to_string(),
            "shard 1 refused the command: command queue is full (8 commands waiting): send more \
             slowly, or raise ShardConfig::command_queue_capacity",
        ),
        (
            RouteError::Stopping.to_string(),
            "the manager is stopping: send to the fleet that replaces it",
        ),
        // REST.
        (
            HttpError::Unauthorized.to_string(),
            "the bot's token was refused (401 Unauthorized): check DISCORD_TOKEN (a token reset \
             in the Developer Portal must be replaced)",
        ),
        (
            HttpError::RateLimited {
                route: "/gateway/bot".into(),
                retry_after: Duration::from_millis(1500),
                attempts: 3,
            }
            .to_string(),
            "rate limited on /gateway/bot after 3 attempts (Discord asks to wait 1.5s): retry \
             later, or allow more with RestClientBuilder::max_attempts and max_retry_after",
        ),
        (
            HttpError::Status {
                route: "/gateway/bot".into(),
                status: 502,
                message: None,
            }
            .to_string(),
            "request to /gateway/bot answered 502: Discord had a problem: retry later",
        ),
        (
            HttpError::Status {
                route: "/channels/1/messages".into(),
                status: 403,
                message: Some("Missing Access".into()),
            }
            .to_string(),
            "request to /channels/1/messages answered 403 (Missing Access): the bot lacks a \
             permission or access for this: grant it, or skip the call",
        ),
        (
            HttpError::Status {
                route: "/channels/1".into(),
                status: 404,
                message: Some("Unknown Channel".into()),
            }
            .to_string(),
            "request to /channels/1 answered 404 (Unknown Channel): check the ids in the route",
        ),
        (
            HttpError::Transport {
                route: "/gateway/bot".into(),
                reason: "connection refused".into(),
            }
            .to_string(),
            "request to /gateway/bot failed (connection refused): check the network and the \
             REST base url",
        ),
        (
            HttpError::InvalidBody {
                route: "/gateway/bot".into(),
                reason: "expected value".into(),
            }
            .to_string(),
            "unexpected response body from /gateway/bot (expected value): check that the REST \
             base url is Discord's API",
        ),
        (
            HttpError::InvalidBaseUrl("ftp://x".into()).to_string(),
            "invalid REST base url ftp://x: give an http:// or https:// url with a host, such \
             as https://discord.com/api/v10",
        ),
        (
            HttpError::Tls("no roots".into()).to_string(),
            "TLS setup failed (no roots): check the TLS configuration and its root certificates",
        ),
    ]
}

#[test]
fn every_error_says_what_to_do_next() {
    for (text, expected) in table() {
        assert_eq!(text, expected);
        check_shape(&text);
    }
}

/// A live refusal by the emulator: the texts a user sees for a wrong token,
/// from the gateway and from REST, name what to do and not the token.
#[actix_rt::test]
async fn a_refused_token_is_told_without_the_token() {
    let mock = discore_mock::MockServer::start(discore_mock::MockConfig::new().guilds(1))
        .await
        .expect("the emulator starts");
    let token = discore::Token::new(TOKEN).expect("a token's shape");
    let start = actix_rt::time::timeout(
        Duration::from_secs(20),
        discore::Shard::new(
            token.clone(),
            ShardId::new(0, 1),
            discore::ShardConfig::new(Intents::GUILDS).gateway_url(mock.gateway_url()),
        )
        .start(),
    )
    .await
    .expect("refused in time");
    let error = start.expect_err("the emulator refuses the token");
    assert_eq!(
        error.to_string(),
        "the gateway refused the shard: the bot's token was refused (4004): check DISCORD_TOKEN"
    );
    assert!(!format!("{error:?}").contains(TOKEN));

    let rest = discore::http::RestClient::builder(token)
        .base_url(mock.rest_url())
        .build()
        .expect("a client");
    let error = actix_rt::time::timeout(Duration::from_secs(20), rest.gateway_bot())
        .await
        .expect("answered in time")
        .expect_err("the emulator refuses the token");
    assert_eq!(error, HttpError::Unauthorized);
    check_shape(&error.to_string());
    assert!(!format!("{error:?}").contains(TOKEN));
    mock.stop().await;
}
