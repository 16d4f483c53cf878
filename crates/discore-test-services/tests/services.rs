//! The private servers start, answer, restart on their port and go away.

use discore_test_services::{NatsServer, RedisServer};
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

fn answer(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request).expect("writes");
    let mut buffer = [0u8; 4096];
    let n = stream.read(&mut buffer).expect("reads");
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

#[test]
fn redis_keeps_its_data_across_a_restart_on_the_same_port() {
    let mut redis = RedisServer::start().expect("redis-server starts");
    assert_ne!(redis.port(), 6379, "never the machine's Redis");
    let port = redis.port();
    assert_eq!(answer(port, b"SET k v\r\n"), "+OK\r\n");
    let first = redis.pid();
    redis.restart().expect("restarts");
    assert_eq!(redis.port(), port);
    assert_ne!(redis.pid(), first);
    assert_eq!(answer(port, b"GET k\r\n"), "$1\r\nv\r\n");
    let dir = redis.dir().to_owned();
    drop(redis);
    assert!(!dir.exists(), "the data directory is removed");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "stopped by its PID"
    );
}

#[test]
fn nats_runs_jetstream_and_restarts_on_the_same_port() {
    let mut nats = NatsServer::start().expect("nats-server starts");
    assert_ne!(nats.port(), 4222, "never the machine's NATS");
    let port = nats.port();
    assert!(answer(port, b"").contains("\"jetstream\":true"));
    nats.stop();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "stopped");
    nats.restart().expect("starts again");
    assert_eq!(nats.port(), port);
    assert!(answer(port, b"").contains("\"jetstream\":true"));
}
