//! One Discord Gateway connection as an actix actor.

pub mod backoff;
pub mod machine;
pub mod ratelimit;
