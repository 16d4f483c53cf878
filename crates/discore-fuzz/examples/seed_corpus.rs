//! Writes the seed corpus of every fuzz target into `fuzz/corpus/`: real
//! frames (Discord's documented payloads, their objects wrapped as the
//! dispatches that carry them), compressed streams as the gateway sends
//! them, close codes and connection scripts, and commands.
//!
//! ```sh
//! cargo run -p discore-fuzz --example seed_corpus -- PAYLOADS_DIR [CORPUS_DIR]
//! ```
//!
//! `PAYLOADS_DIR` is a directory of Discord's documented example payloads,
//! one JSON file each (the examples of Discord's Gateway Events pages, kept
//! outside the repository); `CORPUS_DIR` defaults to `fuzz/corpus`. Seeds
//! are named `seed-…`; what the fuzzer adds is named by content hash.

use discore_fuzz::{
    close::{Script, Step},
    commands::{Kind, start},
    inflate::frames,
};
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

/// Wraps each documented object into the dispatch that carries it.
const OBJECTS: &[(&str, &str, Option<&str>)] = &[
    ("auto_moderation_rule", "AUTO_MODERATION_RULE_CREATE", None),
    ("channel_category", "CHANNEL_CREATE", None),
    ("channel_dm", "CHANNEL_CREATE", None),
    ("channel_group_dm", "CHANNEL_UPDATE", None),
    ("channel_guild_announcement", "CHANNEL_CREATE", None),
    ("channel_guild_text", "CHANNEL_UPDATE", None),
    ("channel_guild_voice", "CHANNEL_DELETE", None),
    ("channel_thread", "THREAD_CREATE", None),
    ("emoji", "GUILD_EMOJIS_UPDATE", Some("emojis")),
    ("entitlement", "ENTITLEMENT_CREATE", None),
    ("guild", "GUILD_CREATE", None),
    ("guild_member", "GUILD_MEMBER_ADD", None),
    ("interaction_message_command", "INTERACTION_CREATE", None),
    ("interaction_slash_command", "INTERACTION_CREATE", None),
    ("interaction_user_command", "INTERACTION_CREATE", None),
    ("message", "MESSAGE_CREATE", None),
    ("message_crossposted", "MESSAGE_UPDATE", None),
    ("role", "GUILD_ROLE_CREATE", Some("role")),
    (
        "soundboard_sound_default",
        "GUILD_SOUNDBOARD_SOUND_CREATE",
        None,
    ),
    (
        "soundboard_sound_guild",
        "GUILD_SOUNDBOARD_SOUND_UPDATE",
        None,
    ),
    ("stage_instance", "STAGE_INSTANCE_CREATE", None),
    ("sticker", "GUILD_STICKERS_UPDATE", Some("stickers")),
    ("subscription", "SUBSCRIPTION_CREATE", None),
    ("unavailable_guild", "GUILD_DELETE", None),
    ("user", "USER_UPDATE", None),
    ("voice_state", "VOICE_STATE_UPDATE", None),
];

