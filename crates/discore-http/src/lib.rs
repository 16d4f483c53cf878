//! The few Discord REST calls a Gateway client needs, on awc and rustls.
//!
//! [`RestClient::gateway_bot`] answers how many shards to run, where to
//! connect, and how many identifies are left today and how many may run at
//! once (`max_concurrency`). The base URL is configurable, so the same code
//! runs against the discore emulator. A rejected token is a clear
//! [`HttpError::Unauthorized`]; a 429 is retried after the `retry_after`
//! Discord asks for, a bounded number of times.
//!
//! ```no_run
//! use discore_http::RestClient;
//! use discore_protocol::Token;
//!
//! # async fn run() -> Result<(), discore_http::HttpError> {
//! # let token = Token::new("x").expect("valid");
//! let rest = RestClient::builder(token)
//!     .base_url("http://127.0.0.1:3000/api/v10")
//!     .build()?;
//! let info = rest.gateway_bot().await?;
//! assert!(info.shards >= 1);
//! # Ok(())
//! # }
//! ```

mod client;
mod error;

pub use client::{DISCORD_API_URL, RestClient, RestClientBuilder};
pub use error::HttpError;
pub use twilight_model::{
    gateway::{
        SessionStartLimit,
        connection_info::{BotConnectionInfo, ConnectionInfo},
    },
    user::CurrentUser,
};
