//! The audit log: one object per hour (UTC), `P/audit/<YYYY-MM-DD>/<HH>.json` =
//! `{"entries": [...]}`, appended to by compare-and-swap so that servers sharing a store keep
//! every entry.

use crate::backend::Inner;
use crate::error::{Error, Result};
use lambda_core::api::AuditEntry;
use object_store::PutMode;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;

/// Tries of one append before giving up (each retry follows a concurrent append).
const APPEND_ATTEMPTS: usize = 32;

#[derive(Debug, Default, Serialize, Deserialize)]
struct HourDoc {
    entries: Vec<AuditEntry>,
}

/// The audit log (see the module docs for keys).
#[derive(Debug, Clone)]
pub struct AuditStore {
    pub(crate) inner: Arc<Inner>,
}

/// `YYYY-MM-DD/HH.json` of the hour `t` falls in (UTC).
fn hour_name(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}/{:02}.json",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour()
    )
}

impl AuditStore {
    fn key(&self, hour: &str) -> Path {
        let (day, file) = hour.split_once('/').unwrap_or((hour, ""));
        self.inner.key(&["audit", day, file])
    }

    /// Appends entries, each to the object of its hour.
    pub async fn append(&self, entries: &[AuditEntry]) -> Result<()> {
        let mut by_hour: BTreeMap<String, Vec<&AuditEntry>> = BTreeMap::new();
        for e in entries {
            by_hour.entry(hour_name(e.time)).or_default().push(e);
        }
        for (hour, batch) in by_hour {
            self.append_to(&self.key(&hour), &batch).await?;
        }
        Ok(())
    }

    async fn append_to(&self, key: &Path, batch: &[&AuditEntry]) -> Result<()> {
        for _ in 0..APPEND_ATTEMPTS {
            let _guard = self.inner.serial_guard().await;
            let (mut doc, mode) = match self.inner.read::<HourDoc>(key).await? {
                Some((doc, version)) => (doc, PutMode::Update(version)),
                None => (HourDoc::default(), PutMode::Create),
            };
            doc.entries.extend(batch.iter().map(|e| (*e).clone()));
            if self.inner.write(key, &doc, mode).await? {
                return Ok(());
            }
        }
        Err(Error::Conflict {
            what: format!("{key}: {APPEND_ATTEMPTS} appends in a row lost to concurrent ones"),
        })
    }

    /// The hour objects whose hour ended before `before`: their full keys and sizes (for the
    /// garbage collector, which removes them with the rest).
    pub async fn expired(&self, before: OffsetDateTime) -> Result<Vec<(String, u64)>> {
        // An hour's object sorts below the name of the hour `before` is in once its hour ended.
        let first_kept = self.key(&hour_name(before)).to_string();
        Ok(self
            .inner
            .list_all(&self.inner.key(&["audit"]))
            .await?
            .into_iter()
            .filter(|m| m.location.as_ref() < first_kept.as_str())
            .map(|m| (m.location.to_string(), m.size))
            .collect())
    }

    /// Entries at or after `since`, oldest first, at most `limit`.
    pub async fn since(&self, since: OffsetDateTime, limit: usize) -> Result<Vec<AuditEntry>> {
        let first = self.key(&hour_name(since)).to_string();
        let mut keys: Vec<Path> = self
            .inner
            .list_all(&self.inner.key(&["audit"]))
            .await?
            .into_iter()
            .map(|m| m.location)
            .filter(|k| k.as_ref() >= first.as_str())
            .collect();
        keys.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        let mut out = Vec::new();
        for key in keys {
            let Some((doc, _)) = self.inner.read::<HourDoc>(&key).await? else {
                continue;
            };
            let mut entries: Vec<AuditEntry> = doc
                .entries
                .into_iter()
                .filter(|e| e.time >= since)
                .collect();
            entries.sort_by_key(|e| e.time);
            out.extend(entries);
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_named_in_utc_and_sort_in_time_order() {
        let t = time::macros::datetime!(2026-12-02 09:30 +03:00);
        assert_eq!(hour_name(t), "2026-12-02/06.json");
        let later = time::macros::datetime!(2026-12-10 00:00 UTC);
        assert!(hour_name(t) < hour_name(later));
    }
}
