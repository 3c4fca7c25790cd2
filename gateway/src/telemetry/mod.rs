//! What the gateway tells Prometheus: the one recorder every module's
//! metrics go through (installed once, with histogram buckets), the list
//! of every metric the gateway exports ([`catalogue`]), the process
//! metrics read from `/proc` ([`process`]), and the gauges read from the
//! gateway's state at each scrape ([`state_gauges`]); the same figures
//! read back for the admin API and console ([`figures`], [`throughput`]).
//!
//! Metrics are recorded through the `metrics` facade everywhere (backends,
//! sessions, syncs); the HTTP side lives in [`crate::ops_endpoint`].

pub mod catalogue;
pub mod figures;
pub mod process;
pub mod state_gauges;
pub mod throughput;

use std::sync::Arc;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Upper bounds (seconds) of every latency histogram's buckets: from a
/// millisecond (a local `stat`) to a minute (a pool wait at its limit), so
/// quantiles can be computed across nodes with `histogram_quantile`.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Called before each scrape renders, to bring gauges that are read
/// rather than pushed (state, process) up to date.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// Renders `/metrics`: the recorder's metrics, refreshed first, followed by
/// the process metrics.
#[derive(Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
    refresh: Option<Refresh>,
}

impl Exporter {
    /// An exporter that calls `refresh` before each scrape.
    pub fn with_refresh(mut self, refresh: Refresh) -> Self {
        self.refresh = Some(refresh);
        self
    }

    /// The Prometheus text of every metric now.
    pub fn render(&self) -> String {
        if let Some(refresh) = &self.refresh {
            refresh();
        }
        let mut text = self.handle.render();
        text.push_str(&process::render());
        text
    }

    /// The recorder's own metrics only, without the scrape-time refresh
    /// or the process figures (what the admin API reads back).
    pub fn render_counters(&self) -> String {
        self.handle.render()
    }
}

/// Installs the process-wide Prometheus recorder (once), describes every
/// metric of the [`catalogue`] and sets `gateway_build_info`.
pub fn install_recorder() -> anyhow::Result<Exporter> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(Exporter {
            handle: h.clone(),
            refresh: None,
        });
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .context("cannot set the histograms' buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    catalogue::describe();
    catalogue::register_fixed_series();
    // Upkeep drains histograms' buckets now and then; without the
    // exporter's own listener nobody else calls it.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(Exporter {
        handle: HANDLE.get_or_init(|| handle).clone(),
        refresh: None,
    })
}
