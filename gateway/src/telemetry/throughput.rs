//! Bytes per second to and from each remote over the last minutes, for
//! the console's small charts: sampled from the byte counters every
//! [`SAMPLE_INTERVAL`], [`KEPT_SAMPLES`] kept per remote.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::figures::Figures;
use super::Exporter;

/// How often the counters are read.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Points kept per remote (ten minutes at the interval above).
pub const KEPT_SAMPLES: usize = 120;

/// One point of a remote's chart.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Point {
    /// The end of the interval, in milliseconds since the epoch.
    pub t_ms: u64,
    /// Bytes read from the remote per second over the interval.
    pub read_bps: f64,
    /// Bytes written to the remote per second over the interval.
    pub written_bps: f64,
}

/// The recent throughput of every remote.
#[derive(Debug, Default)]
pub struct Throughput {
    inner: Mutex<Inner>,
}

/// Bytes read and written per remote, as the counters last said.
type Totals = BTreeMap<String, (f64, f64)>;

#[derive(Debug, Default)]
struct Inner {
    last: Option<(Instant, Totals)>,
    points: BTreeMap<String, VecDeque<Point>>,
}

/// What `GET /api/v1/throughput` answers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThroughputReport {
    /// Seconds between points.
    pub interval_secs: u64,
    /// Points per remote, oldest first.
    pub remotes: BTreeMap<String, Vec<Point>>,
}

impl Throughput {
    /// Takes one sample of the byte counters in `figures`, read at `now`.
    pub fn sample(&self, figures: &Figures, now: Instant, wall: SystemTime) {
        let read = figures.by(backends::metrics::BYTES_READ, "remote");
        let written = figures.by(backends::metrics::BYTES_WRITTEN, "remote");
        let mut totals: Totals = BTreeMap::new();
        for (remote, v) in read {
            totals.entry(remote).or_default().0 = v;
        }
        for (remote, v) in written {
            totals.entry(remote).or_default().1 = v;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((then, before)) = &inner.last {
            let secs = now.duration_since(*then).as_secs_f64().max(0.001);
            let t_ms = crate::sync::records::millis(wall);
            let mut new_points = Vec::new();
            for (remote, (r, w)) in &totals {
                let (r0, w0) = before.get(remote).copied().unwrap_or((0.0, 0.0));
                new_points.push((
                    remote.clone(),
                    Point {
                        t_ms,
                        read_bps: ((r - r0) / secs).max(0.0),
                        written_bps: ((w - w0) / secs).max(0.0),
                    },
                ));
            }
            for (remote, point) in new_points {
                let series = inner.points.entry(remote).or_default();
                series.push_back(point);
                while series.len() > KEPT_SAMPLES {
                    series.pop_front();
                }
            }
        }
        inner.points.retain(|remote, _| totals.contains_key(remote));
        inner.last = Some((now, totals));
    }

    /// The points kept now.
    pub fn report(&self) -> ThroughputReport {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        ThroughputReport {
            interval_secs: SAMPLE_INTERVAL.as_secs(),
            remotes: inner
                .points
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().copied().collect()))
                .collect(),
        }
    }

    /// Samples `exporter` every [`SAMPLE_INTERVAL`] until `stop`.
    pub async fn run(&self, exporter: Exporter, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = stop.wait_for(|s| *s) => { let _ = r; return; }
            }
            let figures = Figures::parse(&exporter.render_counters());
            self.sample(&figures, Instant::now(), SystemTime::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(read: u64, written: u64) -> Figures {
        Figures::parse(&format!(
            "gateway_remote_bytes_read_total{{remote=\"p\"}} {read}\n\
             gateway_remote_bytes_written_total{{remote=\"p\"}} {written}\n"
        ))
    }

    #[test]
    fn rates_come_from_the_counters_deltas() {
        let t = Throughput::default();
        let start = Instant::now();
        let wall = SystemTime::now();
        t.sample(&figures(0, 0), start, wall);
        assert!(t.report().remotes.is_empty(), "one sample has no rate yet");
        t.sample(&figures(10_000, 500), start + Duration::from_secs(5), wall);
        t.sample(
            &figures(10_000, 1_500),
            start + Duration::from_secs(10),
            wall,
        );
        let points = &t.report().remotes["p"];
        assert_eq!(points.len(), 2);
        assert_eq!((points[0].read_bps, points[0].written_bps), (2000.0, 100.0));
        assert_eq!((points[1].read_bps, points[1].written_bps), (0.0, 200.0));
        for i in 0..(KEPT_SAMPLES as u64 + 10) {
            t.sample(&figures(0, 0), start + Duration::from_secs(15 + i), wall);
        }
        assert_eq!(t.report().remotes["p"].len(), KEPT_SAMPLES);
    }
}
