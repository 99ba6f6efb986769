//! Identifier newtypes: a value of one of these types has been checked at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest identifier accepted for users, devices, groups and apps.
pub const MAX_ID_LEN: usize = 128;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier is the empty string.
    #[error("must not be empty")]
    Empty,
    /// The identifier is longer than [`MAX_ID_LEN`].
    #[error("must be at most {MAX_ID_LEN} characters")]
    TooLong,
    /// The identifier holds a character outside `A-Z a-z 0-9 . _ - @ + =`.
    #[error("may hold only letters, digits and . _ - @ + = (found {0:?})")]
    BadCharacter(char),
}

/// Checks the shared identifier rules. `:` is excluded because delivery ids join identifiers
/// with it, and `{`/`}` because Redis Cluster reads them as hash tags.
fn check_id(value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+' | '=')))
    {
        Some(bad) => Err(IdError::BadCharacter(bad)),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `value` and wraps it.
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_id(&value)?;
                Ok(Self(value))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A tenant: the internal product that sends messages.
    AppId
);
id_type!(
    /// A recipient, named by the app that owns it.
    UserId
);
id_type!(
    /// One of a user's registered addresses on a channel (a phone, a browser, a webhook).
    DeviceId
);
id_type!(
    /// A named set of users of one app.
    GroupId
);
id_type!(
    /// A message, as minted by the accepter (a UUIDv7 in simple form, so ids sort by creation).
    MessageId
);

id_type!(
    /// A WebSocket deliverer node, as named in `conn:` and `node:`.
    NodeId
);

impl NodeId {
    /// A fresh random node id (`node-` and 12 lowercase hex digits).
    pub fn generate() -> Self {
        Self(format!("node-{:012x}", rand::random::<u64>() >> 16))
    }
}

impl DeviceId {
    /// The one device of the `ws` channel: a user's inbox, shared by all their browsers.
    pub fn inbox() -> Self {
        Self("inbox".to_owned())
    }
}

impl AppId {
    /// A fresh random app id (`app_` and 16 lowercase hex digits).
    pub fn generate() -> Self {
        Self(format!("app_{:016x}", rand::random::<u64>()))
    }
}

impl MessageId {
    /// A fresh, time-ordered message id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }

    /// When the id was minted (Unix milliseconds), if it is one the accepter minted.
    pub fn minted_ms(&self) -> Option<i64> {
        let id = uuid::Uuid::try_parse(&self.0).ok()?;
        let (seconds, nanos) = id.get_timestamp()?.to_unix();
        i64::try_from(seconds)
            .ok()?
            .checked_mul(1000)?
            .checked_add(i64::from(nanos / 1_000_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_separators_hash_tags_and_blanks() {
        assert_eq!(UserId::parse(""), Err(IdError::Empty));
        assert_eq!(UserId::parse("a:b"), Err(IdError::BadCharacter(':')));
        assert_eq!(UserId::parse("{x}"), Err(IdError::BadCharacter('{')));
        assert_eq!(UserId::parse("a b"), Err(IdError::BadCharacter(' ')));
        assert_eq!(UserId::parse("x".repeat(129)), Err(IdError::TooLong));
        assert!(UserId::parse("alice.smith+1@example.com").is_ok());
    }

    #[test]
    fn minted_ids_tell_when_they_were_minted() {
        let before = crate::model::now_ms();
        let minted = MessageId::generate().minted_ms().expect("a v7 id");
        assert!((before..=crate::model::now_ms()).contains(&minted));
        assert_eq!(
            MessageId::parse("not-a-uuid").expect("an id").minted_ms(),
            None
        );
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let first = MessageId::generate();
        let second = MessageId::generate();
        assert_ne!(first, second);
        assert!(MessageId::parse(first.as_str()).is_ok());
        assert!(AppId::parse(AppId::generate().as_str()).is_ok());
    }
}
