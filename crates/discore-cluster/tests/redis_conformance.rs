//! The Redis identify queue and session stores pass the same conformance
//! suites as the in-memory ones, against the real Redis.

mod common;

use discore_cluster::{ClusterRedis, RedisIdentifyQueue, RedisSessionStore};
use discore_manager::{identify::conformance as queue_conformance, session_store};
use std::{cell::RefCell, sync::Arc, time::Duration};

#[actix_rt::test]
async fn the_redis_identify_queue_conforms() {
    common::init_logging();
    let base = common::namespace("queue");
    let server = common::redis_server();
    let redis = common::redis(&server, &base).await;
    // A fresh namespace per queue the suite builds.
    let handed: RefCell<Vec<ClusterRedis>> = RefCell::new(Vec::new());
    let result = queue_conformance::run(|spec| {
        let index = handed.borrow().len();
        let own = redis
            .with_namespace(&format!("{base}-{index}"))
            .expect("valid namespace");
        handed.borrow_mut().push(own.clone());
        let queue = RedisIdentifyQueue::with_window(&own, spec.max_concurrency, spec.window)
            .with_answer_timeout(spec.answer_timeout);
        Arc::new(match spec.session_start_limit {
            Some(limit) => queue.with_session_start_limit(limit),
            None => queue,
        })
    })
    .await;
    for own in handed.take() {
        own.delete_namespace().await.expect("cleanup");
    }
    result.expect("the redis identify queue passes the conformance suite");
}

#[actix_rt::test]
async fn two_queues_on_one_bot_share_buckets_and_budget() {
    // Two processes' queues: bucket 0 is granted once per window across both.
    common::init_logging();
    let namespace = common::namespace("shared-queue");
    let server = common::redis_server();
    let redis = common::redis(&server, &namespace).await;
    let window = Duration::from_millis(80);
    let a = RedisIdentifyQueue::with_window(&redis, 2, window);
    let b = RedisIdentifyQueue::with_window(&redis, 2, window);
    let start = std::time::Instant::now();
    use discore_gateway::IdentifyQueue as _;
    use discore_protocol::ShardId;
    let bound = Duration::from_secs(10);
    let first = a.acquire(ShardId::new(0, 4));
    let second = b.acquire(ShardId::new(2, 4));
    let third = a.acquire(ShardId::new(1, 4));
    let first = actix_rt::time::timeout(bound, first)
        .await
        .expect("granted");
    let sent = std::time::Instant::now();
    first.sent(sent);
    let third = actix_rt::time::timeout(bound, third)
        .await
        .expect("granted");
    third.sent(std::time::Instant::now());
    let other_bucket = start.elapsed();
    let second = actix_rt::time::timeout(bound, second)
        .await
        .expect("granted");
    second.sent(std::time::Instant::now());
    let same_bucket = start.elapsed();
    assert!(
        sent.elapsed() >= window,
        "shard 2 granted {:?} after shard 0's send",
        sent.elapsed()
    );
    assert!(
        same_bucket >= window,
        "shard 2 (bucket 0, other process) granted after {same_bucket:?}, within the window"
    );
    assert!(
        other_bucket < same_bucket,
        "bucket 1 is not held behind bucket 0"
    );
    redis.delete_namespace().await.expect("cleanup");
}

#[actix_rt::test]
async fn the_redis_session_stores_conform() {
    common::init_logging();
    let namespace = common::namespace("sessions");
    let server = common::redis_server();
    let redis = common::redis(&server, &namespace).await;
    session_store::conformance::run(Arc::new(RedisSessionStore::new(&redis)))
        .await
        .expect("the immediate redis store passes the conformance suite");
    let batched = redis
        .with_namespace(&format!("{namespace}-batched"))
        .expect("valid namespace");
    session_store::conformance::run(Arc::new(RedisSessionStore::batched(
        &batched,
        Duration::from_millis(50),
    )))
    .await
    .expect("the batched redis store passes the conformance suite");
    redis.delete_namespace().await.expect("cleanup");
    batched.delete_namespace().await.expect("cleanup");
}
