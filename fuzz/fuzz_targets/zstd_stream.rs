//! `cargo +nightly fuzz run zstd_stream`: the body is `discore_fuzz::zstd_stream`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| discore_fuzz::zstd_stream(data));
