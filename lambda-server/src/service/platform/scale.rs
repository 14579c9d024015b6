//! Scaling with the load and to zero (`deploy_parameters.scale`, `[scale]`).
//!
//! The proxy counts each scaling lambda's requests in flight ([`Platform::admit`]; lambdas with
//! a fixed count are not counted at all). Every `[scale] check_interval_ms` the autoscaler looks
//! at the highest count since its last look and sets the replica count between the lambda's
//! bounds through the orchestrator (no rollout): up at once, down only after the load stayed
//! lower for `[scale] scale_down_after_secs`, and to zero (status `idle`) when `min_replicas` is 0
//! and no request came for `idle_timeout_secs`. A request for an idle lambda is held while one
//! wake starts a replica (one wake per lambda, however many requests wait; at most
//! `[scale] max_waiting` of them), then forwarded; a wake that fails answers every held request
//! with the reason.
//!
//! Marking a lambda idle and admitting a request race safely: the autoscaler writes `idle`
//! before it reads the count, the proxy counts before it reads the status, so either the
//! request sees `idle` (and waits for the wake) or the autoscaler sees the request (and waits
//! for it to end before it stops the replica).

use super::{Platform, Route, set_status};
use crate::service::error::{Error, Result};
use lambda_core::api::LambdaRecord;
use lambda_core::params::ReplicaBounds;
use lambda_core::{LambdaId, LambdaStatus};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// `[scale]`: the autoscaler and the wakes.
#[derive(Debug, Clone)]
pub struct ScaleSettings {
    /// Requests held per idle lambda while it wakes; more get 503 with `Retry-After`.
    pub max_waiting: usize,
    /// How often the autoscaler looks at the load (default 500 ms).
    pub check_interval: Duration,
    /// How long the load must stay lower before replicas stop (default 30 s).
    pub scale_down_after: Duration,
}

impl Default for ScaleSettings {
    fn default() -> Self {
        Self {
            max_waiting: 1000,
            check_interval: Duration::from_millis(500),
            scale_down_after: Duration::from_secs(30),
        }
    }
}

/// The reason an idle lambda carries when its wake failed.
const WAKE_FAILED: &str = "the last wake failed";

/// How a lambda's replica count may follow its load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    /// Fewest and most replicas.
    pub bounds: ReplicaBounds,
    /// Requests in flight per replica above which one is added.
    pub target_concurrency: u32,
    /// With `min_replicas = 0`: time without a request before the lambda idles.
    pub idle_timeout: Duration,
    /// The record's last use or change (unix milliseconds): the start of the idle time when no
    /// request came since the server started.
    pub last_use_ms: u64,
}

