//! The ecosystem examples' bots against the emulator: cache, REST, slash
//! commands and voice, each through a ShardManager fleet.

mod cache;
mod common;
mod rest;
mod slash;
mod voice;
