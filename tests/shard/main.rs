//! The Shard actor against the emulator over real loopback WebSockets.

mod harness;

mod commands;
mod compression;
mod delivery;
mod failures;
mod handshake;
mod resume;
mod tls;