impl Scaling {
    /// A lambda's scaling, `None` when its count is fixed.
    pub(super) fn of(r: &LambdaRecord) -> Option<Self> {
        let dp = &r.parameters.deploy_parameters;
        let bounds = dp.replica_bounds(r.parameters.eternal);
        let last = r
            .last_usage
            .map_or(r.last_update_time, |u| u.max(r.last_update_time));
        bounds.scales().then(|| Scaling {
            bounds,
            target_concurrency: dp.scale.target_concurrency.max(1),
            idle_timeout: Duration::from_secs(dp.scale.idle_timeout_secs),
            last_use_ms: u64::try_from(last.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
        })
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One scaling lambda's load.
#[derive(Debug, Default)]
struct Load {
    in_flight: AtomicU32,
    /// The most in flight since the autoscaler last looked.
    peak: AtomicU32,
    /// When a request last started or ended (unix milliseconds).
    last_ms: AtomicU64,
}

impl Load {
    /// Requests in flight now, the most since the last sample, and the last use.
    fn sample(&self) -> (u32, u32, u64) {
        let now = self.in_flight.load(Ordering::SeqCst);
        let peak = self.peak.swap(now, Ordering::Relaxed).max(now);
        (now, peak, self.last_ms.load(Ordering::Relaxed))
    }
}

/// A request counted in its lambda's load until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Load>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_ms.store(unix_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A wake in progress: its outcome, once known, and the requests waiting for it.
#[derive(Debug)]
struct Waking {
    done: tokio::sync::watch::Receiver<Option<Result<(), String>>>,
    waiting: Arc<AtomicUsize>,
}

/// One request held for a wake (counted in `[scale] max_waiting` and the metric).
struct Held<'a> {
    platform: &'a Platform,
    waiting: Arc<AtomicUsize>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.platform.inner.metrics.release();
    }
}

/// Loads, wakes and the per-lambda lock that orders scale changes.
#[derive(Debug, Default)]
pub(super) struct Scaler {
    loads: RwLock<HashMap<LambdaId, Arc<Load>>>,
    wakes: Mutex<HashMap<LambdaId, Waking>>,
    locks: Mutex<HashMap<LambdaId, Arc<tokio::sync::Mutex<()>>>>,
}

impl Scaler {
    fn begin(&self, id: &LambdaId) -> InFlight {
        let known = self
            .loads
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        let load = known.unwrap_or_else(|| {
            self.loads
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(*id)
                .or_default()
                .clone()
        });
        let n = load.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        load.peak.fetch_max(n, Ordering::Relaxed);
        load.last_ms.store(unix_ms(), Ordering::Relaxed);
        InFlight(load)
    }

    /// Counts now as a use of the lambda: its idle time starts again (a deploy, a wake).
    pub(super) fn touch(&self, id: &LambdaId) {
        drop(self.begin(id));
    }

