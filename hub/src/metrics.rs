//! Operator metrics in the Prometheus text format (version 0.0.4).

use std::fmt::Write as _;

use socketio::stats::HistogramSnapshot;

/// One metric family: a name, help text, type, and its samples.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// One line of a family.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Appended to the family's name (`_bucket`, `_sum`, `_count` for a
    /// histogram; empty otherwise).
    pub suffix: &'static str,
    /// `(name, value)` pairs.
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Family {
    /// A family with one unlabelled sample.
    pub fn single(name: &'static str, help: &'static str, kind: Kind, value: f64) -> Family {
        let mut family = Family::new(name, help, kind);
        family.push(Vec::new(), value);
        family
    }

    /// A family with no sample yet.
    pub fn new(name: &'static str, help: &'static str, kind: Kind) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample.
    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push(Sample {
            suffix: "",
            labels,
            value,
        });
    }

    /// Adds a histogram's buckets, sum and count.
    pub fn push_histogram(
        &mut self,
        labels: Vec<(&'static str, String)>,
        histogram: &HistogramSnapshot,
    ) {
        for (bound, count) in &histogram.buckets {
            let le = if bound.is_infinite() {
                "+Inf".to_owned()
            } else {
                bound.to_string()
            };
            let mut bucket_labels = labels.clone();
            bucket_labels.push(("le", le));
            self.samples.push(Sample {
                suffix: "_bucket",
                labels: bucket_labels,
                value: *count as f64,
            });
        }
        self.samples.push(Sample {
            suffix: "_sum",
            labels: labels.clone(),
            value: histogram.sum,
        });
        self.samples.push(Sample {
            suffix: "_count",
            labels,
            value: histogram.count as f64,
        });
    }
}

/// Renders families as the Prometheus text exposition format.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
        for Sample {
            suffix,
            labels,
            value,
        } in &family.samples
        {
            out.push_str(family.name);
            out.push_str(suffix);
            if !labels.is_empty() {
                out.push('{');
                for (i, (name, value)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
    }
    out
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let families = [
            Family::single("sb_sessions", "Sessions open.", Kind::Gauge, 3.0),
            {
                let mut family = Family::new("sb_sockets", "Sockets by namespace.", Kind::Gauge);
                family.push(vec![("namespace", "/".to_owned())], 2.0);
                family.push(vec![("namespace", "/we\"ird\n".to_owned())], 1.0);
                family
            },
        ];
        assert_eq!(
            render(&families),
            "# HELP sb_sessions Sessions open.\n# TYPE sb_sessions gauge\nsb_sessions 3\n\
             # HELP sb_sockets Sockets by namespace.\n# TYPE sb_sockets gauge\n\
             sb_sockets{namespace=\"/\"} 2\nsb_sockets{namespace=\"/we\\\"ird\\n\"} 1\n"
        );
    }

    #[test]
    fn renders_a_histogram_with_buckets_sum_and_count() {
        let histogram = socketio::stats::Histogram::new(&[0.5]);
        histogram.observe(0.25);
        histogram.observe(2.0);
        let mut family = Family::new("sb_latency_seconds", "Latency.", Kind::Histogram);
        family.push_histogram(vec![("op", "x".to_owned())], &histogram.snapshot());
        assert_eq!(
            render(&[family]),
            "# HELP sb_latency_seconds Latency.\n# TYPE sb_latency_seconds histogram\n\
             sb_latency_seconds_bucket{op=\"x\",le=\"0.5\"} 1\n\
             sb_latency_seconds_bucket{op=\"x\",le=\"+Inf\"} 2\n\
             sb_latency_seconds_sum{op=\"x\"} 2.25\n\
             sb_latency_seconds_count{op=\"x\"} 2\n"
        );
    }
}
