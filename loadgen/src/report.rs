//! The report of `loadgen suite`: medians over the repetitions, the
//! Switchboard/Node ratios, the target checks, the text table printed at the
//! end, the raw runs as JSON lines and the generated section of
//! `docs/BENCHMARKS.md`. The ESN cases (`chat`, `notify`) have no Node peer:
//! they run Switchboard on SQLite and on PostgreSQL, and their table holds
//! the two stores' medians against the absolute aims.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::chart;

/// The markers around the generated section of `docs/BENCHMARKS.md`.
pub const BEGIN: &str = "<!-- bench:begin -->";
pub const END: &str = "<!-- bench:end -->";

/// A server measured: Switchboard (on SQLite, its default store, for the
/// ESN cases), Node, or Switchboard on PostgreSQL (ESN cases only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Switchboard,
    Node,
    SwitchboardPg,
}

impl Server {
    /// The servers of a peer case.
    pub const BOTH: [Server; 2] = [Server::Switchboard, Server::Node];
    /// The servers of an ESN case: the two stores.
    pub const STORES: [Server; 2] = [Server::Switchboard, Server::SwitchboardPg];

    /// The `--label` given to the scenario, and the key in the raw results.
    pub fn label(self) -> &'static str {
        match self {
            Server::Switchboard => "switchboard",
            Server::Node => "node",
            Server::SwitchboardPg => "switchboard-pg",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Server::Switchboard => "Switchboard",
            Server::Node => "Node",
            Server::SwitchboardPg => "Switchboard (PostgreSQL)",
        }
    }

    /// The name in an ESN case's tables.
    pub fn store_name(self) -> &'static str {
        match self {
            Server::Switchboard => "Switchboard (SQLite)",
            other => other.name(),
        }
    }
}

/// Which way a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    PerSec,
    Micros,
    /// Percent of one core.
    Percent,
}

/// What a figure is checked against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Switchboard's median at most this (absolute, in the figure's unit).
    SwAtMost(f64),
    /// Switchboard's median at least this (absolute).
    SwAtLeast(f64),
    /// Switchboard/Node at least this.
    RatioAtLeast(f64),
    /// Switchboard/Node at most this.
    RatioAtMost(f64),
}

/// A figure of a case: a number in the scenario's `metrics`, by path.
#[derive(Clone, Debug)]
pub struct Figure {
    /// `/`-separated path inside `metrics`, e.g. `latency_us/p99`.
    pub key: &'static str,
    pub name: &'static str,
    pub unit: Unit,
    pub better: Better,
    pub target: Option<Target>,
    /// Drawn in the chart.
    pub chart: bool,
}

/// One line of the matrix: a scenario with its parameters.
#[derive(Clone, Debug)]
pub struct Case {
    /// Short id, used by `--only` and in the raw results, e.g. `fanout-10k`.
    pub id: String,
    /// Human title for the tables.
    pub title: String,
    /// Short title for the chart.
    pub short: String,
    /// The loadgen subcommand.
    pub scenario: &'static str,
    /// Scenario arguments besides `--url`, `--pid`, `--label`, `--json-only`.
    pub args: Vec<String>,
    /// For `conns`: the connections every run should hold.
    pub expect_connections: Option<u64>,
    /// What a run should take, for the budget.
    pub estimate_secs: u64,
    /// Hard limit of one scenario run.
    pub timeout_secs: u64,
    pub figures: Vec<Figure>,
    /// An ESN case: Switchboard on SQLite and on PostgreSQL (bench/esn.toml,
    /// a fresh store every run), no Node; targets on the SQLite median.
    pub esn: bool,
}

