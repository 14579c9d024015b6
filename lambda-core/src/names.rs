//! Identifiers: lambda ids, names and types. Each has a checked constructor; once built it is valid.

use crate::Error;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A lambda's id: a UUID, shown in its hyphenated lowercase form.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LambdaId(uuid::Uuid);

impl LambdaId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }

    /// The Kubernetes object name of this lambda: `lambda-<id>`.
    pub fn object_name(&self) -> String {
        format!("lambda-{}", self.0)
    }
}

impl Default for LambdaId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<uuid::Uuid> for LambdaId {
    fn from(u: uuid::Uuid) -> Self {
        Self(u)
    }
}

impl fmt::Display for LambdaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for LambdaId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        uuid::Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| Error::InvalidId(s.to_owned()))
    }
}

/// A lambda's name: 1–63 characters of lowercase letters, digits and `-`, starting with a letter
/// and not ending with `-` (so it can be used in DNS and Kubernetes names).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    schemars(extend("pattern" = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"))
)]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LambdaName(String);

impl LambdaName {
    /// Checks and wraps a name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let why = if s.is_empty() {
            Some("is empty")
        } else if s.len() > 63 {
            Some("is longer than 63 characters")
        } else if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            Some("must start with a lowercase letter")
        } else if s.ends_with('-') {
            Some("must not end with '-'")
        } else if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            Some("may contain only lowercase letters, digits and '-'")
        } else {
            None
        };
        match why {
            Some(why) => Err(Error::InvalidName {
                name: s.to_owned(),
                why: why.to_owned(),
            }),
            None => Ok(Self(s.to_owned())),
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LambdaName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<LambdaName> for String {
    fn from(n: LambdaName) -> String {
        n.0
    }
}

impl fmt::Display for LambdaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of lambda, which decides the request object `main` receives.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String", into = "&'static str")]
pub enum LambdaType {
    /// Requests sent directly to the lambda (`StandaloneLambdaRequest`).
    Standalone,
    /// Requests from luna-handlers (`HandlersLambdaRequest`).
    Handlers,
    /// Tasks split into subtasks that the platform runs across replicas (`BaseLambdaTask`).
    Tasks,
}

impl LambdaType {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Handlers => "handlers",
            Self::Tasks => "tasks",
        }
    }
}

impl FromStr for LambdaType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "standalone" => Ok(Self::Standalone),
            "handlers" => Ok(Self::Handlers),
            "tasks" => Ok(Self::Tasks),
            other => Err(Error::UnsupportedLambdaType(other.to_owned())),
        }
    }
}

impl TryFrom<String> for LambdaType {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<LambdaType> for &'static str {
    fn from(t: LambdaType) -> &'static str {
        t.as_str()
    }
}

impl fmt::Display for LambdaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        for ok in ["a", "hello", "my-lambda-2", &"a".repeat(63)] {
            assert!(LambdaName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Hello",
            "1abc",
            "-a",
            "a-",
            "a_b",
            "a.b",
            &"a".repeat(64),
            "ünï",
        ] {
            assert!(LambdaName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn types_other_than_the_three_are_not_supported() {
        assert_eq!(
            "handlers".parse::<LambdaType>().unwrap(),
            LambdaType::Handlers
        );
        assert_eq!("tasks".parse::<LambdaType>().unwrap(), LambdaType::Tasks);
        let e = "agent".parse::<LambdaType>().unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
        let json: Result<LambdaType, _> = serde_json::from_str("\"agent\"");
        assert!(json.is_err());
    }

    #[test]
    fn ids_round_trip() {
        let id = LambdaId::new();
        assert_eq!(id.to_string().parse::<LambdaId>().unwrap(), id);
        assert!("not-a-uuid".parse::<LambdaId>().is_err());
        assert!(id.object_name().starts_with("lambda-"));
    }
}
