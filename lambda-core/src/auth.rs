//! API tokens: their wire types, their text form, and what each scope allows (DESIGN.md §9).
//!
//! A token is `llt_<token id: 32 hex>_<secret: 64 hex>` (256 random bits of secret). The server
//! keeps only the secret's sha256; the id finds the stored token in one read.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "llt_";
/// Hex digits of a token's secret (256 bits).
pub const SECRET_HEX_LEN: usize = 64;
/// Longest token name.
pub const MAX_TOKEN_NAME: usize = 64;
/// Longest lifetime a token can be given (10 years).
pub const MAX_EXPIRY: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// What a token may do, on its account's lambdas (or every account's, for an admin token).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// GET (and HEAD) only, and no proxy.
    Read,
    /// Everything, the proxy included.
    #[default]
    Write,
    /// Only the proxy (`/1/lambdas/{id}/proxy/...`).
    Invoke,
}

impl TokenScope {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Invoke => "invoke",
        }
    }

    /// Whether it allows a request: `proxy` for the proxy routes, `read_only` for GET and HEAD.
    pub fn allows(self, proxy: bool, read_only: bool) -> bool {
        match self {
            Self::Write => true,
            Self::Invoke => proxy,
            Self::Read => !proxy && read_only,
        }
    }
}

impl std::str::FromStr for TokenScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "invoke" => Ok(Self::Invoke),
            other => Err(format!(
                "scope {other:?} is not one of \"read\", \"write\", \"invoke\""
            )),
        }
    }
}

/// A token as the API shows it (never its secret).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Id (the middle part of the token).
    pub token_id: uuid::Uuid,
    /// Unique name.
    pub name: String,
    /// The account it acts for; absent for an admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<uuid::Uuid>,
    /// Whether it acts for every account (and may use the admin routes).
    pub admin: bool,
    /// What it may do.
    pub scope: TokenScope,
    /// Created (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "String", extend("format" = "date-time")))]
    pub create_time: time::OffsetDateTime,
    /// When it stops working (RFC 3339); absent: never.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>", extend("format" = "date-time")))]
    pub expire_time: Option<time::OffsetDateTime>,
}

impl TokenRecord {
    /// Whether it has expired at `now`.
    pub fn expired(&self, now: time::OffsetDateTime) -> bool {
        self.expire_time.is_some_and(|t| t <= now)
    }
}

/// `POST /1/tokens`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Unique name (1 to 64 of `A-Z a-z 0-9 . _ -`).
    #[cfg_attr(feature = "schema", schemars(pattern(r"^[A-Za-z0-9._-]{1,64}$")))]
    pub name: String,
    /// The account it acts for (or `admin`).
    #[serde(default)]
    pub account_id: Option<uuid::Uuid>,
    /// Every account, and the admin routes.
    #[serde(default)]
    pub admin: bool,
    /// What it may do (default `write`).
    #[serde(default)]
    pub scope: TokenScope,
    /// Lifetime in seconds; absent: never expires.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

impl CreateTokenRequest {
    /// Checks the request; the first thing wrong, naming the field.
    pub fn check(&self) -> Result<(), String> {
        check_token_name(&self.name)?;
        match (self.admin, self.account_id) {
            (true, Some(_)) => {
                return Err("give either account_id or admin: true, not both".into());
            }
            (false, None) => {
                return Err(
                    "account_id (a UUID) is required, or admin: true for every account".into(),
                );
            }
            _ => {}
        }
        if let Some(s) = self.expires_in_secs
            && (s == 0 || s > MAX_EXPIRY.as_secs())
        {
            return Err(format!(
                "expires_in_secs must be between 1 and {} (10 years), got {s}",
                MAX_EXPIRY.as_secs()
            ));
        }
        Ok(())
    }
}

/// A token name's rules.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TOKEN_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1 to {MAX_TOKEN_NAME} characters of A-Z a-z 0-9 . _ -"
        ))
    }
}

/// `POST /1/tokens` → 201: the token, shown this once, and its record.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The token (`llt_...`): keep it, it is not stored.
    pub token: String,
    /// What it is.
    #[serde(flatten)]
    pub record: TokenRecord,
}

/// `GET /1/tokens`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenList {
    /// Every token, oldest first.
    pub tokens: Vec<TokenRecord>,
}

/// The text of a token from its id and secret.
pub fn format_token(id: &uuid::Uuid, secret_hex: &str) -> String {
    format!("{TOKEN_PREFIX}{}_{secret_hex}", id.simple())
}

/// A token's id and secret, when it has the token form.
pub fn parse_token(token: &str) -> Option<(uuid::Uuid, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32
        || secret.len() != SECRET_HEX_LEN
        || !secret.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    Some((uuid::Uuid::try_parse(id).ok()?, secret))
}

/// The stored form of a secret: its sha256, lowercase hex.
pub fn secret_hash(secret: &str) -> String {
    crate::hex(&Sha256::digest(secret.as_bytes()))
}

/// A lifetime such as `90s`, `15m`, `12h` or `30d`.
pub fn parse_expiry(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("expiry {text:?} must be a number with s, m, h or d (e.g. 90s, 15m, 12h, 30d)");
    let t = text.trim();
    let split = t.len().checked_sub(1).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(bad)?;
    if secs == 0 || secs > MAX_EXPIRY.as_secs() {
        return Err(format!("expiry {text:?} must be between 1s and 10 years"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_malformed_ones_are_refused() {
        let id = uuid::Uuid::new_v4();
        let secret = "ab".repeat(32);
        let t = format_token(&id, &secret);
        assert_eq!(parse_token(&t), Some((id, secret.as_str())));
        for bad in [
            "",
            "llt_",
            &t[..t.len() - 1],
            &format!("{t}0"),
            &t.replace("llt_", "xyz_"),
            &format!("llt_{}_{}", "z".repeat(32), secret),
            &format!("llt_{}_{}", id.simple(), "g".repeat(64)),
        ] {
            assert_eq!(parse_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn scopes_allow_what_they_say() {
        use TokenScope::*;
        // (proxy, read_only)
        assert!(Write.allows(true, false) && Write.allows(false, false));
        assert!(Read.allows(false, true));
        assert!(!Read.allows(false, false) && !Read.allows(true, true));
        assert!(Invoke.allows(true, false) && Invoke.allows(true, true));
        assert!(!Invoke.allows(false, true));
    }

    #[test]
    fn expiries() {
        assert_eq!(parse_expiry("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_expiry("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_expiry("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_expiry("30d"), Ok(Duration::from_secs(2_592_000)));
        for bad in ["", "d", "0s", "10", "5w", "-1h", "99999d", "1.5h"] {
            assert!(parse_expiry(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_requests_are_checked() {
        let ok = CreateTokenRequest {
            name: "ci-deploy".into(),
            account_id: Some(uuid::Uuid::new_v4()),
            admin: false,
            scope: TokenScope::Write,
            expires_in_secs: Some(60),
        };
        assert_eq!(ok.check(), Ok(()));
        let both = CreateTokenRequest {
            admin: true,
            ..ok.clone()
        };
        assert!(both.check().unwrap_err().contains("not both"));
        let neither = CreateTokenRequest {
            account_id: None,
            ..ok.clone()
        };
        assert!(neither.check().unwrap_err().contains("account_id"));
        let bad_name = CreateTokenRequest {
            name: "a b".into(),
            ..ok.clone()
        };
        assert!(bad_name.check().unwrap_err().contains("name"));
        let forever = CreateTokenRequest {
            expires_in_secs: Some(0),
            ..ok
        };
        assert!(forever.check().unwrap_err().contains("expires_in_secs"));
    }
}
