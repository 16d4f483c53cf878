//! `cargo +nightly fuzz run zlib_stream`: the body is `discore_fuzz::zlib_stream`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| discore_fuzz::zlib_stream(data));
