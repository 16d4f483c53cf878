//! Which shard a guild belongs to (`docs/protocol.md`, "Sharding").

/// The shard of `guild_id` among `total` shards: `(guild_id >> 22) % total`.
///
/// Guildless events (DMs, entitlements) belong to shard 0. A `total` of 0 is
/// treated as 1 rather than dividing by zero.
pub const fn shard_for_guild(guild_id: u64, total: u32) -> u32 {
    let total = if total == 0 { 1 } else { total as u64 };
    ((guild_id >> 22) % total) as u32
}

#[cfg(test)]
mod tests {
    use super::shard_for_guild;

    #[test]
    fn formula() {
        // A guild created at timestamp offset t lands on shard t % total.
        assert_eq!(shard_for_guild(41_771_983_423_143_937, 1), 0);
        assert_eq!(shard_for_guild(7 << 22, 4), 3);
        assert_eq!(shard_for_guild((8 << 22) | 0x3F_FFFF, 4), 0);
        assert_eq!(
            shard_for_guild(u64::MAX, 1000),
            ((u64::MAX >> 22) % 1000) as u32
        );
        assert_eq!(shard_for_guild(5 << 22, 0), 0);
    }
}
