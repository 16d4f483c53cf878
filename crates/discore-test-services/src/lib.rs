//! Private Redis and NATS JetStream servers for discore's tests.
//!
//! A test that needs Redis or NATS starts its own: `redis-server` or
//! `nats-server -js` on a free loopback port, with its data in a fresh
//! temporary directory. The server is the test's child process; it is
//! stopped by its own PID when the handle is dropped (a failing test
//! included), and a chaos test can stop, pause or restart it on the same
//! port. The machine's own services (Redis on 6379, NATS on 4222) are never
//! touched, so `cargo test --workspace` needs only the two binaries on the
//! `PATH` (the README lists how to install them).

mod error;
mod nats;
mod process;
mod redis;

pub use error::ServiceError;
pub use nats::NatsServer;
pub use redis::RedisServer;
