//! Each lambda's recent proxy traffic, as the server saw it: requests, errors and latency per
//! 10-second slot over the last 15 minutes (`GET /1/lambdas/{id}/traffic`, the console's chart).
//!
//! A lambda's series holds only the slots in which it was called (a lambda called once costs one
//! slot), under its own mutex held for a few additions; series quiet for the whole window are
//! dropped when the traffic is read or recorded past a sweep interval. Latency goes into
//! logarithmic buckets (√2 apart from 50 µs), so a percentile is known within ±20 %.

use lambda_core::LambdaId;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds per slot.
pub const SLOT_SECS: u64 = 10;
/// Slots kept (15 minutes).
pub const SLOTS: u64 = 90;
/// Latency buckets: the first ends at 50 µs, each next one √2 further, the last is unbounded.
const BUCKETS: usize = 40;
const FIRST_BOUND_US: f64 = 50.0;

#[derive(Debug, Clone)]
struct Slot {
    /// Unix seconds / [`SLOT_SECS`].
    index: u64,
    requests: u32,
    errors: u32,
    latency: [u32; BUCKETS],
}

impl Slot {
    fn new(index: u64) -> Self {
        Self {
            index,
            requests: 0,
            errors: 0,
            latency: [0; BUCKETS],
        }
    }

    /// The latency (ms) under which `q` of the slot's requests were answered: the upper bound
    /// of the bucket where the quantile falls.
    fn quantile_ms(&self, q: f64) -> f64 {
        let want = ((f64::from(self.requests) * q).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, n) in self.latency.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= want {
                return upper_bound_us(i) / 1000.0;
            }
        }
        upper_bound_us(BUCKETS - 2) / 1000.0
    }
}

fn upper_bound_us(bucket: usize) -> f64 {
    FIRST_BOUND_US * std::f64::consts::SQRT_2.powi(bucket as i32)
}

fn bucket_of(latency: Duration) -> usize {
    let us = latency.as_secs_f64() * 1e6;
    if us <= FIRST_BOUND_US {
        return 0;
    }
    let i = ((us / FIRST_BOUND_US).log2() * 2.0).ceil() as usize;
    i.min(BUCKETS - 1)
}

#[derive(Debug, Default)]
struct Series {
    slots: VecDeque<Slot>,
    /// Unix seconds of the last request.
    last_secs: u64,
}

impl Series {
    fn record(&mut self, secs: u64, latency: Duration, error: bool) {
        let index = secs / SLOT_SECS;
        self.last_secs = self.last_secs.max(secs);
        if self.slots.back().is_none_or(|s| s.index < index) {
            self.slots.push_back(Slot::new(index));
            while self.slots.front().is_some_and(|s| s.index + SLOTS <= index) {
                self.slots.pop_front();
            }
        }
        // A request that finished in an earlier slot than the newest one (a clock step, or a
        // race with a newer request) is counted in the newest.
        let slot = self.slots.back_mut().expect("a slot was just ensured");
        slot.requests = slot.requests.saturating_add(1);
        slot.errors = slot.errors.saturating_add(u32::from(error));
        let b = &mut slot.latency[bucket_of(latency)];
        *b = b.saturating_add(1);
    }

    fn newest(&self) -> Option<u64> {
        self.slots.back().map(|s| s.index)
    }
}

/// One slot of a lambda's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TrafficPoint {
    /// Start of the slot, Unix seconds.
    pub time: u64,
    /// Requests answered in the slot.
    pub requests: u32,
    /// Requests per second over the slot.
    pub rps: f64,
    /// Answers with a status of 500 or more (the lambda's or the proxy's).
    pub errors: u32,
    /// Median latency (ms) of the slot's requests, as the proxy measured it (`null`: none).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency (ms) (`null`: none).
    pub p99_ms: Option<f64>,
}

/// `GET /1/lambdas/{id}/traffic`: every slot of the window, oldest first (quiet slots included,
/// with zero requests), so a chart can be drawn as it is.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TrafficResponse {
    /// Seconds per slot.
    pub slot_secs: u64,
    /// The slots, oldest first; the last one is the current, partial slot.
    pub points: Vec<TrafficPoint>,
}

/// Every lambda's traffic series.
#[derive(Debug, Default)]
pub struct Traffic {
    series: RwLock<foldhash::HashMap<LambdaId, Arc<Mutex<Series>>>>,
    last_sweep: Mutex<u64>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Traffic {
    /// Counts one proxied request of `id` answered after `latency` with `status`.
    pub fn record(&self, id: &LambdaId, latency: Duration, status: u16) {
        self.record_at(now_secs(), id, latency, status);
    }

    fn record_at(&self, secs: u64, id: &LambdaId, latency: Duration, status: u16) {
        let index = secs / SLOT_SECS;
        let found = self
            .series
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        let series = match found {
            Some(s) => s,
            None => {
                self.sweep(index);
                let mut map = self.series.write().unwrap_or_else(|p| p.into_inner());
                Arc::clone(map.entry(*id).or_default())
            }
        };
        series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(secs, latency, status >= 500);
    }

    /// The lambdas called after `after` (Unix seconds), with the second of their last request.
    pub fn used_after(&self, after: u64) -> Vec<(LambdaId, u64)> {
        self.series
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(id, s)| {
                let last = s.lock().unwrap_or_else(|p| p.into_inner()).last_secs;
                (last > after).then_some((*id, last))
            })
            .collect()
    }

