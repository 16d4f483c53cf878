//! The bodies of discore's fuzz targets.
//!
//! Each function takes the fuzzer's bytes and drives one part of discore
//! the way a connection would, panicking only when an invariant breaks:
//!
//! | function | what it drives |
//! |---|---|
//! | [`envelope()`] | a text frame: UTF-8, `Envelope::peek`, then what the shard does with each opcode, down to `Dispatch::from_data`, whose typed event must equal twilight-model's parse of the same data |
//! | [`zlib_stream()`], [`zstd_stream()`] | one connection's `Inflater` fed a sequence of frames, then each inflated payload through [`envelope()`] |
//! | [`close()`] | the IO-free `Machine` driven by a script of events, close frames decoded by the WebSocket codec |
//! | [`commands()`] | Identify, Resume, Heartbeat and every user command built from arbitrary values, encoded and read back |
//!
//! They live here, not in `fuzz/`, so they build on stable Rust: the
//! `cargo fuzz` targets in `fuzz/fuzz_targets/` are one line each, and
//! `tests/corpus.rs` replays every file of `fuzz/corpus/` and
//! `fuzz/artifacts/` through the same functions in `cargo test`.
//!
//! ```
//! discore_fuzz::envelope(br#"{"op":0,"s":1,"t":"TYPING_START","d":{}}"#);
//! discore_fuzz::close(&[]);
//! ```

pub mod close;
pub mod commands;
pub mod envelope;
pub mod inflate;
pub mod input;

pub use close::close;
pub use commands::commands;
pub use envelope::envelope;
pub use inflate::{zlib_stream, zstd_stream};

/// A fuzz body: takes the fuzzer's bytes, panics when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/corpus/` directory.
pub const TARGETS: [(&str, Target); 5] = [
    ("envelope", envelope),
    ("zlib_stream", zlib_stream),
    ("zstd_stream", zstd_stream),
    ("close", close),
    ("commands", commands),
];
