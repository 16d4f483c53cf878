//! The Shard actor against the emulator over real loopback WebSockets.

mod harness;

mod bad_input;
mod commands;
mod compression;
mod delivery;
mod failures;
mod fleet;
mod handshake;
mod resume;
mod storms;
mod tls;
