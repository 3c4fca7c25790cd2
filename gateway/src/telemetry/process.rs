//! The process metrics Prometheus client libraries export under the same
//! names (`process_*`), read from Linux's `/proc/self` at each scrape:
//! memory, CPU time, open files, threads, start time. Rendered as text
//! here because `process_cpu_seconds_total` is a fractional counter, which
//! the `metrics` facade cannot hold. On a system without `/proc` the lines
//! are left out.

use std::fmt::Write as _;

/// One process metric: name, Prometheus type and help text.
struct ProcessMetric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

const fn metric(name: &'static str, kind: &'static str, help: &'static str) -> ProcessMetric {
    ProcessMetric { name, kind, help }
}

/// The process metrics, in the order [`ProcessFigures::values`] gives them.
const METRICS: [ProcessMetric; 7] = [
    metric(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    ),
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    ),
    metric(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    ),
    metric(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
    ),
    metric(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
    ),
    metric(
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
    ),
    metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    ),
];

/// The process metrics' names.
pub fn names() -> impl Iterator<Item = &'static str> {
    METRICS.iter().map(|m| m.name)
}

/// What `/proc` says about this process now.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessFigures {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<u64>,
    /// File descriptors open.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// Threads.
    pub threads: Option<u64>,
    /// When the process started, Unix time in seconds.
    pub start_time_seconds: Option<f64>,
}

impl ProcessFigures {
    /// The figures in the order of [`METRICS`].
    fn values(&self) -> [Option<f64>; 7] {
        let float = |v: Option<u64>| v.map(|v| v as f64);
        [
            self.cpu_seconds,
            float(self.resident_bytes),
            float(self.virtual_bytes),
            float(self.open_fds),
            float(self.max_fds),
            float(self.threads),
            self.start_time_seconds,
        ]
    }
}

/// Reads the figures of this process.
pub fn read() -> ProcessFigures {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields = stat.as_deref().and_then(stat_fields_after_name);
    let field = |i: usize| fields.as_ref().and_then(|f| f.get(i)?.parse::<u64>().ok());
    // Numbering of proc(5) minus 3: the fields after `(comm)` start at 3.
    let (utime, stime, threads, starttime, vsize) =
        (field(11), field(12), field(17), field(19), field(20));
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| boot_time_seconds(&s));
    let status = std::fs::read_to_string("/proc/self/status").ok();
    ProcessFigures {
        cpu_seconds: utime.zip(stime).map(|(u, s)| (u + s) as f64 / ticks),
        resident_bytes: status
            .as_deref()
            .and_then(|s| status_kib(s, "VmRSS:"))
            .map(|k| k * 1024),
        virtual_bytes: vsize,
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
        max_fds: rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
        threads,
        start_time_seconds: boot_time
            .zip(starttime)
            .map(|(boot, start)| boot as f64 + start as f64 / ticks),
    }
}

/// The fields of `/proc/PID/stat` after the `(comm)` field, which may hold
/// spaces and parentheses itself.
fn stat_fields_after_name(stat: &str) -> Option<Vec<String>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// `btime` of `/proc/stat`: when the system booted, Unix time.
fn boot_time_seconds(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `kB` figure of `/proc/PID/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The process metrics in the Prometheus text format.
pub fn render() -> String {
    render_figures(&read())
}

fn render_figures(f: &ProcessFigures) -> String {
    let mut out = String::new();
    for (m, value) in METRICS.iter().zip(f.values()) {
        if let Some(v) = value {
            let (name, kind, help) = (m.name, m.kind, m.help);
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n\n"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_plausibly() {
        let f = read();
        let rss = f.resident_bytes.expect("VmRSS");
        assert!(rss > 1 << 20 && rss < 8 << 30, "rss {rss}");
        assert!(f.virtual_bytes.expect("vsize") >= rss);
        assert!(f.open_fds.expect("fds") >= 3);
        assert!(f.threads.expect("threads") >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let start = f.start_time_seconds.expect("start");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "start {start}"
        );
        assert!(f.cpu_seconds.expect("cpu") >= 0.0);
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 5 0 100 4096 10";
        let f = stat_fields_after_name(stat).expect("fields");
        assert_eq!(f[0], "S");
        assert_eq!(f[11], "7");
        assert_eq!(f[17], "5");
        assert_eq!(f[20], "4096");
    }

    #[test]
    fn rendering_leaves_out_what_could_not_be_read() {
        let text = render_figures(&ProcessFigures {
            cpu_seconds: Some(1.5),
            ..ProcessFigures::default()
        });
        assert!(text
            .contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n"));
        assert!(!text.contains("process_open_fds"));
    }
}
