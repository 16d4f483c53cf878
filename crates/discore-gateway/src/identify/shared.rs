//! One identify queue per bot in a process, for shards that were not given
//! one: N `Shard`s of a bot started one by one share it, so they never
//! identify in the same window.

use super::InMemoryIdentifyQueue;
use discore_protocol::Token;
use std::{
    collections::HashMap,
    hash::{BuildHasher as _, RandomState},
    sync::{Arc, LazyLock, Mutex, PoisonError},
    time::Duration,
};

/// The bots' queues, by a hash of the token (the token itself is never
/// kept or shown here). Kept for the life of the process: a queue that
/// went away with its last shard would forget when its bucket last
/// identified, and a shard started just after could overrun it.
struct Registry {
    hasher: RandomState,
    queues: Mutex<HashMap<u64, Arc<InMemoryIdentifyQueue>>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    hasher: RandomState::new(),
    queues: Mutex::default(),
});

/// The process's identify queue for the bot of `token`, created with
/// `max_concurrency` buckets and `window` by the first shard that asks.
/// Later shards of the bot get that queue whatever limits they name (a
/// warning says so when they differ): one bot has one set of limits.
pub fn default_queue_for(
    token: &Token,
    max_concurrency: u32,
    window: Duration,
) -> Arc<InMemoryIdentifyQueue> {
    let key = REGISTRY.hasher.hash_one(token.expose());
    let mut queues = REGISTRY
        .queues
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let queue = queues
        .entry(key)
        .or_insert_with(|| Arc::new(InMemoryIdentifyQueue::with_window(max_concurrency, window)));
    if queue.max_concurrency() != max_concurrency.max(1) || queue.window() != window {
        log::warn!(
            "this bot's identify queue already runs with {} bucket(s) and a {:?} window; \
             a shard asking for {max_concurrency} and {window:?} shares it as it is",
            queue.max_concurrency(),
            queue.window()
        );
    }
    Arc::clone(queue)
}

#[cfg(test)]
mod tests {
    use super::default_queue_for;
    use discore_protocol::Token;
    use std::{sync::Arc, time::Duration};

    #[test]
    fn one_queue_per_bot() {
        let window = Duration::from_millis(5);
        let a = Token::new("shared-queue-test-bot-a").expect("token");
        let b = Token::new("shared-queue-test-bot-b").expect("token");
        let first = default_queue_for(&a, 1, window);
        let again = default_queue_for(&a.clone(), 1, window);
        let other = default_queue_for(&b, 1, window);
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &other));
    }
}
