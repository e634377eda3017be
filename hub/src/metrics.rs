//! Operator metrics in the Prometheus text format (version 0.0.4).

use std::fmt::Write as _;

/// One metric family: a name, help text, type, and its samples.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// `(labels, value)`; labels as `(name, value)` pairs.
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// The Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Family {
    /// A family with one unlabelled sample.
    pub fn single(name: &'static str, help: &'static str, kind: Kind, value: f64) -> Family {
        Family {
            name,
            help,
            kind,
            samples: vec![(Vec::new(), value)],
        }
    }
}

/// Renders families as the Prometheus text exposition format.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
        for (labels, value) in &family.samples {
            out.push_str(family.name);
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
            Family {
                name: "sb_sockets",
                help: "Sockets by namespace.",
                kind: Kind::Gauge,
                samples: vec![
                    (vec![("namespace", "/".to_owned())], 2.0),
                    (vec![("namespace", "/we\"ird\n".to_owned())], 1.0),
                ],
            },
        ];
        assert_eq!(
            render(&families),
            "# HELP sb_sessions Sessions open.\n# TYPE sb_sessions gauge\nsb_sessions 3\n\
             # HELP sb_sockets Sockets by namespace.\n# TYPE sb_sockets gauge\n\
             sb_sockets{namespace=\"/\"} 2\nsb_sockets{namespace=\"/we\\\"ird\\n\"} 1\n"
        );
    }
}
