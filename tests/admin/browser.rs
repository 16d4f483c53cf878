//! The status page in a real browser: headless Chromium loads it, runs its
//! script and the test reads the DOM it built.
//!
//! The tests need `/usr/bin/chromium` (Debian's `chromium`; another binary
//! with `DISCORE_CHROMIUM`). Without it they are skipped with a message,
//! unless `DISCORE_REQUIRE_BROWSER=1` (as in `.ci/run`) makes that a failure.

use crate::fleet::{self, TIMEOUT};
use discore_admin::{AdminConfig, AdminServer, FleetSnapshot, ShardSnapshot, TileState};
use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// The browser, or `None` (after saying so) when the test should be skipped.
fn chromium(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("DISCORE_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("DISCORE_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "DISCORE_REQUIRE_BROWSER=1 but there is no browser at {}: install Debian's chromium",
        path.display()
    );
    eprintln!(
        "skipped {test}: no browser at {} (apt-get install chromium, or set DISCORE_CHROMIUM)",
        path.display()
    );
    None
}

/// A fresh directory under the test target's scratch space.
fn scratch(what: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "status-page-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Runs headless Chromium on `url` with `extra` arguments (the page's
/// script gets `budget` of virtual time) and answers what it printed.
async fn run_chromium(
    browser: PathBuf,
    url: String,
    extra: Vec<String>,
    budget: Duration,
) -> String {
    let dir = scratch("chromium");
    let out = dir.join("stdout");
    let err = dir.join("stderr");
    let mut command = Command::new(&browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--virtual-time-budget={}", budget.as_millis()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::from(fs::File::create(&out).expect("stdout file")))
        .stderr(Stdio::from(fs::File::create(&err).expect("stderr file")));
    let mut child = command.spawn().expect("chromium starts");
    // The fleet and the admin server run on this thread's system: wait for
    // the browser on a blocking thread, bounded.
    let status = actix_rt::task::spawn_blocking(move || {
        let deadline = Instant::now() + TIMEOUT * 4;
        loop {
            if let Some(status) = child.try_wait().expect("wait for chromium") {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("the waiting thread");
    let stdout = fs::read_to_string(&out).unwrap_or_default();
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    let tail: String = stderr.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    match status {
        Some(status) => assert!(status.success(), "chromium failed ({status}):\n{tail}"),
        None => panic!("chromium did not finish in time:\n{tail}"),
    }
    let _ = fs::remove_dir_all(dir.join("profile"));
    stdout
}

/// The text of the element with `id`, from a serialized DOM.
fn text_of(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let start = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[start..];
    let text = rest.find('>').map_or("", |end| &rest[end + 1..]);
    text.split('<').next().unwrap_or_default().to_owned()
}

/// Tiles by state, from a serialized DOM.
fn tiles(dom: &str, state: TileState) -> usize {
    dom.matches(&format!("class=\"tile s-{}\"", state.as_str()))
        .count()
}

/// A live fleet on the emulator: the page shows a tile per shard, all
/// active, and the fleet totals.
#[actix_rt::test]
async fn the_page_shows_a_live_fleet() {
    let Some(browser) = chromium("the_page_shows_a_live_fleet") else {
        return;
    };
    let fleet = fleet::start_with(
        6,
        AdminConfig::new().title("browser test"),
        Duration::from_secs(5),
    )
    .await;
    fleet::wait_for_api(&fleet, "every shard active", |json| {
        json["fleet"]["states"]["active"] == 3
    })
    .await;
    let dom = run_chromium(
        browser,
        fleet.admin.url(),
        vec!["--dump-dom".into()],
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(tiles(&dom, TileState::Active), 3, "{dom}");
    assert_eq!(dom.matches("class=\"tile ").count(), 3);
    for id in 0..3 {
        assert!(
            dom.contains(&format!("<span class=\"id\">#{id}</span>")),
            "{dom}"
        );
    }
    assert_eq!(text_of(&dom, "t-shards"), "3 / 3");
    assert_eq!(text_of(&dom, "t-total"), "3");
    assert_eq!(text_of(&dom, "t-guilds"), "6 / 6");
    assert!(text_of(&dom, "note").starts_with("ready"), "{dom}");
    assert!(
        dom.contains("<title>browser test · 3/3 shards active</title>"),
        "{dom}"
    );
    fleet.stop().await;
}

/// A thousand shards in every state: every tile is drawn with its state,
/// the grid turns dense, the legend counts match, and a screenshot renders.
#[actix_rt::test]
async fn the_page_stays_readable_at_a_thousand_shards() {
    let Some(browser) = chromium("the_page_stays_readable_at_a_thousand_shards") else {
        return;
    };
    fleet::init_logging();
    let total = 1000;
    let shards: Vec<ShardSnapshot> = (0..total)
        .map(|id| {
            let state = match id {
                7 | 507 => TileState::Failed,
                _ if id % 97 == 3 => TileState::Resuming,
                _ if id % 131 == 5 => TileState::Identifying,
                _ if id % 211 == 9 => TileState::Restarting,
                _ => TileState::Active,
            };
            let mut shard = ShardSnapshot::bare(id, total, state);
            shard.guilds = 2500;
            shard.guilds_loaded = if state == TileState::Active {
                2500
            } else {
                1200
            };
            if state == TileState::Failed {
                shard.last_close_code = Some(4004);
                shard.failure = Some("authentication failed".into());
            }
            shard
        })
        .collect();
    let expected = |state: TileState| shards.iter().filter(|s| s.state == state).count();
    let counts: Vec<(TileState, usize)> =
        TileState::ALL.iter().map(|s| (*s, expected(*s))).collect();
    let snapshot = FleetSnapshot {
        total,
        shards: shards.clone(),
        ..FleetSnapshot::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let admin = AdminServer::start_on(listener, AdminConfig::new(), snapshot).expect("starts");

    let dom = run_chromium(
        browser.clone(),
        admin.url(),
        vec!["--dump-dom".into()],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(dom.matches("class=\"tile ").count(), total as usize);
    for (state, count) in &counts {
        assert_eq!(tiles(&dom, *state), *count, "{state:?} tiles");
        if *count > 0 {
            let chip = format!("{} {count}</button>", state.as_str().replace('_', " "));
            assert!(dom.contains(&chip), "legend chip {chip:?}");
        }
    }
    assert!(
        dom.contains("<main id=\"grid\" data-refresh=\"2000\" class=\"dense\">"),
        "dense grid"
    );
    assert!(
        dom.contains("<span class=\"cc\">4004</span>"),
        "the close code of a failed shard"
    );
    let active = expected(TileState::Active);
    assert_eq!(text_of(&dom, "t-shards"), format!("{active} / {total}"));

    let shot = scratch("screenshot").join("thousand.png");
    run_chromium(
        browser,
        admin.url(),
        vec![
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,900".into(),
        ],
        Duration::from_secs(5),
    )
    .await;
    let png = fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        png.len() > 10_000,
        "a page, not a blank: {} bytes",
        png.len()
    );
    admin.stop().await;
}
