//! `cargo +nightly fuzz run close`: the body is `discore_fuzz::close`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| discore_fuzz::close(data));
