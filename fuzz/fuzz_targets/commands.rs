//! `cargo +nightly fuzz run commands`: the body is `discore_fuzz::commands`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| discore_fuzz::commands(data));