impl Case {
    /// The servers this case runs against, in the order they alternate.
    pub fn servers(&self) -> [Server; 2] {
        if self.esn {
            Server::STORES
        } else {
            Server::BOTH
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Ok,
    Failed(String),
    Skipped(String),
}

/// One scenario run against a fresh server.
#[derive(Clone, Debug)]
pub struct Run {
    pub case_id: String,
    pub server: Server,
    pub rep: u32,
    pub status: Status,
    pub wall_secs: f64,
    /// The scenario's JSON line.
    pub output: Option<Value>,
}

impl Run {
    pub fn metric(&self, key: &str) -> Option<f64> {
        let m = self.output.as_ref()?.get("metrics")?;
        m.pointer(&format!("/{key}"))?.as_f64()
    }

    /// A line of `bench-results.jsonl` back into a run.
    pub fn from_json(v: &Value) -> Option<Run> {
        let server = match v["server"].as_str()? {
            "switchboard" => Server::Switchboard,
            "node" => Server::Node,
            "switchboard-pg" => Server::SwitchboardPg,
            _ => return None,
        };
        let error = v["error"].as_str().unwrap_or_default().to_string();
        Some(Run {
            case_id: v["case"].as_str()?.to_string(),
            server,
            rep: u32::try_from(v["rep"].as_u64()?).ok()?,
            status: match v["status"].as_str()? {
                "ok" => Status::Ok,
                "skipped" => Status::Skipped(error),
                _ => Status::Failed(error),
            },
            wall_secs: v["wall_secs"].as_f64().unwrap_or(0.0),
            output: Some(v["result"].clone()).filter(|r| !r.is_null()),
        })
    }

    pub fn to_json(&self, meta: &Meta) -> Value {
        let (status, error) = match &self.status {
            Status::Ok => ("ok", None),
            Status::Failed(e) => ("failed", Some(e.clone())),
            Status::Skipped(e) => ("skipped", Some(e.clone())),
        };
        json!({
            "suite_started": meta.date,
            "suite_elapsed_secs": meta.elapsed_secs.round(),
            "commit": meta.commit,
            "quick": meta.quick,
            "case": self.case_id,
            "server": self.server.label(),
            "rep": self.rep,
            "status": status,
            "error": error,
            "wall_secs": (self.wall_secs * 10.0).round() / 10.0,
            "result": self.output,
        })
    }
}

/// What the report says about where and how it was measured.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// UTC, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    pub commit: String,
    pub machine: Vec<(String, String)>,
    pub reps: u32,
    pub quick: bool,
    pub elapsed_secs: f64,
    /// False when re-rendered from raw runs that did not record the suite time:
    /// `elapsed_secs` is then the runs' own time, a lower bound.
    pub elapsed_known: bool,
}

/// Median of the values (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The outcome of a target check.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    Met(String),
    Missed(String),
    NoData,
    Report,
}

impl Check {
    pub fn text(&self) -> String {
        match self {
            Check::Met(s) => format!("met ({s})"),
            Check::Missed(s) => format!("MISSED ({s})"),
            Check::NoData => "no data".to_string(),
            Check::Report => "report".to_string(),
        }
    }
}

/// One line of the results table.
#[derive(Clone, Debug)]
pub struct Row {
    pub case: String,
    pub short: String,
    pub figure: String,
    pub sw_text: String,
    pub node_text: String,
    pub ratio: Option<f64>,
    pub better: Better,
    pub target: String,
    pub check: Check,
    pub chart: bool,
}

/// Per case and server: how the runs went.
#[derive(Clone, Debug)]
pub struct Health {
    pub case: String,
    pub short: String,
    pub server: Server,
    /// The server as the runs table names it.
    pub server_name: String,
    /// Of an ESN case (whose losses make the run fail instead).
    pub esn: bool,
    pub ok: usize,
    pub runs: usize,
    pub failures: f64,
    pub lost: Option<f64>,
    pub disconnects: Option<f64>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
}

/// Everything the report shows.
#[derive(Clone, Debug)]
pub struct Summary {
    pub rows: Vec<Row>,
    /// The ESN cases' rows: `sw_text` is SQLite's median, `node_text`
    /// PostgreSQL's.
    pub esn_rows: Vec<Row>,
    pub health: Vec<Health>,
    /// Switchboard's and Node's lost messages over every peer run that reports them.
    pub lost: (Option<f64>, Option<f64>),
    pub lost_check: Check,
}

