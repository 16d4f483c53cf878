#![doc = include_str!("../README.md")]

mod calls;
mod events;
mod route;
mod sharder;

pub use calls::{CallHandle, VoiceCalls};
pub use events::{GetApplied, VoiceEvents};
pub use route::{VoiceRoute, VoiceRouteError};
pub use sharder::{DiscoreSharder, ShardHandle};
/// songbird itself, the version these types implement.
pub use songbird;
