//! How fast the emulator floods one loopback client with MESSAGE_CREATE.
//!
//! ```text
//! cargo run --release -p discore-mock --example flood_bench -- 200000 [zlib-stream|zstd-stream]
//! ```
//!
//! The client counts frames and (when compressed) inflates them with one
//! context, but does not parse JSON: this measures the emulator, not a
//! gateway client.

use actix_codec::Framed;
use awc::{
    BoxedSocket,
    ws::{Codec, Frame, Message},
};
use discore_mock::{MockConfig, MockServer, Target};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};

async fn next_frame(framed: &mut Framed<BoxedSocket, Codec>) -> anyhow::Result<Frame> {
    match tokio::time::timeout(Duration::from_secs(30), framed.next()).await? {
        Some(frame) => Ok(frame?),
        None => anyhow::bail!("connection ended"),
    }
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let compress = args.next();
    // BENCH_NO_INFLATE=1 leaves compressed frames undecoded (emulator cost only).
    let inflate_frames = std::env::var_os("BENCH_NO_INFLATE").is_none();
    let mock = MockServer::start(
        MockConfig::new()
            .guilds(10)
            .heartbeat_interval(Duration::from_secs(60)),
    )
    .await?;
    let query = match &compress {
        Some(c) => format!("v=10&encoding=json&compress={c}"),
        None => "v=10&encoding=json".to_owned(),
    };
    let (_, mut framed) = awc::Client::new()
        .ws(format!("{}/?{query}", mock.gateway_url()))
        .max_frame_size(64 << 20)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    let identify = r#"{"op":2,"d":{"token":"mock-token","intents":33281,"properties":{"os":"linux","browser":"bench","device":"bench"}}}"#;
    framed.send(Message::Text(identify.into())).await?;
    let mut inflate = flate2::Decompress::new(true);
    let mut zstd = zstd::stream::raw::Decoder::new()?;
    let mut scratch = vec![0_u8; 1 << 20];
    // Hello, READY, 10 GUILD_CREATEs.
    for _ in 0..12 {
        let frame = next_frame(&mut framed).await?;
        if let Frame::Binary(bytes) = frame {
            decompress(
                compress.as_deref(),
                &bytes,
                &mut inflate,
                &mut zstd,
                &mut scratch,
            )?;
        }
    }
    let started = Instant::now();
    let flood = mock.flood(&Target::All, count);
    let mut bytes_in = 0_u64;
    let mut received = 0;
    while received < count {
        match next_frame(&mut framed).await? {
            Frame::Text(bytes) => {
                bytes_in += bytes.len() as u64;
                received += 1;
            }
            Frame::Binary(bytes) => {
                bytes_in += bytes.len() as u64;
                if inflate_frames {
                    decompress(
                        compress.as_deref(),
                        &bytes,
                        &mut inflate,
                        &mut zstd,
                        &mut scratch,
                    )?;
                }
                received += 1;
            }
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    let report = flood.finished().await;
    println!(
        "{} MESSAGE_CREATE ({}) in {:.3} s: {:.0}/s, {:.1} MB/s on the wire",
        report.sent,
        compress.as_deref().unwrap_or("plain"),
        elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64(),
        bytes_in as f64 / elapsed.as_secs_f64() / 1e6,
    );
    mock.stop().await;
    Ok(())
}

fn decompress(
    compress: Option<&str>,
    bytes: &[u8],
    inflate: &mut flate2::Decompress,
    zstd: &mut zstd::stream::raw::Decoder<'static>,
    scratch: &mut [u8],
) -> anyhow::Result<()> {
    use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
    match compress {
        Some("zlib-stream") => {
            let mut input = bytes;
            for _ in 0..10_000 {
                let before = inflate.total_in();
                inflate.decompress(input, scratch, flate2::FlushDecompress::Sync)?;
                input = &input[usize::try_from(inflate.total_in() - before)?..];
                if input.is_empty() {
                    break;
                }
            }
        }
        Some(_) => {
            let mut input = InBuffer::around(bytes);
            for _ in 0..10_000 {
                let mut output = OutBuffer::around(&mut *scratch);
                zstd.run(&mut input, &mut output)?;
                if input.pos() >= bytes.len() {
                    break;
                }
            }
        }
        None => {}
    }
    Ok(())
}