impl Summary {
    pub fn targets(&self) -> (usize, usize) {
        let checked = self
            .rows
            .iter()
            .chain(&self.esn_rows)
            .map(|r| &r.check)
            .chain([&self.lost_check]);
        let (mut met, mut total) = (0, 0);
        for c in checked {
            match c {
                Check::Met(_) => {
                    met += 1;
                    total += 1;
                }
                Check::Missed(_) | Check::NoData => total += 1,
                Check::Report => {}
            }
        }
        (met, total)
    }

    /// The bars of the chart: the figures marked for it with both medians.
    pub fn chart_groups(&self) -> Vec<chart::Group> {
        self.rows
            .iter()
            .filter(|r| r.chart)
            .filter_map(|r| {
                Some(chart::Group {
                    title: r.short.clone(),
                    figure: r.figure.clone(),
                    ratio: r.ratio?,
                    lower_is_better: r.better == Better::Lower,
                })
            })
            .collect()
    }
}

fn ok_runs<'a>(runs: &'a [Run], case: &'a Case, server: Server) -> impl Iterator<Item = &'a Run> {
    runs.iter()
        .filter(move |r| r.case_id == case.id && r.server == server && r.status == Status::Ok)
}

fn sum_metric(runs: &[Run], case: &Case, server: Server, key: &str) -> Option<f64> {
    let vals: Vec<f64> = ok_runs(runs, case, server)
        .filter_map(|r| r.metric(key))
        .collect();
    (!vals.is_empty()).then(|| vals.iter().sum())
}

