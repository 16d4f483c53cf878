//! Leases on numbered resources (shards, event partitions) with fencing
//! tokens, and the membership of the processes that share them.
//!
//! One script call per tick renews every lease a process holds, refreshes
//! its membership, and claims what it should run: a fixed list, or a fair
//! share of all resources among the live members. Claims only succeed on
//! leases that do not exist, that is after their TTL expired or after their
//! holder released them. Every claim takes a new fencing token from one
//! counter, so tokens only grow.

use crate::{
    error::ClusterError,
    redis_conn::{ClusterRedis, bounded},
    session_store::Fence,
};
use redis::Script;
use std::{sync::LazyLock, time::Duration};

/// KEYS: members, fence counter.
/// ARGV: node, ttl ms, lease prefix, mode, total, held count, held
/// (id, token) pairs, wanted count, wanted ids.
/// Returns {renewed ids, lost ids, claimed (id, token) pairs, target, members}.
static TICK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node = ARGV[1]
local ttl = tonumber(ARGV[2])
local prefix = ARGV[3]
local mode = ARGV[4]
local total = tonumber(ARGV[5])
local nheld = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if mode == 'leave' then
  redis.call('ZREM', KEYS[1], node)
else
  redis.call('ZADD', KEYS[1], now + ttl, node)
  redis.call('PEXPIRE', KEYS[1], ttl * 4)
end
local renewed, lost, claimed, mine = {}, {}, {}, {}
for i = 0, nheld - 1 do
  local id = ARGV[7 + 2 * i]
  local key = prefix .. id
  if redis.call('GET', key) == node .. ':' .. ARGV[8 + 2 * i] then
    redis.call('PEXPIRE', key, ttl)
    renewed[#renewed + 1] = id
    mine[id] = true
  else
    lost[#lost + 1] = id
  end
end
local function claim(id)
  local key = prefix .. id
  if redis.call('EXISTS', key) == 1 then return false end
  local token = redis.call('INCR', KEYS[2])
  redis.call('SET', key, node .. ':' .. token, 'PX', ttl)
  claimed[#claimed + 1] = id
  claimed[#claimed + 1] = tostring(token)
  return true
end
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(members)
local target = 0
if mode == 'fixed' then
  local base = 7 + 2 * nheld
  local nwant = tonumber(ARGV[base])
  target = nwant
  for i = 1, nwant do
    local id = ARGV[base + i]
    if not mine[id] then claim(id) end
  end
elseif mode == 'share' and #members > 0 then
  local index = 0
  for i, member in ipairs(members) do
    if member == node then index = i - 1 end
  end
  target = math.floor(total / #members)
  if index < total % #members then target = target + 1 end
  local have = #renewed
  local id = 0
  while have < target and id < total do
    local sid = tostring(id)
    if not mine[sid] and claim(sid) then have = have + 1 end
    id = id + 1
  end
end
return {renewed, lost, claimed, target, #members}
",
    )
});

/// ARGV: node, lease prefix, then (id, token) pairs. Deletes the leases
/// that are still these. Returns how many.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
for i = 3, #ARGV, 2 do
  local key = ARGV[2] .. ARGV[i]
  if redis.call('GET', key) == ARGV[1] .. ':' .. ARGV[i + 1] then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
",
    )
});

/// What a process wants to hold this tick.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum Want {
    /// Only renew and be counted as a member (the first tick, so processes
    /// that start together see each other before claiming).
    Register,
    /// These ids.
    Fixed(Vec<u32>),
    /// A fair share of `0..total` among the live members.
    Share,
    /// Renew what is held, claim nothing, stop being a member.
    Leave,
}

/// The answer of a tick.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub(crate) struct Tick {
    pub(crate) renewed: Vec<u32>,
    pub(crate) lost: Vec<u32>,
    pub(crate) claimed: Vec<(u32, u64)>,
    /// How many this process should hold.
    pub(crate) target: u32,
    /// Live members of the pool, this one included.
    pub(crate) members: u32,
}

/// The leases of one process in one pool.
#[derive(Clone, Debug)]
pub(crate) struct LeaseClient {
    redis: ClusterRedis,
    pool: String,
    node: String,
    ttl: Duration,
    total: u32,
}

