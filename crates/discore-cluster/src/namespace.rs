//! The bot's namespace: the one rule both Redis keys and NATS subjects use.

use crate::error::ClusterError;

/// The longest namespace accepted.
pub(crate) const MAX_LEN: usize = 128;

/// Checks a namespace: 1 to 128 characters of `[A-Za-z0-9._-]`, safe in a
/// Redis hash tag and (with `.` mapped to `_`) in a NATS subject token and
/// stream name.
///
/// # Errors
///
/// [`ClusterError::InvalidConfig`] naming the rule.
pub(crate) fn validate(namespace: &str) -> Result<(), ClusterError> {
    let valid = (1..=MAX_LEN).contains(&namespace.len())
        && namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(ClusterError::InvalidConfig(format!(
            "namespace {namespace:?} must be 1-{MAX_LEN} characters of [A-Za-z0-9._-]"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_LEN, validate};

    #[test]
    fn one_rule_for_every_namespace() {
        for good in ["a", "my-bot", "bot_1.prod", &"x".repeat(MAX_LEN)] {
            assert!(validate(good).is_ok(), "{good:?}");
        }
        for bad in ["", "with space", "a:b", "a*", "ü", &"x".repeat(MAX_LEN + 1)] {
            let error = validate(bad).expect_err(bad).to_string();
            assert!(error.contains("1-128"), "{error}");
        }
    }
}