/// Computes medians, ratios and checks.
pub fn summarize(cases: &[Case], runs: &[Run]) -> Summary {
    let mut rows = Vec::new();
    let mut esn_rows = Vec::new();
    let mut health = Vec::new();
    for case in cases {
        let mut held_note = [None, None];
        let servers = case.servers();
        for (i, server) in servers.into_iter().enumerate() {
            let all: Vec<&Run> = runs
                .iter()
                .filter(|r| r.case_id == case.id && r.server == server)
                .collect();
            let ok: Vec<&Run> = ok_runs(runs, case, server).collect();
            let mut notes = Vec::new();
            if let Some(want) = case.expect_connections {
                let want_f = want as f64;
                let held: Vec<f64> = ok
                    .iter()
                    .filter_map(|r| r.metric("connections_ok"))
                    .collect();
                let short: Vec<f64> = held.iter().copied().filter(|c| *c < want_f).collect();
                if short.is_empty() {
                    if !held.is_empty() {
                        notes.push(format!("held all {} in every run", int(want_f)));
                    }
                } else {
                    let min = short.iter().copied().fold(want_f, f64::min);
                    notes.push(format!(
                        "{} of {} run(s) held fewer than {}, as few as {}",
                        short.len(),
                        held.len(),
                        int(want_f),
                        int(min)
                    ));
                    // In the main table only when the median run fell short too.
                    if short.len() * 2 > held.len() {
                        let median_held = median(&held).unwrap_or(0.0);
                        held_note[i] =
                            Some(format!("held only {} of {}", int(median_held), int(want_f)));
                    }
                }
            }
            if let Some(first) = case.figures.first() {
                let missing = ok.iter().filter(|r| r.metric(first.key).is_none()).count();
                if missing > 0 {
                    notes.push(format!("{missing} run(s) reported no {}", first.name));
                }
            }
            health.push(Health {
                case: case.title.clone(),
                short: case.short.clone(),
                server,
                server_name: if case.esn {
                    server.store_name()
                } else {
                    server.name()
                }
                .to_string(),
                esn: case.esn,
                ok: ok.len(),
                runs: all
                    .iter()
                    .filter(|r| !matches!(r.status, Status::Skipped(_)))
                    .count(),
                failures: sum_metric(runs, case, server, "failures").unwrap_or(0.0),
                lost: sum_metric(runs, case, server, "lost"),
                disconnects: sum_metric(runs, case, server, "disconnects"),
                notes,
                errors: all
                    .iter()
                    .filter_map(|r| match &r.status {
                        Status::Failed(e) | Status::Skipped(e) => Some(e.clone()),
                        Status::Ok => None,
                    })
                    .collect(),
            });
        }
        for fig in &case.figures {
            let med = |server| {
                let vals: Vec<f64> = ok_runs(runs, case, server)
                    .filter_map(|r| r.metric(fig.key))
                    .collect();
                median(&vals)
            };
            let (sw, node) = (med(servers[0]), med(servers[1]));
            let ratio = match (sw, node) {
                (Some(s), Some(n)) if n > 0.0 && s >= 0.0 && !case.esn => Some(s / n),
                _ => None,
            };
            let cell = |v: Option<f64>, note: &Option<String>| {
                let base = v.map_or_else(|| "no data".to_string(), |v| fmt_value(v, fig.unit));
                match note {
                    Some(n) => format!("{base} ({n})"),
                    None => base,
                }
            };
            let (target, check) = match fig.target {
                None => ("-".to_string(), Check::Report),
                Some(Target::SwAtMost(limit)) => (
                    format!("SW ≤ {}", fmt_value(limit, fig.unit)),
                    match sw {
                        None => Check::NoData,
                        Some(s) if s <= limit => Check::Met(fmt_value(s, fig.unit)),
                        Some(s) => Check::Missed(fmt_value(s, fig.unit)),
                    },
                ),
                Some(Target::SwAtLeast(floor)) => (
                    format!("≥ {}", fmt_value(floor, fig.unit)),
                    match sw {
                        None => Check::NoData,
                        Some(s) if s >= floor => Check::Met(fmt_value(s, fig.unit)),
                        Some(s) => Check::Missed(fmt_value(s, fig.unit)),
                    },
                ),
                Some(Target::RatioAtLeast(min)) => (
                    format!("≥ {}", fmt_ratio(min)),
                    match ratio {
                        None => Check::NoData,
                        Some(r) if r >= min => Check::Met(fmt_ratio(r)),
                        Some(r) => Check::Missed(fmt_ratio(r)),
                    },
                ),
                Some(Target::RatioAtMost(max)) => (
                    format!("≤ {}", fmt_ratio(max)),
                    match ratio {
                        None => Check::NoData,
                        Some(r) if r <= max => Check::Met(fmt_ratio(r)),
                        Some(r) => Check::Missed(fmt_ratio(r)),
                    },
                ),
            };
            let rows = if case.esn { &mut esn_rows } else { &mut rows };
            rows.push(Row {
                case: case.title.clone(),
                short: case.short.clone(),
                figure: fig.name.to_string(),
                sw_text: cell(sw, &held_note[0]),
                node_text: cell(node, &held_note[1]),
                ratio,
                better: fig.better,
                target,
                check,
                chart: fig.chart,
            });
        }
    }
    let total = |server: Server| {
        let vals: Vec<f64> = health
            .iter()
            .filter(|h| h.server == server && !h.esn)
            .filter_map(|h| h.lost)
            .collect();
        (!vals.is_empty()).then(|| vals.iter().sum::<f64>())
    };
    let lost = (total(Server::Switchboard), total(Server::Node));
    let lost_check = match lost.0 {
        // Only ESN cases: their losses fail the run instead.
        None if rows.is_empty() => Check::Report,
        None => Check::NoData,
        Some(0.0) => Check::Met("0".to_string()),
        Some(n) => Check::Missed(int(n)),
    };
    Summary {
        rows,
        esn_rows,
        health,
        lost,
        lost_check,
    }
}

/// `12,345`
pub fn int(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

pub fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes if v >= 1024.0 => format!("{:.2} KiB", v / 1024.0),
        Unit::Bytes => format!("{} B", int(v)),
        Unit::PerSec => format!("{}/s", int(v)),
        Unit::Micros if v >= 1_000_000.0 => format!("{:.2} s", v / 1e6),
        Unit::Micros if v >= 10_000.0 => format!("{:.1} ms", v / 1000.0),
        Unit::Micros if v >= 1000.0 => format!("{:.2} ms", v / 1000.0),
        Unit::Micros => format!("{} µs", int(v)),
        Unit::Percent => format!("{v:.0}%"),
    }
}

pub fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.1}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.3}×")
    }
}