    fn load(&self, id: &LambdaId) -> Option<Arc<Load>> {
        self.loads
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn lock(&self, id: &LambdaId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(*id)
            .or_default()
            .clone()
    }

    /// Forgets a deleted lambda.
    pub(super) fn forget(&self, id: &LambdaId) {
        self.loads
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// What the autoscaler does with one lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    Keep,
    To(u32),
    Idle,
}

/// The autoscaler's decision for a lambda running `current` replicas, with `in_flight`
/// requests now, `peak` at most since the last look, and no request for `unused_for`.
/// `low_since` is when the load first allowed fewer replicas (kept between looks).
pub(super) fn plan(
    sc: &Scaling,
    current: u32,
    (in_flight, peak): (u32, u32),
    unused_for: Duration,
    low_since: &mut Option<Instant>,
    (now, window): (Instant, Duration),
) -> Plan {
    let b = sc.bounds;
    let wanted = peak.div_ceil(sc.target_concurrency);
    if wanted > current && current < b.max {
        *low_since = None;
        return Plan::To(wanted.min(b.max));
    }
    if b.min == 0 && in_flight == 0 && unused_for >= sc.idle_timeout {
        *low_since = None;
        return Plan::Idle;
    }
    let floor = wanted.max(b.min).max(1);
    if floor < current {
        let since = *low_since.get_or_insert(now);
        if now.duration_since(since) >= window {
            *low_since = None;
            return Plan::To(floor);
        }
    } else {
        *low_since = None;
    }
    Plan::Keep
}

/// The autoscaler's memory of one lambda between looks.
#[derive(Debug, Default)]
struct Watched {
    low_since: Option<Instant>,
    busy: Arc<AtomicBool>,
}

impl Platform {
    /// Admits a proxied request: its lambda's route and a replica to send it to, and, for a
    /// lambda that scales, the request counted in its load (keep it until the answer has been
    /// sent). An idle lambda is woken first.
    pub(crate) async fn admit(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<(Route, String, Option<InFlight>)> {
        let route = self.route_entry(id, account).await?;
        if route.scale.is_none() && route.status != LambdaStatus::Idle {
            let url = self.endpoint(id)?;
            return Ok((route, url, None));
        }
        // Counted before the status is read again (see the module docs); a request waiting for
        // a wake is not counted, or it would hold up the scale to zero the wake waits for.
        for _ in 0..3 {
            let counted = self.inner.scaler.begin(id);
            let status = self.cached_route(id).map_or(route.status, |r| r.status);
            if status != LambdaStatus::Idle {
                return Ok((route, self.endpoint(id)?, Some(counted)));
            }
            drop(counted);
            // Boxed: the wake's future would otherwise size every proxied request's.
            Box::pin(self.wake(id)).await?;
        }
        Err(Error::NotRunning(*id))
    }

    /// Waits for the wake of an idle lambda, starting it when none is under way.
    async fn wake(&self, id: &LambdaId) -> Result<()> {
        let started = Instant::now();
        let max = self.inner.cfg.scale.max_waiting;
        let (mut done, waiting, leader) = {
            let mut wakes = self
                .inner
                .scaler
                .wakes
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match wakes.get(id) {
                Some(w) if w.waiting.load(Ordering::SeqCst) >= max => {
                    return Err(Error::WakeQueueFull(*id, max));
                }
                Some(w) => {
                    w.waiting.fetch_add(1, Ordering::SeqCst);
                    (w.done.clone(), w.waiting.clone(), None)
                }
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    let waiting = Arc::new(AtomicUsize::new(1));
                    wakes.insert(
                        *id,
                        Waking {
                            done: rx.clone(),
                            waiting: waiting.clone(),
                        },
                    );
                    (rx, waiting, Some(tx))
                }
            }
        };
        self.inner.metrics.hold();
        let _held = Held {
            platform: self,
            waiting,
        };
        if let Some(tx) = leader {
            // Its own task: the wake ends even when every waiting client goes away.
            let this = self.clone();
            let id = *id;
            self.inner.tasks.spawn(async move {
                let result = this.wake_now(&id).await.map_err(|e| e.to_string());
                this.inner
                    .metrics
                    .observe_wake(started.elapsed(), result.is_ok());
                let _ = tx.send(Some(result));
                this.inner
                    .scaler
                    .wakes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            });
        }
        let timeout = self.inner.cfg.proxy_timeout;
        let outcome = tokio::time::timeout(timeout, async {
            done.wait_for(Option::is_some).await.map(|r| r.clone())
        })
        .await;
        match outcome {
            Err(_) => Err(Error::LambdaTimeout(*id, timeout)),
            Ok(Err(_)) => Err(Error::Internal(format!(
                "the wake of lambda {id} was abandoned"
            ))),
            Ok(Ok(Some(Err(reason)))) => Err(Error::WakeFailed(*id, reason)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Starts the replicas of an idle lambda (`max(min_replicas, 1)`) and marks it running.
    async fn wake_now(&self, id: &LambdaId) -> Result<()> {
        let lock = self.inner.scaler.lock(id);
        let _scaling = lock.lock().await;
        let rec = self.get(id, None).await?;
        if !rec.alive {
            return Err(Error::SwitchedOff(*id));
        }
        if rec.status != LambdaStatus::Idle {
            return Ok(()); // woken meanwhile, or changed (a deploy serves it)
        }
        let n = rec
            .parameters
            .deploy_parameters
            .replica_bounds(rec.parameters.eternal)
            .min
            .max(1);
        tracing::info!(lambda = %id, replicas = n, "waking an idle lambda");
        match self.inner.orchestrator.scale(id, n).await {
            Ok(()) => {
                self.inner.metrics.set_replicas(id, Some(n));
                self.update_cached(id, |r| {
                    if r.status == LambdaStatus::Idle {
                        set_status(r, LambdaStatus::Running);
                        r.replicas = n;
                        if r.reason
                            .as_deref()
                            .is_some_and(|x| x.starts_with(WAKE_FAILED))
                        {
                            r.reason = None;
                        }
                    }
                    Ok(())
                })
                .await?;
                Ok(())
            }
            Err(e) => {
                let why = e.to_string();
                tracing::warn!(lambda = %id, error = %why, "waking an idle lambda failed");
                let _ = self
                    .update_cached(id, |r| {
                        r.reason = Some(format!("{WAKE_FAILED}: {why}"));
                        Ok(())
                    })
                    .await;
                Err(e.into())
            }
        }
    }

    /// Looks at the load of every scaling lambda every `[scale] check_interval_ms`.
    pub(super) fn spawn_autoscaler(&self) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            let mut watched = HashMap::new();
            let mut tick = tokio::time::interval(this.inner.cfg.scale.check_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = this.inner.shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                this.autoscale(&mut watched);
            }
        });
    }

    /// One look: a scale change started (in its own task) for each lambda that needs one.
    fn autoscale(&self, watched: &mut HashMap<LambdaId, Watched>) {
        let running: Vec<(LambdaId, Scaling, u32)> = self
            .inner
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, r)| r.alive && r.status == LambdaStatus::Running)
            .filter_map(|(id, r)| Some((*id, r.scale?, r.replicas)))
            .collect();
        let ids: HashSet<LambdaId> = running.iter().map(|(id, ..)| *id).collect();
        watched.retain(|id, _| ids.contains(id));
        let now = Instant::now();
        let now_ms = unix_ms();
        let window = self.inner.cfg.scale.scale_down_after;
        for (id, sc, current) in running {
            let w = watched.entry(id).or_default();
            if w.busy.load(Ordering::SeqCst) {
                continue;
            }
            let (in_flight, peak, last_ms) = self
                .inner
                .scaler
                .load(&id)
                .map_or((0, 0, 0), |l| l.sample());
            let unused_for =
                Duration::from_millis(now_ms.saturating_sub(last_ms.max(sc.last_use_ms)));
            let decision = plan(
                &sc,
                current,
                (in_flight, peak),
                unused_for,
                &mut w.low_since,
                (now, window),
            );
            if decision == Plan::Keep {
                continue;
            }
            w.busy.store(true, Ordering::SeqCst);
            let busy = w.busy.clone();
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                let done = match decision {
                    Plan::To(n) => this.scale_to(&id, n).await,
                    Plan::Idle => this.go_idle(&id).await,
                    Plan::Keep => Ok(()),
                };
                if let Err(e) = done {
                    tracing::warn!(lambda = %id, error = %e, ?decision, "scaling failed");
                }
                busy.store(false, Ordering::SeqCst);
            });
        }
    }

    /// Sets a running lambda's replica count.
    async fn scale_to(&self, id: &LambdaId, n: u32) -> Result<()> {
        let lock = self.inner.scaler.lock(id);
        let _scaling = lock.lock().await;
        let Some(route) = self.cached_route(id) else {
            return Ok(());
        };
        if !route.alive || route.status != LambdaStatus::Running || route.replicas == n {
            return Ok(());
        }
        tracing::info!(lambda = %id, from = route.replicas, to = n, "scaling");
        self.inner.orchestrator.scale(id, n).await?;
        // The gauge first: whoever sees the new count in the record sees it in the metrics too.
        self.inner.metrics.set_replicas(id, Some(n));
        self.update_cached(id, |r| {
            r.replicas = n;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Marks an unused lambda idle, lets the requests it has finish, and stops its replicas.
    async fn go_idle(&self, id: &LambdaId) -> Result<()> {
        let lock = self.inner.scaler.lock(id);
        let _scaling = lock.lock().await;
        let rec = self
            .update_cached(id, |r| {
                if r.alive && r.status == LambdaStatus::Running {
                    set_status(r, LambdaStatus::Idle);
                    r.replicas = 0;
                }
                Ok(())
            })
            .await?;
        if rec.status != LambdaStatus::Idle {
            return Ok(());
        }
        tracing::info!(lambda = %id, "idle: stopping its replicas until the next request");
        let deadline = Instant::now() + self.inner.cfg.proxy_timeout;
        while self
            .inner
            .scaler
            .load(id)
            .is_some_and(|l| l.in_flight.load(Ordering::SeqCst) > 0)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.inner.orchestrator.scale(id, 0).await?;
        self.inner.metrics.set_replicas(id, Some(0));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaling(min: u32, max: u32) -> Scaling {
        Scaling {
            bounds: ReplicaBounds { min, max },
            target_concurrency: 10,
            idle_timeout: Duration::from_secs(60),
            last_use_ms: 0,
        }
    }

    const WINDOW: Duration = Duration::from_secs(30);

    #[test]
    fn load_scales_up_at_once_and_within_bounds() {
        let sc = scaling(1, 4);
        let mut low = None;
        let now = Instant::now();
        let busy = Duration::ZERO;
        assert_eq!(
            plan(&sc, 1, (25, 25), busy, &mut low, (now, WINDOW)),
            Plan::To(3)
        );
        assert_eq!(
            plan(&sc, 1, (5, 500), busy, &mut low, (now, WINDOW)),
            Plan::To(4)
        );
        assert_eq!(
            plan(&sc, 4, (500, 500), busy, &mut low, (now, WINDOW)),
            Plan::Keep
        );
        assert_eq!(
            plan(&sc, 2, (20, 20), busy, &mut low, (now, WINDOW)),
            Plan::Keep
        );
    }

    #[test]
    fn load_scales_down_only_after_the_window() {
        let sc = scaling(1, 4);
        let mut low = None;
        let t0 = Instant::now();
        let busy = Duration::ZERO;
        assert_eq!(
            plan(&sc, 4, (3, 3), busy, &mut low, (t0, WINDOW)),
            Plan::Keep
        );
        assert_eq!(low, Some(t0));
        // The load came back meanwhile: the window starts again.
        assert_eq!(
            plan(&sc, 4, (40, 40), busy, &mut low, (t0 + WINDOW / 2, WINDOW)),
            Plan::Keep
        );
        assert_eq!(low, None);
        let t1 = t0 + WINDOW;
        assert_eq!(
            plan(&sc, 4, (3, 3), busy, &mut low, (t1, WINDOW)),
            Plan::Keep
        );
        assert_eq!(
            plan(&sc, 4, (3, 3), busy, &mut low, (t1 + WINDOW, WINDOW)),
            Plan::To(1)
        );
    }

    #[test]
    fn only_an_unused_lambda_with_min_zero_idles() {
        let mut low = None;
        let now = Instant::now();
        let unused = Duration::from_secs(61);
        assert_eq!(
            plan(&scaling(0, 2), 1, (0, 0), unused, &mut low, (now, WINDOW)),
            Plan::Idle
        );
        // Not long enough, a request in flight, or min above zero: no.
        let recent = Duration::from_secs(59);
        assert_eq!(
            plan(&scaling(0, 2), 1, (0, 0), recent, &mut low, (now, WINDOW)),
            Plan::Keep
        );
        assert_eq!(
            plan(&scaling(0, 2), 1, (1, 1), unused, &mut low, (now, WINDOW)),
            Plan::Keep
        );
        assert_eq!(
            plan(&scaling(1, 2), 1, (0, 0), unused, &mut low, (now, WINDOW)),
            Plan::Keep
        );
    }

    #[test]
    fn a_request_is_counted_until_dropped() {
        let s = Scaler::default();
        let id = LambdaId::new();
        let a = s.begin(&id);
        let b = s.begin(&id);
        drop(a);
        let (now, peak, last) = s.load(&id).unwrap().sample();
        assert_eq!((now, peak), (1, 2));
        assert!(last > 0);
        drop(b);
        // The peak is since the last sample.
        assert_eq!(s.load(&id).unwrap().sample().1, 1);
        assert_eq!(s.load(&id).unwrap().sample().1, 0);
        s.forget(&id);
        assert!(s.load(&id).is_none());
    }
}