/// Frames written by hand: the shapes the shard must handle.
const FRAMES: &[&str] = &[
    r#"{"op":10,"d":{"heartbeat_interval":41250,"_trace":["gateway-prd-1"]}}"#,
    r#"{"t":null,"s":null,"op":11,"d":null}"#,
    r#"{"op":1,"d":null}"#,
    r#"{"op":7,"d":null}"#,
    r#"{"op":9,"d":true}"#,
    r#"{"op":9,"d":false}"#,
    r#"{"t":"READY","s":1,"op":0,"d":{"v":10,"user":{"id":"1","username":"bot","discriminator":"0","global_name":null,"avatar":null,"bot":true},"guilds":[{"id":"41771983423143937","unavailable":true}],"session_id":"f0e1d2c3b4a59687","resume_gateway_url":"wss://gateway-us-east1-b.discord.gg","shard":[0,1],"application":{"id":"1","flags":0}}}"#,
    r#"{"t":"READY","s":1,"op":0,"d":{"guilds":[]}}"#,
    r#"{"t":"RESUMED","s":42,"op":0,"d":null}"#,
    r#"{"t":"TYPING_START","s":3,"op":0,"d":{"channel_id":"1","guild_id":"2","user_id":"3","timestamp":1700000000}}"#,
    r#"{"t":"SOUNDBOARD_SOUNDS","s":4,"op":0,"d":{"guild_id":"1","soundboard_sounds":[]}}"#,
    r#"{"t":"RATE_LIMITED","s":5,"op":0,"d":{"opcode":8,"retry_after":12.5,"meta":{"guild_id":"1","nonce":"n"}}}"#,
    r#"{"t":"MESSAGE_CREATE","s":6,"op":0,"d":{"unexpected":true}}"#,
    r#"{"op":0,"d":{"channel_id":"1","user_id":"3","timestamp":1},"s":7,"t":"TYPING_START"}"#,
    r#"{"t":"X","s":8,"op":0,"d":{"a":[1,{"b":null}]},"extra":{"d":2}}"#,
    r#"{"t":"X","s":9,"op":0,"d":{"a":1}"#,
    r#"{"t":"X","s":10,"op":0,"d":{"a":}}"#,
    r#"{"t":"X","s":11,"op":0,"d":{"a":1}}}"#,
    r#"{"t":"X\u0041","s":12,"op":0,"d":{}}"#,
    r#"{"t":"X","s":1.5,"op":0,"d":{}}"#,
    r#"{"t":"X","s":-1,"op":0,"d":{}}"#,
    r#"{"t":"X","s":18446744073709551615,"op":0,"d":{}}"#,
    r#"{"t":"X","s":18446744073709551616,"op":0,"d":{}}"#,
    r#"{"op":0,"t":"NO_SEQUENCE","d":{}}"#,
    r#"{"op":255,"d":[]}"#,
    r#"{"op":256}"#,
    r#"{"op":"0"}"#,
    r#" { "op" : 0 , "s" : 1 , "t" : "TYPING_START" , "d" : { } } "#,
    r#"{"op":0,"s":2,"t":"X","d":null}"#,
    r#"{"op":0,"op":1}"#,
    "[]",
    "null",
    "",
];

fn main() -> std::io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let Some(payloads) = args.next().map(PathBuf::from) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: seed_corpus PAYLOADS_DIR [CORPUS_DIR] (a directory of Discord's example payloads, one JSON file each)",
        ));
    };
    let corpus = args
        .next()
        .map_or_else(|| root.join("fuzz/corpus"), PathBuf::from);

    let frames_seen = envelope_seeds(&payloads, &corpus.join("envelope"))?;
    inflate_seeds(&frames_seen, &corpus)?;
    close_seeds(&corpus.join("close"))?;
    command_seeds(&payloads, &corpus.join("commands"))?;
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::File::create(dir.join(format!("seed-{name}")))?.write_all(bytes)
}