impl LeaseClient {
    pub(crate) fn new(
        redis: &ClusterRedis,
        pool: impl Into<String>,
        node: impl Into<String>,
        ttl: Duration,
        total: u32,
    ) -> Self {
        Self {
            redis: redis.clone(),
            pool: pool.into(),
            node: node.into(),
            ttl,
            total,
        }
    }

    /// The lease TTL.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The check a write for resource `id` under `token` must pass.
    pub(crate) fn fence(&self, id: u32, token: u64) -> Fence {
        Fence {
            key: format!("{}{id}", self.redis.keys().lease_prefix(&self.pool)),
            value: format!("{}:{token}", self.node),
        }
    }

    /// Renews `held`, refreshes the membership and claims what `want` says.
    /// Bounded by the TTL: an answer later than that is useless.
    pub(crate) async fn tick(
        &self,
        held: &[(u32, u64)],
        want: &Want,
    ) -> Result<Tick, ClusterError> {
        let keys = self.redis.keys();
        let mut invocation = TICK.key(keys.members(&self.pool));
        invocation.key(keys.fence());
        let mode = match want {
            Want::Register => "register",
            Want::Fixed(_) => "fixed",
            Want::Share => "share",
            Want::Leave => "leave",
        };
        invocation
            .arg(&self.node)
            .arg(millis(self.ttl))
            .arg(keys.lease_prefix(&self.pool))
            .arg(mode)
            .arg(self.total)
            .arg(held.len());
        for (id, token) in held {
            invocation.arg(*id).arg(*token);
        }
        let wanted: &[u32] = match want {
            Want::Fixed(ids) => ids,
            _ => &[],
        };
        invocation.arg(wanted.len());
        for id in wanted {
            invocation.arg(*id);
        }
        let mut conn = self.redis.conn();
        let (renewed, lost, claimed, target, members): (
            Vec<String>,
            Vec<String>,
            Vec<String>,
            i64,
            i64,
        ) = bounded("lease tick", self.ttl, invocation.invoke_async(&mut conn)).await?;
        let ids = |list: Vec<String>| -> Result<Vec<u32>, ClusterError> {
            list.iter().map(|s| number(s)).collect()
        };
        let claimed = claimed
            .chunks(2)
            .map(|pair| match pair {
                [id, token] => Ok((number(id)?, token_number(token)?)),
                _ => Err(corrupt("an odd claim list")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tick {
            renewed: ids(renewed)?,
            lost: ids(lost)?,
            claimed,
            target: u32::try_from(target).unwrap_or(0),
            members: u32::try_from(members).unwrap_or(0),
        })
    }

    /// Deletes these leases if they are still ours; answers how many were.
    pub(crate) async fn release(&self, leases: &[(u32, u64)]) -> Result<u32, ClusterError> {
        if leases.is_empty() {
            return Ok(0);
        }
        let mut invocation = RELEASE.arg(&self.node);
        invocation.arg(self.redis.keys().lease_prefix(&self.pool));
        for (id, token) in leases {
            invocation.arg(*id).arg(*token);
        }
        let mut conn = self.redis.conn();
        bounded(
            "lease release",
            self.ttl.max(Duration::from_secs(1)),
            invocation.invoke_async::<u32>(&mut conn),
        )
        .await
    }
}

fn number(text: &str) -> Result<u32, ClusterError> {
    text.parse()
        .map_err(|_| corrupt("a lease id that is not a number"))
}

fn token_number(text: &str) -> Result<u64, ClusterError> {
    text.parse()
        .map_err(|_| corrupt("a fencing token that is not a number"))
}

fn corrupt(detail: &str) -> ClusterError {
    ClusterError::Corrupt {
        what: "lease answer",
        detail: detail.to_owned(),
    }
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    //! Lease semantics against a real Redis (the test's own).

    use super::{LeaseClient, Want};
    use crate::redis_conn::ClusterRedis;
    use discore_test_services::RedisServer;
    use std::time::{Duration, Instant};

    async fn redis(server: &RedisServer, test: &str) -> ClusterRedis {
        let namespace = format!("t-lease-{test}-{:08x}", fastrand::u32(..));
        match ClusterRedis::connect(&server.url(), &namespace).await {
            Ok(redis) => redis,
            Err(error) => panic!("the test's redis-server does not answer: {error:?}"),
        }
    }

    fn client(redis: &ClusterRedis, node: &str, ttl: Duration) -> LeaseClient {
        LeaseClient::new(redis, "shards-24", node, ttl, 24)
    }

    #[actix_rt::test]
    async fn a_held_lease_is_claimed_by_nobody_else_until_it_expires() {
        let server = RedisServer::start().expect("redis-server starts");
        let redis = redis(&server, "expiry").await;
        let ttl = Duration::from_millis(300);
        let a = client(&redis, "a", ttl);
        let b = client(&redis, "b", ttl);
        let mine = a.tick(&[], &Want::Fixed(vec![3, 4])).await.expect("tick");
        assert_eq!(mine.claimed.iter().map(|c| c.0).collect::<Vec<_>>(), [3, 4]);
        let claimed_at = Instant::now();
        let theirs = b.tick(&[], &Want::Fixed(vec![4, 5])).await.expect("tick");
        assert_eq!(theirs.claimed.iter().map(|c| c.0).collect::<Vec<_>>(), [5]);
        // Renewed by a: still not b's.
        let renewed = a
            .tick(&mine.claimed, &Want::Fixed(vec![3, 4]))
            .await
            .expect("tick");
        assert_eq!(renewed.renewed, [3, 4]);
        // a stops renewing; b gets shard 4 only once the TTL has passed.
        let mut taken = None;
        for _ in 0..200 {
            let tick = b
                .tick(&theirs.claimed, &Want::Fixed(vec![4, 5]))
                .await
                .expect("tick");
            if let Some(claim) = tick.claimed.first() {
                taken = Some((*claim, claimed_at.elapsed()));
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(25)).await;
        }
        let ((id, token), after) = taken.expect("b claims shard 4 after the ttl");
        assert_eq!(id, 4);
        assert!(after >= ttl, "claimed after {after:?}, before the ttl");
        let old_token = mine.claimed[1].1;
        assert!(
            token > old_token,
            "fencing tokens grow: {token} after {old_token}"
        );
        // a learns it lost shard 4 at its next renewal.
        let late = a
            .tick(&mine.claimed, &Want::Fixed(vec![3, 4]))
            .await
            .expect("tick");
        assert!(late.lost.contains(&4), "{late:?}");
        redis.delete_namespace().await.expect("cleanup");
    }

    #[actix_rt::test]
    async fn fair_shares_split_the_shards_and_a_release_frees_at_once() {
        let server = RedisServer::start().expect("redis-server starts");
        let redis = redis(&server, "share").await;
        let ttl = Duration::from_secs(5);
        let nodes: Vec<LeaseClient> = ["n1", "n2", "n3"]
            .into_iter()
            .map(|n| client(&redis, n, ttl))
            .collect();
        for node in &nodes {
            node.tick(&[], &Want::Register).await.expect("register");
        }
        let mut held: Vec<Vec<(u32, u64)>> = vec![Vec::new(); 3];
        for (node, held) in nodes.iter().zip(&mut held) {
            let tick = node.tick(held, &Want::Share).await.expect("tick");
            assert_eq!((tick.target, tick.members), (8, 3));
            held.extend(tick.claimed);
        }
        let mut all: Vec<u32> = held.iter().flatten().map(|(id, _)| *id).collect();
        all.sort_unstable();
        assert_eq!(all, (0..24).collect::<Vec<_>>(), "every shard exactly once");
        // n3 leaves after releasing: the others' shares grow and they take
        // its shards at their next tick.
        assert_eq!(nodes[2].release(&held[2]).await.expect("release"), 8);
        nodes[2].tick(&[], &Want::Leave).await.expect("leave");
        let tick = nodes[0].tick(&held[0], &Want::Share).await.expect("tick");
        assert_eq!((tick.target, tick.members, tick.claimed.len()), (12, 2, 4));
        redis.delete_namespace().await.expect("cleanup");
    }
}
