//! The gateway's own metrics read back from their Prometheus text, so the
//! admin API and the console show the very figures Prometheus scrapes
//! (connect failures by reason, bytes per remote) without a second set of
//! counters that could drift from them.

use std::collections::BTreeMap;

/// One scrape's samples: metric name, labels, value.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Figures {
    /// The samples of a Prometheus text exposition; lines it cannot read
    /// are skipped.
    pub fn parse(text: &str) -> Figures {
        Figures {
            samples: text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .filter_map(parse_line)
                .collect(),
        }
    }

    /// The values of `metric`, summed by the value of `label` (samples
    /// without it are left out).
    pub fn by(&self, metric: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == metric) {
            if let Some(v) = s.label(label) {
                *out.entry(v.to_string()).or_insert(0.0) += s.value;
            }
        }
        out
    }

    /// The values of `metric` by `outer` then `inner` label.
    pub fn by_two(
        &self,
        metric: &str,
        outer: &str,
        inner: &str,
    ) -> BTreeMap<String, BTreeMap<String, f64>> {
        let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == metric) {
            if let (Some(o), Some(i)) = (s.label(outer), s.label(inner)) {
                *out.entry(o.to_string())
                    .or_default()
                    .entry(i.to_string())
                    .or_insert(0.0) += s.value;
            }
        }
        out
    }
}

/// `name{a="x",b="y"} value [timestamp]`, or `name value`.
fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inner) => parse_labels(inner)?,
        None => (Vec::new(), rest),
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The labels up to the closing `}`, and what follows it.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        s = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP gateway_remote_bytes_read_total Bytes read.
# TYPE gateway_remote_bytes_read_total counter
gateway_remote_bytes_read_total{remote="partner"} 1024
gateway_remote_bytes_read_total{remote="odd \"name\", x"} 7
gateway_remote_connect_failures_total{remote="partner",reason="refused"} 2
gateway_remote_connect_failures_total{remote="partner",reason="timeout"} 0
gateway_remote_connect_failures_total{reason="refused",remote="other"} 1
gateway_sessions 3
process_start_time_seconds 1.7e9
garbage line
"#;

    #[test]
    fn samples_are_read_by_label() {
        let f = Figures::parse(TEXT);
        let read = f.by("gateway_remote_bytes_read_total", "remote");
        assert_eq!(read.get("partner"), Some(&1024.0));
        assert_eq!(read.get("odd \"name\", x"), Some(&7.0));
        let failures = f.by_two("gateway_remote_connect_failures_total", "remote", "reason");
        assert_eq!(failures["partner"]["refused"], 2.0);
        assert_eq!(failures["partner"]["timeout"], 0.0);
        assert_eq!(failures["other"]["refused"], 1.0);
        assert!(f.by("gateway_sessions", "remote").is_empty());
    }
}
