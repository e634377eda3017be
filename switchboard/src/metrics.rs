//! The operator metrics: every counter and gauge of the engines, the
//! namespaces, the publish API and the store, in the Prometheus text format.

use crate::app::App;

impl App {
    /// The operator metrics, in the Prometheus text format.
    pub fn metrics(&self) -> String {
        use hub::metrics::{Family, Kind, render};
        let stats = self.engine.stats();
        let mut sockets = Family::new(
            "switchboard_sockets",
            "Socket.IO sockets connected, by namespace.",
            Kind::Gauge,
        );
        let mut events_in = Family::new(
            "switchboard_events_received_total",
            "Events received from clients, by namespace and event \
             (names beyond socketio.metrics_max_event_names count as _other).",
            Kind::Counter,
        );
        let mut events_out = Family::new(
            "switchboard_events_sent_total",
            "Event packets queued to clients, by namespace and event \
             (a broadcast counts once per recipient).",
            Kind::Counter,
        );
        let mut overflows = Family::new(
            "switchboard_inbox_overflow_disconnects_total",
            "Connections closed because a socket had more than \
             socketio.max_pending_events events (or socketio.max_pending_bytes bytes) waiting for its handler.",
            Kind::Counter,
        );
        let mut refused = Family::new(
            "switchboard_events_rate_limited_total",
            "Client events refused with rate_limited, by namespace.",
            Kind::Counter,
        );
        let mut fanout = Family::new(
            "switchboard_broadcast_fanout",
            "Recipients per broadcast on this node, by namespace.",
            Kind::Histogram,
        );
        let mut namespaces = self.io.namespaces();
        namespaces.sort_by(|a, b| a.name().cmp(b.name()));
        for ns in namespaces {
            let name = || ("namespace", ns.name().to_owned());
            sockets.push(vec![name()], ns.len() as f64);
            let stats = ns.stats();
            for (event, count) in stats.events_in.snapshot() {
                events_in.push(vec![name(), ("event", event)], count as f64);
            }
            for (event, count) in stats.events_out.snapshot() {
                events_out.push(vec![name(), ("event", event)], count as f64);
            }
            fanout.push_histogram(vec![name()], &stats.fanout.snapshot());
            refused.push(
                vec![name()],
                stats
                    .events_refused
                    .load(std::sync::atomic::Ordering::Relaxed) as f64,
            );
            overflows.push(
                vec![name()],
                stats
                    .inbox_overflows
                    .load(std::sync::atomic::Ordering::Relaxed) as f64,
            );
        }
        let mut api_requests = Family::new(
            "switchboard_api_requests_total",
            "Publish API requests answered, by HTTP status.",
            Kind::Counter,
        );
        for (status, count) in self.api_requests.lock().iter() {
            api_requests.push(vec![("status", status.to_string())], *count as f64);
        }
        let mut store_latency = Family::new(
            "switchboard_store_query_seconds",
            "Store query latency (readiness checks included), by backend.",
            Kind::Histogram,
        );
        store_latency.push_histogram(
            vec![("backend", self.store.backend().as_str().to_owned())],
            &self.store.latency(),
        );
        let mut refused_handshakes = Family::new(
            "switchboard_handshakes_refused_total",
            "Engine.IO handshakes refused, by reason (server.max_connections, \
             server.max_sessions_per_address, server.handshakes_per_sec_per_address).",
            Kind::Counter,
        );
        let a = &stats.admission;
        for (reason, n) in [
            ("server_full", a.refused_server_full),
            ("address_full", a.refused_address_full),
            ("rate_limited", a.refused_rate_limited),
        ] {
            refused_handshakes.push(vec![("reason", reason.to_owned())], n as f64);
        }
        render(&[
            api_requests,
            fanout,
            Family::single(
                "switchboard_connections",
                "Engine.IO sessions open, polling and WebSocket (what server.max_connections counts).",
                Kind::Gauge,
                stats.sessions as f64,
            ),
            Family::single(
                "switchboard_dropped_packets_total",
                "Volatile packets dropped because a queue was full.",
                Kind::Counter,
                stats.volatile_dropped as f64,
            ),
            events_in,
            events_out,
            refused,
            refused_handshakes,
            overflows,
            Family::single(
                "switchboard_slow_consumer_disconnects_total",
                "Connections closed because their outbound queue stayed full.",
                Kind::Counter,
                stats.slow_consumer_disconnects as f64,
            ),
            sockets,
            store_latency,
        ])
    }
}