fn table(header: &[&str], rows: &[Vec<String>], markdown: bool) -> String {
    let mut out = String::new();
    if markdown {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(
            &header.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ));
        out.push_str(&line(
            &header.iter().map(|_| "---".to_string()).collect::<Vec<_>>(),
        ));
        for r in rows {
            out.push_str(&line(
                &r.iter().map(|c| c.replace('|', "\\|")).collect::<Vec<_>>(),
            ));
        }
        return out;
    }
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    out.push_str(&line(header.iter().map(|s| s.to_string()).collect()));
    out.push_str(&line(width.iter().map(|w| "-".repeat(*w)).collect()));
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

fn figure_rows(list: &[Row], short: bool, esn: bool) -> Vec<Vec<String>> {
    let mut last_case = String::new();
    list.iter()
        .map(|r| {
            let case = if short { &r.short } else { &r.case };
            // The case once, on its first figure.
            let shown = if *case == last_case {
                String::new()
            } else {
                case.clone()
            };
            last_case = case.clone();
            let dir = match r.better {
                Better::Higher => "higher is better",
                Better::Lower => "lower is better",
            };
            let mut row = vec![
                shown,
                format!("{} ({dir})", r.figure),
                r.sw_text.clone(),
                r.node_text.clone(),
            ];
            if !esn {
                row.push(r.ratio.map_or("-".to_string(), fmt_ratio));
            }
            row.extend([r.target.clone(), r.check.text()]);
            row
        })
        .collect()
}

fn main_rows(s: &Summary, short: bool) -> Vec<Vec<String>> {
    let mut rows = figure_rows(&s.rows, short, false);
    let n = |v: Option<f64>| v.map_or("no data".to_string(), int);
    rows.push(vec![
        "every run reporting `lost`".to_string(),
        "lost messages, total".to_string(),
        n(s.lost.0),
        n(s.lost.1),
        "-".to_string(),
        "SW = 0".to_string(),
        s.lost_check.text(),
    ]);
    rows
}

const MAIN_HEADER: [&str; 7] = [
    "Case",
    "Figure (median)",
    "Switchboard",
    "Node",
    "SW/Node",
    "Target",
    "Status",
];
const ESN_HEADER: [&str; 6] = [
    "Case",
    "Figure (median)",
    "SQLite",
    "PostgreSQL",
    "Target (SQLite)",
    "Status",
];
const HEALTH_HEADER: [&str; 7] = [
    "Case",
    "Server",
    "Runs ok",
    "Failures",
    "Lost",
    "Disconnects",
    "Notes",
];

fn health_rows(s: &Summary, short: bool) -> Vec<Vec<String>> {
    s.health
        .iter()
        .map(|h| {
            let opt = |v: Option<f64>| v.map_or("-".to_string(), int);
            let mut notes = h.notes.clone();
            let mut errors = h.errors.clone();
            errors.dedup();
            for e in errors.iter().take(2) {
                notes.push(one_line(e, 90));
            }
            vec![
                if short {
                    h.short.clone()
                } else {
                    h.case.clone()
                },
                h.server_name.clone(),
                format!("{}/{}", h.ok, h.runs),
                int(h.failures),
                opt(h.lost),
                opt(h.disconnects),
                notes.join("; "),
            ]
        })
        .collect()
}

