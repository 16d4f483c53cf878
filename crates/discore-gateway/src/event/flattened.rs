//! One-pass parsing of twilight-model's flattened event wrappers.
//!
//! `MessageCreate`, `MemberAdd` and `ThreadMemberUpdate` are an inner type
//! (`Message`, `Member`, `ThreadMember`) plus one field of their own, joined
//! with `#[serde(flatten)]`. serde implements flatten by first buffering the
//! whole object into a tree of owned values and then deserializing the inner
//! type from that tree: for a MESSAGE_CREATE that is every key and string
//! copied once more and about a fifth of the parse. Here the inner type is
//! deserialized straight from the JSON while the wrapper's own field is taken
//! out of the object as it streams past: the same values, one pass, no tree.

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeSeed, IntoDeserializer as _, MapAccess, Visitor},
    forward_to_deserialize_any,
};
use std::{borrow::Cow, fmt, marker::PhantomData};
use twilight_model::gateway::payload::incoming::{MemberAdd, MessageCreate, ThreadMemberUpdate};

/// Parses a MESSAGE_CREATE's data.
pub(super) fn message_create<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<MessageCreate, D::Error> {
    let (message, channel_type) = split(deserializer, "channel_type")?;
    Ok(MessageCreate {
        channel_type: channel_type.flatten(),
        message,
    })
}

/// Parses a GUILD_MEMBER_ADD's data.
pub(super) fn member_add<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<MemberAdd, D::Error> {
    let (member, guild_id) = split(deserializer, "guild_id")?;
    let guild_id = guild_id.ok_or_else(|| de::Error::missing_field("guild_id"))?;
    Ok(MemberAdd { guild_id, member })
}

/// Parses a THREAD_MEMBER_UPDATE's data.
pub(super) fn thread_member_update<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ThreadMemberUpdate, D::Error> {
    let (member, guild_id) = split(deserializer, "guild_id")?;
    let guild_id = guild_id.ok_or_else(|| de::Error::missing_field("guild_id"))?;
    Ok(ThreadMemberUpdate { guild_id, member })
}

/// Deserializes `T` from an object whose member `key` is taken out as a `V`
/// (`None` when the object has no such member).
fn split<'de, D, T, V>(deserializer: D, key: &'static str) -> Result<(T, Option<V>), D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
    V: Deserialize<'de>,
{
    let mut taken = None;
    let inner = T::deserialize(Splitting {
        deserializer,
        key,
        taken: &mut taken,
    })?;
    Ok((inner, taken))
}

/// Presents an object to `T` without one of its members.
struct Splitting<'t, D, V> {
    deserializer: D,
    key: &'static str,
    taken: &'t mut Option<V>,
}

impl<'de, D, Taken> Deserializer<'de> for Splitting<'_, D, Taken>
where
    D: Deserializer<'de>,
    Taken: Deserialize<'de>,
{
    type Error = D::Error;

    fn deserialize_any<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, Self::Error> {
        self.deserializer.deserialize_map(SplittingVisitor {
            visitor,
            key: self.key,
            taken: self.taken,
        })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct SplittingVisitor<'t, W, V> {
    visitor: W,
    key: &'static str,
    taken: &'t mut Option<V>,
}

impl<'de, W, V> Visitor<'de> for SplittingVisitor<'_, W, V>
where
    W: Visitor<'de>,
    V: Deserialize<'de>,
{
    type Value = W::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_map(SplittingMap {
            map,
            key: self.key,
            taken: self.taken,
        })
    }
}

struct SplittingMap<'t, A, V> {
    map: A,
    key: &'static str,
    taken: &'t mut Option<V>,
}

impl<'de, A, V> MapAccess<'de> for SplittingMap<'_, A, V>
where
    A: MapAccess<'de>,
    V: Deserialize<'de>,
{
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        loop {
            let Some(Key(key)) = self.map.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            if key != self.key {
                let value = match key {
                    Cow::Borrowed(key) => {
                        seed.deserialize(de::value::BorrowedStrDeserializer::new(key))
                    }
                    Cow::Owned(key) => seed.deserialize(key.into_deserializer()),
                };
                return value.map(Some);
            }
            if self.taken.is_some() {
                return Err(de::Error::duplicate_field(self.key));
            }
            *self.taken = Some(self.map.next_value()?);
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        self.map.next_value_seed(seed)
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor(PhantomData))
    }
}

struct KeyVisitor<'de>(PhantomData<&'de ()>);

