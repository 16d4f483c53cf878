//! Bot libraries other than discore, unchanged, against the `discore-mock`
//! binary: discord.py (`Client` and `AutoShardedClient`), discord.js 14,
//! @discordjs/ws 2 and twilight-gateway, in every transport compression
//! each supports. Each must see READY, every guild, messages created
//! through REST (its own, through its own REST client, and the test's), and
//! a resume with the missed dispatches replayed after op 7 and after a
//! dropped connection; see `scenario.rs`.
//!
//! The Python and Node libraries are pinned in `python/requirements.txt`
//! and `node/package-lock.json`, installed by `.ci/run` (a venv in
//! `python/.venv`, `npm ci` in `node/`). A missing interpreter or package
//! fails these tests; it never skips them. Logs of each case (the
//! emulator's and the bot's) go to `target/tmp/thirdparty/`.

mod bot;
mod emulator;
mod scenario;
mod twilight;

use bot::Bot;
use discore_mock::Compression;
use emulator::{Emulator, TOKEN, log_path};
use scenario::Case;
use std::{path::PathBuf, process::Command, time::Duration};

/// Generous: a busy 2-core machine can be slow, and a passing case never
/// waits this long for one step.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Guilds of the world: enough for both shards to own some.
const GUILDS: u32 = 4;

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/thirdparty")
}

/// The venv's interpreter, which `.ci/run` creates.
fn python() -> Command {
    let python = here().join("python/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: create the venv as .ci/run does \
         (python3 -m venv {dir}/.venv && {dir}/.venv/bin/pip install -r {dir}/requirements.txt)",
        python.display(),
        dir = here().join("python").display(),
    );
    let mut command = Command::new(python);
    command.arg(here().join("python/bot.py"));
    command
}

/// `node <flags> <script>` in `node/`, with the packages `npm ci`
/// installed there.
fn node(flags: &[&str], script: &str) -> Command {
    let modules = here().join("node/node_modules");
    assert!(
        modules.join("discord.js").exists() && modules.join("@discordjs/ws").exists(),
        "{} is missing the pinned packages: run `npm ci` there, as .ci/run does",
        here().join("node").display(),
    );
    let mut command = Command::new("node");
    command.current_dir(here().join("node"));
    command.args(flags).arg(script);
    command
}

fn env(command: &mut Command, emulator: &Emulator, case: &Case) {
    command
        .env("DISCORE_TOKEN", TOKEN)
        .env("DISCORE_GATEWAY", &emulator.gateway)
        .env("DISCORE_SHARDS", case.shards.to_string())
        .env(
            "DISCORE_COMPRESSION",
            match case.compression {
                Compression::ZlibStream => "zlib-stream",
                Compression::ZstdStream => "zstd-stream",
                _ => "none",
            },
        );
}

async fn discord_py(case: Case) {
    let emulator = Emulator::start(case.name, GUILDS, case.shards);
    let mut command = python();
    env(&mut command, &emulator, &case);
    command.env("DISCORE_REST", emulator.rest());
    let mut bot = Bot::spawn(command, log_path(case.name, "bot"));
    scenario::run(&case, &emulator, &mut bot).await;
    bot.stop();
    emulator.stop();
}

async fn discord_js(case: Case, script: &str) {
    let emulator = Emulator::start(case.name, GUILDS, case.shards);
    // discord.js 14 uses zlib-stream whenever zlib-sync loads.
    let flags: &[&str] = if script == "djs-bot.js" && case.compression == Compression::None {
        &["--require", "./block-zlib-sync.js"]
    } else {
        &[]
    };
    let mut command = node(flags, script);
    env(&mut command, &emulator, &case);
    command.env("DISCORE_REST", emulator.api_root());
    let mut bot = Bot::spawn(command, log_path(case.name, "bot"));
    scenario::run(&case, &emulator, &mut bot).await;
    bot.stop();
    emulator.stop();
}

#[actix_rt::test]
async fn discord_py_client_zlib_stream() {
    discord_py(Case {
        name: "discord-py-client-zlib",
        shards: 1,
        compression: Compression::ZlibStream,
    })
    .await;
}

#[actix_rt::test]
async fn discord_py_client_zstd_stream() {
    discord_py(Case {
        name: "discord-py-client-zstd",
        shards: 1,
        compression: Compression::ZstdStream,
    })
    .await;
}

#[actix_rt::test]
async fn discord_py_autosharded_zlib_stream() {
    discord_py(Case {
        name: "discord-py-autosharded-zlib",
        shards: 2,
        compression: Compression::ZlibStream,
    })
    .await;
}

#[actix_rt::test]
async fn discord_py_autosharded_zstd_stream() {
    discord_py(Case {
        name: "discord-py-autosharded-zstd",
        shards: 2,
        compression: Compression::ZstdStream,
    })
    .await;
}

#[actix_rt::test]
async fn discord_js_zlib_stream() {
    discord_js(
        Case {
            name: "discord-js-zlib",
            shards: 1,
            compression: Compression::ZlibStream,
        },
        "djs-bot.js",
    )
    .await;
}

#[actix_rt::test]
async fn discord_js_no_compression() {
    discord_js(
        Case {
            name: "discord-js-none",
            shards: 1,
            compression: Compression::None,
        },
        "djs-bot.js",
    )
    .await;
}

#[actix_rt::test]
async fn discordjs_ws_zlib_stream() {
    discord_js(
        Case {
            name: "discordjs-ws-zlib",
            shards: 2,
            compression: Compression::ZlibStream,
        },
        "ws-bot.js",
    )
    .await;
}

#[actix_rt::test]
async fn discordjs_ws_no_compression() {
    discord_js(
        Case {
            name: "discordjs-ws-none",
            shards: 2,
            compression: Compression::None,
        },
        "ws-bot.js",
    )
    .await;
}

#[actix_rt::test]
async fn twilight_gateway_zstd_stream() {
    let case = Case {
        name: "twilight-zstd",
        shards: 2,
        compression: Compression::ZstdStream,
    };
    let emulator = Emulator::start(case.name, GUILDS, case.shards);
    let mut bot = twilight::start(&emulator, case.shards, log_path(case.name, "bot"));
    scenario::run(&case, &emulator, &mut bot).await;
    emulator.stop();
}
