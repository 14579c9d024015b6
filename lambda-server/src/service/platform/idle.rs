//! Use and disuse of lambdas: `last_usage` written from the proxy's traffic every
//! `[idle] last_usage_flush_secs` (never on a request's path), and the original's inactivity
//! sweep: with `[idle] switch_off_after_secs`, a lambda not called for that long (since its
//! last use, or its last change when never used) is switched off, unless it is `eternal`. A
//! switched-off lambda stays off until it is switched on (a request does not wake it).

use super::{Platform, now};
use crate::service::error::{Error, Result};
use lambda_core::LambdaId;
use std::time::Duration;

/// `[idle]`: when lambdas count as used, and when disuse switches them off.
#[derive(Debug, Clone)]
pub struct IdleSettings {
    /// A lambda unused for this long is switched off (`None`: never; the default).
    pub switch_off_after: Option<Duration>,
    /// How often the sweep looks (default 60 s).
    pub check_interval: Duration,
    /// How often `last_usage` is written for the lambdas called since (default 5 s).
    pub last_usage_flush: Duration,
}

impl Default for IdleSettings {
    fn default() -> Self {
        Self {
            switch_off_after: None,
            check_interval: Duration::from_secs(60),
            last_usage_flush: Duration::from_secs(5),
        }
    }
}

/// The reason a switched-off record carries when the sweep switched it off.
fn idle_reason(after: Duration) -> String {
    format!(
        "switched off: no request for {} s ([idle] switch_off_after_secs); switch it on to serve again",
        after.as_secs()
    )
}

impl Platform {
    /// Writes `last_usage` every flush interval, and sweeps every check interval when the
    /// sweep is on.
    pub(super) fn spawn_idle(&self) {
        let this = self.clone();
        let settings = self.inner.cfg.idle.clone();
        self.inner.tasks.spawn(async move {
            let mut flushed_up_to = 0u64;
            let mut last_sweep = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = this.inner.shutdown.cancelled() => {
                        this.flush_usage(&mut flushed_up_to).await;
                        return;
                    }
                    _ = tokio::time::sleep(settings.last_usage_flush) => {}
                }
                this.flush_usage(&mut flushed_up_to).await;
                if let Some(after) = settings.switch_off_after
                    && last_sweep.elapsed() >= settings.check_interval
                {
                    last_sweep = tokio::time::Instant::now();
                    if let Err(e) = this.switch_off_unused(after).await {
                        tracing::warn!(error = %e, "the inactivity sweep failed");
                    }
                }
            }
        });
    }

    /// Writes `last_usage` of every lambda called since the last flush.
    async fn flush_usage(&self, flushed_up_to: &mut u64) {
        let used = self.inner.traffic.used_after(*flushed_up_to);
        for (id, secs) in used {
            match self.set_last_usage(&id, secs).await {
                Ok(()) => *flushed_up_to = (*flushed_up_to).max(secs),
                Err(Error::NotFound(_)) => {}
                Err(e) => tracing::warn!(lambda = %id, error = %e, "writing last_usage failed"),
            }
        }
    }

    async fn set_last_usage(&self, id: &LambdaId, secs: u64) -> Result<()> {
        let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
            .unwrap_or_else(|_| now());
        self.update_cached(id, |rec| {
            if rec.last_usage.is_none_or(|t| t < at) {
                rec.last_usage = Some(at);
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Switches off every lambda that is on, not `eternal`, and unused for `after`. Answers
    /// the lambdas switched off.
    pub async fn switch_off_unused(&self, after: Duration) -> Result<Vec<LambdaId>> {
        let cutoff = now() - after;
        // The traffic not yet flushed counts too.
        let recent: std::collections::HashSet<LambdaId> = self
            .inner
            .traffic
            .used_after(u64::try_from(cutoff.unix_timestamp()).unwrap_or(0))
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let mut off = Vec::new();
        for rec in self.all_records().await? {
            // A change (create, update, switch on) counts as a use.
            let last = rec
                .last_usage
                .map_or(rec.last_update_time, |u| u.max(rec.last_update_time));
            let id = rec.lambda_id;
            if !rec.alive || rec.parameters.eternal || last > cutoff || recent.contains(&id) {
                continue;
            }
            tracing::info!(lambda = %id, last_use = %last, "switching off a lambda unused for {} s", after.as_secs());
            match self
                .switch_with_reason(&id, None, false, idle_reason(after))
                .await
            {
                Ok(_) => off.push(id),
                Err(Error::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(lambda = %id, error = %e, "switching off an unused lambda failed")
                }
            }
        }
        Ok(off)
    }
}