impl<'de> Visitor<'de> for KeyVisitor<'de> {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(key)))
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(key.to_owned())))
    }

    fn visit_string<E>(self, key: String) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::{member_add, message_create, thread_member_update};
    use serde::de::DeserializeOwned;
    use std::fmt::Debug;
    use twilight_model::gateway::payload::incoming::{
        MemberAdd, MessageCreate, ThreadMemberUpdate,
    };

    /// The one-pass parse gives what twilight-model's own (flattening)
    /// `Deserialize` gives, value for value, or fails where it fails.
    fn same<T: DeserializeOwned + PartialEq + Debug>(
        json: &str,
        ours: fn(&str) -> serde_json::Result<T>,
    ) {
        match (serde_json::from_str::<T>(json), ours(json)) {
            (Ok(theirs), Ok(ours)) => assert_eq!(theirs, ours, "{json}"),
            (Err(_), Err(_)) => {}
            (theirs, ours) => panic!("{json}: twilight {theirs:?}, one pass {ours:?}"),
        }
    }

    fn message(json: &str) -> serde_json::Result<MessageCreate> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let value = message_create(&mut deserializer)?;
        deserializer.end().map(|()| value)
    }

    fn member(json: &str) -> serde_json::Result<MemberAdd> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let value = member_add(&mut deserializer)?;
        deserializer.end().map(|()| value)
    }

    fn thread_member(json: &str) -> serde_json::Result<ThreadMemberUpdate> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let value = thread_member_update(&mut deserializer)?;
        deserializer.end().map(|()| value)
    }

    const MESSAGE: &str = r#"{"id":"1","channel_id":"2","guild_id":"3",
        "author":{"id":"4","username":"a","discriminator":"0","avatar":null,"global_name":null},
        "member":{"roles":["5"],"joined_at":"2020-01-01T00:00:00.000000+00:00","deaf":false,"mute":false,"flags":0},
        "content":"hi \"there\" \u00e9","timestamp":"2024-01-01T00:00:00.000000+00:00","edited_timestamp":null,
        "tts":false,"mention_everyone":false,"mentions":[],"mention_roles":[],"attachments":[],
        "embeds":[],"pinned":false,"type":0,"flags":0"#;

    #[test]
    fn message_create_matches_the_flattening_parse() {
        let parse = message;
        let with_type = message(&format!(r#"{MESSAGE},"channel_type":11}}"#)).expect("parses");
        assert_eq!(with_type.channel_type.map(u8::from), Some(11));
        assert_eq!(with_type.content, "hi \"there\" \u{e9}");
        for tail in [
            "}",
            r#","channel_type":0}"#,
            r#","channel_type":null}"#,
            r#","channel_type":11,"nonce":"9","unknown_field":{"x":[1]}}"#,
            r#","channel_type":0,"channel_type":0}"#,
            r#","channel_type":"text"}"#,
        ] {
            same(&format!("{MESSAGE}{tail}"), parse);
        }
        let first = MESSAGE.replacen('{', r#"{"channel_type":5,"#, 1) + "}";
        same(&first, parse);
        same(r#"{"channel_type":0}"#, parse);
        same("[]", parse);
        same("null", parse);
        let escaped_key = MESSAGE.replacen(r#""content""#, r#""cont\u0065nt""#, 1) + "}";
        same(&escaped_key, parse);
    }

    #[test]
    fn member_add_and_thread_member_update_match_the_flattening_parse() {
        let member_json = r#"{"user":{"id":"4","username":"a","discriminator":"0","avatar":null},
            "roles":["5"],"joined_at":"2020-01-01T00:00:00.000000+00:00","deaf":false,"mute":false,
            "flags":0"#;
        let added = member(&format!(r#"{member_json},"guild_id":"7"}}"#)).expect("parses");
        assert_eq!((added.guild_id.get(), added.roles.len()), (7, 1));
        assert!(
            member(&format!("{member_json}}}")).is_err(),
            "guild_id is required"
        );
        for tail in [r#","guild_id":"7"}"#, "}", r#","guild_id":"x"}"#] {
            same(&format!("{member_json}{tail}"), member);
        }
        let thread_member_json = r#"{"id":"8","user_id":"4","join_timestamp":"2020-01-01T00:00:00.000000+00:00","flags":1"#;
        let joined = thread_member(&format!(r#"{thread_member_json},"guild_id":"7"}}"#));
        assert_eq!(joined.expect("parses").guild_id.get(), 7);
        for tail in [r#","guild_id":"7"}"#, "}"] {
            same(&format!("{thread_member_json}{tail}"), thread_member);
        }
    }
}