    /// Drops series with no request in the window, at most once per slot.
    fn sweep(&self, index: u64) {
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            if *last == index {
                return;
            }
            *last = index;
        }
        self.series
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .newest()
                    .is_some_and(|n| n + SLOTS > index)
            });
    }

    /// Forgets a deleted lambda's series.
    pub fn forget(&self, id: &LambdaId) {
        self.series
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The window of `id`'s traffic.
    pub fn window(&self, id: &LambdaId) -> TrafficResponse {
        self.window_at(now_secs() / SLOT_SECS, id)
    }

    fn window_at(&self, index: u64, id: &LambdaId) -> TrafficResponse {
        let slots: Vec<Slot> = self
            .series
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .slots
                    .iter()
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let first = index + 1 - SLOTS;
        let points = (first..=index)
            .map(|i| {
                let slot = slots
                    .iter()
                    .find(|s| s.index == i)
                    .cloned()
                    .unwrap_or_else(|| Slot::new(i));
                let any = slot.requests > 0;
                TrafficPoint {
                    time: i * SLOT_SECS,
                    requests: slot.requests,
                    rps: f64::from(slot.requests) / SLOT_SECS as f64,
                    errors: slot.errors,
                    p50_ms: any.then(|| slot.quantile_ms(0.5)),
                    p99_ms: any.then(|| slot.quantile_ms(0.99)),
                }
            })
            .collect();
        TrafficResponse {
            slot_secs: SLOT_SECS,
            points,
        }
    }

    /// How many lambdas have a series.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.series.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> LambdaId {
        uuid::Uuid::new_v4().to_string().parse().unwrap()
    }

    #[test]
    fn buckets_hold_their_latencies() {
        for ms in [0.01, 0.05, 0.2, 1.0, 3.3, 17.0, 250.0, 4000.0] {
            let d = Duration::from_secs_f64(ms / 1000.0);
            let b = bucket_of(d);
            assert!(upper_bound_us(b) / 1000.0 >= ms, "{ms} ms in bucket {b}");
            if b > 0 {
                assert!(upper_bound_us(b - 1) / 1000.0 < ms, "{ms} ms in bucket {b}");
            }
        }
        assert_eq!(bucket_of(Duration::from_secs(3600)), BUCKETS - 1);
    }

    #[test]
    fn a_window_has_every_slot_with_rates_and_percentiles() {
        let t = Traffic::default();
        let a = id();
        let now = 1_000_000;
        for i in 0..100 {
            // 99 fast requests and one slow in the current slot.
            let ms = if i == 99 { 400.0 } else { 2.0 };
            t.record_at(
                now * SLOT_SECS,
                &a,
                Duration::from_secs_f64(ms / 1000.0),
                200,
            );
        }
        t.record_at((now - 3) * SLOT_SECS, &a, Duration::from_millis(1), 502);
        let w = t.window_at(now, &a);
        assert_eq!(w.points.len(), SLOTS as usize);
        assert_eq!(w.points.last().unwrap().time, now * SLOT_SECS);
        let cur = w.points.last().unwrap();
        assert_eq!((cur.requests, cur.errors), (101, 1));
        assert!((cur.rps - 10.1).abs() < 1e-9);
        let p50 = cur.p50_ms.unwrap();
        assert!((2.0..=2.9).contains(&p50), "p50 {p50}");
        let p99 = cur.p99_ms.unwrap();
        assert!(
            (2.0..=2.9).contains(&p99),
            "p99 of 100 fast and 1 slow: {p99}"
        );
        // A request recorded late lands in the newest slot, not in the past.
        let older = &w.points[w.points.len() - 4];
        assert_eq!(older.requests, 0);
        assert_eq!(older.p50_ms, None);
        // Another lambda's window is empty.
        assert!(
            t.window_at(now, &id())
                .points
                .iter()
                .all(|p| p.requests == 0)
        );
    }

    #[test]
    fn old_slots_and_quiet_lambdas_are_dropped() {
        let t = Traffic::default();
        let (a, b) = (id(), id());
        let at = |index: u64| index * SLOT_SECS;
        t.record_at(at(100), &a, Duration::from_millis(1), 200);
        t.record_at(at(100) + 3, &b, Duration::from_millis(1), 500);
        assert_eq!(t.used_after(at(100)), vec![(b, at(100) + 3)]);
        t.record_at(at(100 + SLOTS - 1), &a, Duration::from_millis(1), 200);
        let w = t.window_at(100 + SLOTS - 1, &a);
        assert_eq!(w.points.iter().map(|p| p.requests).sum::<u32>(), 2);
        assert_eq!(t.window_at(100 + SLOTS - 1, &b).points[0].errors, 1);
        // A new lambda's first request sweeps: b was quiet for the whole window.
        t.record_at(at(100 + SLOTS), &id(), Duration::from_millis(1), 200);
        assert_eq!(t.len(), 2);
        // a's first slot left the window.
        let w = t.window_at(100 + SLOTS, &a);
        assert_eq!(w.points.iter().map(|p| p.requests).sum::<u32>(), 1);
        t.forget(&a);
        assert_eq!(t.len(), 1);
    }
}