fn one_line(s: &str, max: usize) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        format!("{}...", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

/// The table printed at the end of the suite.
pub fn render_text(s: &Summary, meta: &Meta) -> String {
    let mut out = String::new();
    let (met, total) = s.targets();
    let _ = writeln!(
        out,
        "\nResults: medians of {} rep(s) per server per case{}; SW/Node = Switchboard median / Node median\n",
        meta.reps,
        if meta.quick {
            " (QUICK: small sizes, targets indicative only)"
        } else {
            ""
        }
    );
    if !s.rows.is_empty() {
        out.push_str(&table(&MAIN_HEADER, &main_rows(s, true), false));
        out.push('\n');
    }
    if !s.esn_rows.is_empty() {
        out.push_str("ESN scenarios (no Node peer: Switchboard on SQLite and on PostgreSQL, against the aims)\n");
        out.push_str(&table(
            &ESN_HEADER,
            &figure_rows(&s.esn_rows, true, true),
            false,
        ));
        out.push('\n');
    }
    out.push_str(&table(&HEALTH_HEADER, &health_rows(s, true), false));
    let _ = writeln!(out, "\nTargets met: {met} of {total}");
    out
}

/// The generated section of `docs/BENCHMARKS.md`, markers included.
pub fn render_markdown(s: &Summary, meta: &Meta, chart_file: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{BEGIN}");
    out.push_str(
        "<!-- Generated by `loadgen suite` (make bench): edits between these markers are overwritten. -->\n\n",
    );
    let _ = writeln!(out, "## Latest results\n");
    if meta.quick {
        out.push_str("> **Quick run** (`make bench-quick`): small sizes and one repetition; a smoke test, not the figures to quote.\n\n");
    }
    let _ = writeln!(out, "- Date: {}", meta.date);
    if !meta.commit.is_empty() {
        let _ = writeln!(out, "- Commit: `{}`", meta.commit);
    }
    for (k, v) in &meta.machine {
        let _ = writeln!(out, "- {k}: {v}");
    }
    let _ = writeln!(
        out,
        "- Repetitions: {} per server per case, alternating Switchboard and Node, a fresh server process for every run; the figures are medians",
        meta.reps
    );
    let _ = if meta.elapsed_known {
        writeln!(
            out,
            "- Suite wall time: {}",
            fmt_duration(meta.elapsed_secs)
        )
    } else {
        writeln!(
            out,
            "- Suite wall time: not recorded (the runs alone took {})",
            fmt_duration(meta.elapsed_secs)
        )
    };
    let (met, total) = s.targets();
    let _ = writeln!(out, "- Targets met: **{met} of {total}**\n");
    if !s.rows.is_empty() {
        out.push_str(&table(&MAIN_HEADER, &main_rows(s, false), true));
        out.push_str("\nSW/Node is the Switchboard median divided by the Node median, whichever way the figure is better.\n\n");
        if let Some(file) = chart_file {
            let _ = writeln!(
                out,
                "![Switchboard relative to Node (Node = 1), log scale]({file})\n"
            );
        }
    }
    if !s.esn_rows.is_empty() {
        out.push_str("### ESN scenarios: chat and notifications\n\n");
        out.push_str(ESN_NOTE);
        out.push_str(&table(
            &ESN_HEADER,
            &figure_rows(&s.esn_rows, false, true),
            true,
        ));
        out.push('\n');
    }
    out.push_str("### Runs\n\n");
    out.push_str(&table(&HEALTH_HEADER, &health_rows(s, false), true));
    out.push_str("\nFailures, lost messages and disconnects are totals over the runs; raw runs are in `bench-results.jsonl`.\n");
    let _ = writeln!(out, "{END}");
    out
}

/// Above the ESN table: why there is no Node column.
const ESN_NOTE: &str = "There is no Node peer for these: the reference server (`socket.io@4`) has no chat and no \
notifications, so the figures are compared with the aims of the issue instead (on SQLite, the default store). \
Each run starts Switchboard on `bench/esn.toml` with a fresh store: a new SQLite file, or a new database on a \
throwaway PostgreSQL server (`tests/postgres/with-postgres.sh`, which `make bench` wraps the suite in). A run \
with an error ack, an unanswered message, a seq gap or a lost delivery is marked failed and not counted. \
CPU is in percent of one core over the measured window: the load generator's beside the server's shows which \
side the machine's two cores were spent on.\n\n";

pub fn fmt_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{}m{:02}s", s / 60, s % 60)
}

/// Replaces the generated section of `doc` (between the markers) with `section`,
/// or appends it when the markers are missing.
pub fn splice(doc: &str, section: &str) -> String {
    if let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END))
        && b < e
    {
        let after = &doc[e + END.len()..];
        let after = after.strip_prefix('\n').unwrap_or(after);
        return format!("{}{}{}", &doc[..b], section, after);
    }
    let mut out = doc.trim_end().to_string();
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(section);
    out
}

/// All raw runs, one JSON object a line.
pub fn jsonl(runs: &[Run], meta: &Meta) -> String {
    runs.iter()
        .map(|r| format!("{}\n", r.to_json(meta)))
        .collect()
}
