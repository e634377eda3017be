//! Figures read from a server's `/metrics`.

use std::net::SocketAddr;

use super::http;

/// The value of one sample line of `/metrics`, 0 if absent.
pub fn sample(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(line_start)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

/// Connections of namespace `/` closed for an inbox overflow, from `/metrics`.
pub async fn inbox_overflows(addr: SocketAddr) -> f64 {
    let metrics = http(addr, "GET", "/metrics", &[], "").await.body;
    sample(
        &metrics,
        "switchboard_inbox_overflow_disconnects_total{namespace=\"/\"}",
    )
}