/// Every frame seed, also returned for the compressed streams.
fn envelope_seeds(payloads: &Path, dir: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut all = Vec::new();
    let mut names: Vec<PathBuf> = fs::read_dir(payloads)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    for path in names {
        let text = fs::read(&path)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("doc");
        if stem.ends_with(".d") {
            // Only the data of VOICE_SERVER_UPDATE.
            let frame = dispatch("VOICE_SERVER_UPDATE", 20, &text);
            write(dir, "voice_server_update", &frame)?;
            all.push(frame);
            continue;
        }
        write(dir, &format!("doc-{stem}"), &text)?;
        all.push(text);
    }
    for (sequence, (file, event, wrap)) in (100..).zip(OBJECTS) {
        let Ok(object) = fs::read(payloads.join("objects").join(format!("{file}.json"))) else {
            continue;
        };
        let object = String::from_utf8_lossy(&object).trim().to_owned();
        let data = match wrap {
            Some("emojis" | "stickers") => {
                format!(
                    r#"{{"guild_id":"41771983423143937","{}":[{object}]}}"#,
                    wrap.unwrap_or_default()
                )
            }
            Some(field) => format!(r#"{{"guild_id":"41771983423143937","{field}":{object}}}"#),
            None => object,
        };
        let frame = dispatch(event, sequence, data.as_bytes());
        write(dir, &format!("object-{file}"), &frame)?;
        // The same frame in another member order: the strict parser's path.
        let reordered = format!(r#"{{"op":0,"d":{data},"s":{sequence},"t":"{event}"}}"#);
        write(
            dir,
            &format!("object-{file}-reordered"),
            reordered.as_bytes(),
        )?;
        all.push(frame);
    }
    for (index, frame) in FRAMES.iter().enumerate() {
        write(dir, &format!("frame-{index:02}"), frame.as_bytes())?;
        all.push(frame.as_bytes().to_vec());
    }
    let nested = format!(
        r#"{{"t":"X","s":1,"op":0,"d":{}{}}}"#,
        "[".repeat(2000),
        "]".repeat(2000)
    );
    write(dir, "nested", nested.as_bytes())?;
    write(
        dir,
        "not-utf8",
        b"{\"op\":0,\"t\":\"\xff\",\"s\":1,\"d\":{}}",
    )?;
    Ok(all)
}

fn dispatch(event: &str, sequence: u64, data: &[u8]) -> Vec<u8> {
    let mut frame = format!(r#"{{"t":"{event}","s":{sequence},"op":0,"d":"#).into_bytes();
    frame.extend_from_slice(data.trim_ascii());
    frame.push(b'}');
    frame
}

/// Compressed streams of the frame seeds, as the gateway sends them, plus
/// round-trip inputs, bombs and corruptions.
fn inflate_seeds(all: &[Vec<u8>], corpus: &Path) -> std::io::Result<()> {
    use flate2::{Compress, FlushCompress};

    let zlib_dir = corpus.join("zlib_stream");
    let zstd_dir = corpus.join("zstd_stream");
    // A connection's worth: the frames in order, one stream each kind.
    for (name, frames_of) in [("session", all), ("first", &all[..all.len().min(6)])] {
        let mut compress = Compress::new(flate2::Compression::default(), true);
        let zlib: Vec<Vec<u8>> = frames_of
            .iter()
            .map(|frame| {
                let mut out = Vec::with_capacity(frame.len() * 2 + 64);
                compress
                    .compress_vec(frame, &mut out, FlushCompress::Sync)
                    .expect("compresses");
                out
            })
            .collect();
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3)?;
        let zstd: Vec<Vec<u8>> = frames_of
            .iter()
            .map(|frame| {
                encoder.write_all(frame)?;
                encoder.flush()?;
                Ok(std::mem::take(encoder.get_mut()))
            })
            .collect::<std::io::Result<_>>()?;
        for settings in [2u8, 3] {
            write(
                &zlib_dir,
                &format!("{name}-{settings}"),
                &frames(settings, zlib.iter().map(Vec::as_slice)),
            )?;
            write(
                &zstd_dir,
                &format!("{name}-{settings}"),
                &frames(settings, zstd.iter().map(Vec::as_slice)),
            )?;
        }
        // zlib-stream: a message split over two WebSocket messages.
        if let Some(big) = zlib.iter().max_by_key(|m| m.len()) {
            let (head, tail) = big.split_at(big.len() / 2);
            write(
                &zlib_dir,
                &format!("{name}-split"),
                &frames(2, [head, tail]),
            )?;
        }
        // Corrupted: one byte flipped in the middle of the stream.
        for (dir, messages) in [(&zlib_dir, &zlib), (&zstd_dir, &zstd)] {
            let mut corrupt = messages.clone();
            if let Some(message) = corrupt.get_mut(1).filter(|m| m.len() > 8) {
                let at = message.len() / 2;
                message[at] ^= 0x5a;
            }
            write(
                dir,
                &format!("{name}-corrupt"),
                &frames(2, corrupt.iter().map(Vec::as_slice)),
            )?;
        }
        // Round trip: payloads, each with its split byte.
        let plain: Vec<Vec<u8>> = frames_of
            .iter()
            .enumerate()
            .map(|(index, frame)| {
                let mut message = vec![u8::try_from(index * 37 % 256).unwrap_or(0)];
                message.extend_from_slice(frame);
                message
            })
            .collect();
        for settings in [4 | 2, 4 | 1 | (9 << 3), 4 | (1 << 3)] {
            let input = frames(settings, plain.iter().map(Vec::as_slice));
            write(&zlib_dir, &format!("{name}-round-trip-{settings}"), &input)?;
            write(&zstd_dir, &format!("{name}-round-trip-{settings}"), &input)?;
        }
    }
    // Bombs: small frames that inflate far past the maximum.
    let zeros = vec![b'0'; 1 << 20];
    let mut compress = Compress::new(flate2::Compression::best(), true);
    let mut bomb = Vec::with_capacity(1 << 16);
    compress
        .compress_vec(&zeros, &mut bomb, FlushCompress::Sync)
        .expect("compresses");
    write(&zlib_dir, "bomb", &frames(1, [&bomb[..]]))?;
    let bomb = zstd::encode_all(&zeros[..], 19)?;
    write(&zstd_dir, "bomb", &frames(1, [&bomb[..]]))?;
    for dir in [&zlib_dir, &zstd_dir] {
        write(
            dir,
            "garbage",
            &frames(
                1,
                [
                    &b"\x78\x9c\x13\x37\x00\x00\xff\xff"[..],
                    b"\x28\xb5\x2f\xfd\x00",
                ],
            ),
        )?;
        write(dir, "empty", &frames(0, [&b""[..]]))?;
    }
    Ok(())
}

/// Connection scripts around every kind of close.
fn close_seeds(dir: &Path) -> std::io::Result<()> {
    let identified = || {
        Script::new(20, 300, 5, None)
            .step(Step::Connected)
            .hello(1000)
            .step(Step::IdentifyPermit)
            .ready(1, "session-1", true)
            .step_u8(Step::Dispatch, 2)
            .step_u8(Step::Dispatch, 3)
    };
    let mut codes: Vec<u16> = discore_protocol::CloseCode::GATEWAY_CODES
        .iter()
        .map(|code| code.code())
        .collect();
    codes.extend([
        1000, 1001, 1002, 1003, 1005, 1006, 1011, 1015, 3000, 4006, 4015, 4999, 5000, 0, 65535,
    ]);
    for code in codes {
        let script = identified()
            .close_frame(code, b"closed by the fuzzer seed")
            .step(Step::Connected)
            .hello(1000)
            .step(Step::IdentifyPermit)
            .step_u8(Step::Resumed, 4)
            .finish();
        write(dir, &format!("close-{code}"), &script)?;
    }
    let scripts = [
        (
            "empty-close",
            identified()
                .close_frame(4000, b"")
                .step(Step::Connected)
                .finish(),
        ),
        (
            "invalid-utf8-reason",
            identified().close_frame(4004, b"\xff\xfe").finish(),
        ),
        (
            "transport-lost-then-failures",
            identified()
                .step(Step::TransportLost)
                .step(Step::ConnectFailed)
                .step(Step::ConnectFailed)
                .step(Step::ConnectFailed)
                .step(Step::ConnectFailed)
                .step(Step::ConnectFailed)
                .step(Step::ConnectFailed)
                .step(Step::Connected)
                .hello(1000)
                .step(Step::IdentifyPermit)
                .finish(),
        ),
        (
            "zombie",
            identified()
                .time(1100, false)
                .time(1100, false)
                .step(Step::Connected)
                .hello(1000)
                .finish(),
        ),
        (
            "paused-reader",
            identified()
                .time(1100, true)
                .time(1100, true)
                .step(Step::HeartbeatAck)
                .finish(),
        ),
        (
            "hello-timeout",
            Script::new(20, 300, 5, None)
                .step(Step::Connected)
                .time(600, false)
                .step(Step::Connected)
                .hello(41250)
                .finish(),
        ),
        (
            "invalid-session",
            identified()
                .step_u8(Step::InvalidSession, 1)
                .step(Step::Connected)
                .hello(1000)
                .step_u8(Step::InvalidSession, 0)
                .step(Step::Connected)
                .hello(1000)
                .step(Step::IdentifyPermit)
                .finish(),
        ),
        (
            "reconnect-and-protocol-error",
            identified()
                .step(Step::Reconnect)
                .step(Step::Connected)
                .hello(1000)
                .step_u8(Step::ProtocolError, 1)
                .step(Step::Connected)
                .hello(1000)
                .step(Step::HeartbeatRequest)
                .finish(),
        ),
        (
            "handed-off",
            Script::new(1000, 60000, 5, Some("handed-off"))
                .step(Step::Connected)
                .hello(41250)
                .step_u8(Step::Resumed, 10)
                .step_u8(Step::Stop, 1)
                .finish(),
        ),
        (
            "stop-ends",
            identified()
                .step_u8(Step::Stop, 0)
                .step(Step::Connected)
                .finish(),
        ),
    ];
    for (name, script) in scripts {
        write(dir, name, &script)?;
    }
    Ok(())
}

/// Commands built from documented values.
fn command_seeds(payloads: &Path, dir: &Path) -> std::io::Result<()> {
    let activity =
        |out: discore_fuzz::input::Output, kind: u8, name: &[u8]| out.u8(kind).chunk(name).u8(0);
    let presence = |out: discore_fuzz::input::Output| {
        activity(out.u8(1), 0, b"Save the Oxford Comma")
            .u8(0)
            .u8(0)
            .u8(1)
            .u64(91_879_201)
    };
    let identify = start(Kind::Identify)
        .chunk(b"my_token")
        .u32(0)
        .u32(1)
        .u64(513)
        .u64(250)
        .chunk(b"linux")
        .chunk(b"my_library")
        .chunk(b"my_library")
        .u8(1);
    write(dir, "identify", &presence(identify).finish())?;
    let long = vec![b'p'; 3000];
    let big_identify = start(Kind::Identify)
        .chunk(b"my_token")
        .u32(3)
        .u32(16)
        .u64(3_276_799)
        .u64(50)
        .chunk(&long)
        .chunk(b"discore")
        .chunk(b"discore")
        .u8(0);
    write(dir, "identify-long-properties", &big_identify.finish())?;
    write(
        dir,
        "resume",
        &start(Kind::Resume)
            .chunk(b"randomstring")
            .chunk(b"evenmorerandomstring")
            .u64(1337)
            .finish(),
    )?;
    write(
        dir,
        "heartbeat",
        &start(Kind::Heartbeat).u8(1).u64(251).finish(),
    )?;
    write(
        dir,
        "heartbeat-null",
        &start(Kind::Heartbeat).u8(0).finish(),
    )?;
    write(
        dir,
        "presence",
        &presence(start(Kind::UpdatePresence)).finish(),
    )?;
    write(
        dir,
        "members-query",
        &start(Kind::RequestGuildMembers)
            .u64(41_771_983_444_115_456)
            .u8(1)
            .chunk(b"nonce-1")
            .u8(1)
            .u8(1)
            .u8(0)
            .chunk(b"")
            .u8(1)
            .u64(0)
            .finish(),
    )?;
    let ids = (1..=100u64).fold(
        start(Kind::RequestGuildMembers)
            .u64(41_771_983_444_115_456)
            .u8(0)
            .u8(0)
            .u8(2)
            .u8(100),
        |out, id| out.u64(id * 1_000_003),
    );
    write(dir, "members-ids", &ids.finish())?;
    write(
        dir,
        "voice",
        &start(Kind::UpdateVoiceState)
            .u64(41_771_983_423_143_937)
            .u64(127_121_515_262_115_840)
            .u8(0)
            .u8(1)
            .finish(),
    )?;
    write(
        dir,
        "soundboard",
        &start(Kind::RequestSoundboardSounds)
            .u16(2)
            .u64(613_425_648_685_547_541)
            .u64(81_384_788_765_712_384)
            .finish(),
    )?;
    write(
        dir,
        "channel-info",
        &start(Kind::RequestChannelInfo)
            .u64(613_425_648_685_547_541)
            .u16(2)
            .u8(1)
            .u8(0)
            .finish(),
    )?;
    for file in [
        "update_presence",
        "request_guild_members",
        "update_voice_state",
        "request_soundboard_sounds",
        "request_channel_info",
        "identify_minimal",
        "heartbeat",
    ] {
        if let Ok(text) = fs::read(payloads.join(format!("{file}.json"))) {
            write(
                dir,
                &format!("raw-{file}"),
                &start(Kind::Raw).raw(&text).finish(),
            )?;
        }
    }
    let oversized = format!(r#"{{"op":3,"d":{{"x":"{}"}}}}"#, "a".repeat(4100));
    write(
        dir,
        "raw-oversized",
        &start(Kind::Raw).raw(oversized.as_bytes()).finish(),
    )?;
    Ok(())
}
