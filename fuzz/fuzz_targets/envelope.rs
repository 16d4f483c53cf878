//! `cargo +nightly fuzz run envelope`: the body is `discore_fuzz::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| discore_fuzz::envelope(data));
