//! The Redis connection every coordination piece shares, and the key layout.

use crate::error::ClusterError;
use discore_protocol::ShardId;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::{fmt, future::Future, sync::Arc, time::Duration};

/// Redis calls that take longer than this fail (the lease logic then treats
/// Redis as unreachable).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to the Redis that coordinates one bot's processes, and the
/// namespace its keys live under.
///
/// Every key is `discore:{NAMESPACE}:…`; the braces make the namespace a hash
/// tag, so on a Redis Cluster all keys of a bot share one slot and its
/// scripts stay atomic. Clones share the connection, which reconnects by
/// itself.
///
/// The connection's driver runs on the runtime it was created on: create it
/// on the actix system's arbiter (the main thread), which outlives the
/// shards' arbiters. Any thread may use it.
#[derive(Clone)]
pub struct ClusterRedis {
    conn: ConnectionManager,
    keys: Keys,
    url: Arc<str>,
}

impl fmt::Debug for ClusterRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterRedis")
            .field("url", &self.url)
            .field("namespace", &self.keys.namespace)
            .finish_non_exhaustive()
    }
}

impl ClusterRedis {
    /// Connects to `url` (such as `redis://127.0.0.1:6379`) for the bot
    /// named `namespace`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidConfig`] for a bad URL or namespace,
    /// [`ClusterError::RedisUnreachable`] when Redis does not answer.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, ClusterError> {
        let keys = Keys::new(namespace)?;
        let shown = redact(url);
        let client = redis::Client::open(url)
            .map_err(|e| ClusterError::InvalidConfig(format!("redis url {shown}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|source| ClusterError::RedisUnreachable {
                url: shown.clone(),
                source,
            })?;
        let redis = Self {
            conn,
            keys,
            url: shown.into(),
        };
        redis.ping().await?;
        Ok(redis)
    }

    /// The same connection for another bot's namespace.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidConfig`] for a bad namespace.
    pub fn with_namespace(&self, namespace: &str) -> Result<Self, ClusterError> {
        Ok(Self {
            conn: self.conn.clone(),
            keys: Keys::new(namespace)?,
            url: Arc::clone(&self.url),
        })
    }

    /// The bot's namespace.
    pub fn namespace(&self) -> &str {
        &self.keys.namespace
    }

    /// Checks that Redis answers.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Redis`] when it does not.
    pub async fn ping(&self) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(ClusterError::redis("PING"))
    }

    /// Deletes every key of the namespace (tests, or retiring a bot).
    /// Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Redis`] when Redis fails.
    pub async fn delete_namespace(&self) -> Result<u64, ClusterError> {
        let mut conn = self.conn();
        let pattern = format!("{}*", self.keys.prefix);
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        // Bounded: a namespace holds a few keys per shard.
        for _ in 0..100_000 {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(ClusterError::redis("SCAN"))?;
            if !keys.is_empty() {
                deleted += redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<u64>(&mut conn)
                    .await
                    .map_err(ClusterError::redis("DEL"))?;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(deleted)
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }
}

/// Runs a Redis call with a deadline, so a hung call cannot stall a lease.
pub(crate) async fn bounded<T>(
    operation: &'static str,
    limit: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClusterError> {
    match actix_rt::time::timeout(limit, call).await {
        Ok(result) => result.map_err(ClusterError::redis(operation)),
        Err(_) => Err(ClusterError::RedisTimeout { operation }),
    }
}

/// `redis://user:password@host` without the password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}[redacted]{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The key layout of one bot.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    namespace: Arc<str>,
    /// `discore:{namespace}:`
    prefix: Arc<str>,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Result<Self, ClusterError> {
        crate::namespace::validate(namespace)?;
        Ok(Self {
            namespace: namespace.into(),
            prefix: format!("discore:{{{namespace}}}:").into(),
        })
    }

    /// The next free slot time of an identify bucket.
    pub(crate) fn identify_bucket(&self, max_concurrency: u32, bucket: u32) -> String {
        format!("{}identify:{max_concurrency}:{bucket}", self.prefix)
    }

    /// The daily session start budget (a hash).
    pub(crate) fn identify_budget(&self) -> String {
        format!("{}identify:budget", self.prefix)
    }

    /// Saved sessions (a hash keyed by [`Keys::session_field`]).
    pub(crate) fn sessions(&self) -> String {
        format!("{}sessions", self.prefix)
    }

    pub(crate) fn session_field(shard: ShardId) -> String {
        format!("{}:{}", shard.total(), shard.number())
    }

    /// The prefix of the lease keys of a pool; a lease is this plus the
    /// resource number.
    pub(crate) fn lease_prefix(&self, pool: &str) -> String {
        format!("{}lease:{pool}:", self.prefix)
    }

    /// The fencing token counter, shared by every lease of the bot.
    pub(crate) fn fence(&self) -> String {
        format!("{}fence", self.prefix)
    }

    /// The live members of a pool (a sorted set scored by expiry).
    pub(crate) fn members(&self, pool: &str) -> String {
        format!("{}members:{pool}", self.prefix)
    }

    /// Which shard total the cluster serves, and the re-sharding under way
    /// (a hash: `total`, `stage`, `next`, `epoch`).
    pub(crate) fn generation(&self) -> String {
        format!("{}generation", self.prefix)
    }

    /// A key of the re-sharding to `to` shards (`what`: `ready`,
    /// `heads:<old shard>`, `record:<old shard>`, …).
    pub(crate) fn reshard(&self, to: u32, what: &str) -> String {
        format!("{}reshard:{to}:{what}", self.prefix)
    }

    /// The status a node publishes (a hash keyed by shard).
    pub(crate) fn status(&self, node: &str) -> String {
        format!("{}status:{node}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::{Keys, redact};

    #[test]
    fn namespaces_are_hash_tags_and_validated() {
        let keys = Keys::new("my-bot").expect("valid");
        assert_eq!(keys.sessions(), "discore:{my-bot}:sessions");
        assert_eq!(
            keys.lease_prefix("shards-24"),
            "discore:{my-bot}:lease:shards-24:"
        );
        assert!(Keys::new("").is_err());
        assert!(Keys::new("a b").is_err());
        assert!(Keys::new("a}b").is_err());
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("redis://user:secret@127.0.0.1:6379"),
            "redis://[redacted]@127.0.0.1:6379"
        );
        assert_eq!(redact("redis://127.0.0.1"), "redis://127.0.0.1");
    }
}
