//! The operator metrics: every counter and gauge of the engines, the
//! namespaces, the publish API, the store and (in cluster mode) the bus, in
//! the Prometheus text format (version 0.0.4). The counters are the engines' own (atomics, cheap on
//! the hot path); prometheus-client writes them out at each scrape.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text,
};
use prometheus_client::metrics::MetricType::{self, Counter, Gauge, Histogram};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use socketio::stats::{EventCounts, HistogramSnapshot, NamespaceStats};

use crate::app::App;

/// The `Content-Type` of [`App::metrics`].
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

impl App {
    /// The operator metrics, in the Prometheus text format.
    pub fn metrics(&self) -> String {
        // A registry per scrape: its collector must own what it reads, and
        // a clone of the app is a few reference counts.
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape(self.clone())));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &registry);
        out
    }
}

/// What a scrape reads: the app, when the registry asks.
struct Scrape(App);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

/// A histogram as read (cumulative buckets ending at `+Inf`).
struct Buckets(HistogramSnapshot);

impl EncodeMetric for Buckets {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        // The encoder sums the buckets itself: it wants each one's own count.
        let mut below = 0;
        let own: Vec<(f64, u64)> = (self.0.buckets.iter())
            .map(|&(bound, upto)| (bound, upto - std::mem::replace(&mut below, upto)))
            .collect();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum, self.0.count, &own, None)
    }

    fn metric_type(&self) -> MetricType {
        Histogram
    }
}

/// Writes one family: its header, then one sample per `(labels, value)`.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    samples: impl IntoIterator<Item = (L, M)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes a family of one sample without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    value: u64,
) -> std::fmt::Result {
    let family = encoder.encode_descriptor(name, help, None, kind)?;
    match kind {
        Gauge => ConstGauge::new(value).encode(family),
        _ => ConstCounter::new(value).encode(family),
    }
}

impl Collector for Scrape {
    // Families in name order, counters named without `_total` (the encoder
    // appends it to the name and the HELP and TYPE lines).
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let app = &self.0;
        let e = &mut encoder;
        let stats = app.engine.stats();
        let mut namespaces = app.io.namespaces();
        namespaces.sort_by(|a, b| a.name().cmp(b.name()));
        let per_ns = |value: fn(&socketio::Namespace) -> u64| {
            (namespaces.iter()).map(move |ns| ([("namespace", ns.name())], value(ns)))
        };
        let by_event = |counts: fn(&NamespaceStats) -> &EventCounts| {
            namespaces.iter().flat_map(move |ns| {
                (counts(ns.stats()).snapshot().into_iter()).map(|(event, n)| {
                    let labels = [("namespace", ns.name().to_owned()), ("event", event)];
                    (labels, ConstCounter::new(n))
                })
            })
        };
        let requests: Vec<(u16, u64)> = app
            .api_requests
            .lock()
            .iter()
            .map(|(s, n)| (*s, *n))
            .collect();
        family(
            e,
            (
                "switchboard_api_requests",
                "Publish API requests answered, by HTTP status.",
                Counter,
            ),
            (requests.iter()).map(|(s, n)| ([("status", s.to_string())], ConstCounter::new(*n))),
        )?;
        family(
            e,
            (
                "switchboard_broadcast_fanout",
                "Recipients per broadcast on this node, by namespace.",
                Histogram,
            ),
            (namespaces.iter()).map(|ns| {
                (
                    [("namespace", ns.name())],
                    Buckets(ns.stats().fanout.snapshot()),
                )
            }),
        )?;
        if let Some(cluster) = &app.cluster {
            cluster_families(e, cluster, app.live.as_deref())?;
        }
        single(
            e,
            (
                "switchboard_connections",
                "Engine.IO sessions open, polling and WebSocket (what server.max_connections counts).",
                Gauge,
            ),
            stats.sessions as u64,
        )?;
        single(
            e,
            (
                "switchboard_connections_eio3",
                "Of switchboard_connections, those of Engine.IO v3 clients (socket.io 1.x/2.x, engine.allow_eio3): when it stays at 0 the flag can go.",
                Gauge,
            ),
            stats.sessions_v3 as u64,
        )?;
        single(
            e,
            (
                "switchboard_dropped_packets",
                "Volatile packets dropped because a queue was full.",
                Counter,
            ),
            stats.volatile_dropped,
        )?;
        family(
            e,
            (
                "switchboard_events_received",
                "Events received from clients, by namespace and event \
                 (names beyond socketio.metrics_max_event_names count as _other).",
                Counter,
            ),
            by_event(|s| &s.events_in),
        )?;
        family(
            e,
            (
                "switchboard_events_sent",
                "Event packets queued to clients, by namespace and event \
                 (a broadcast counts once per recipient).",
                Counter,
            ),
            by_event(|s| &s.events_out),
        )?;
        family(
            e,
            (
                "switchboard_events_rate_limited",
                "Client events refused with rate_limited, by namespace.",
                Counter,
            ),
            per_ns(|ns| ns.stats().events_refused.load(Relaxed))
                .map(|(l, n)| (l, ConstCounter::new(n))),
        )?;
        let a = &stats.admission;
        family(
            e,
            (
                "switchboard_handshakes_refused",
                "Engine.IO handshakes refused, by reason (server.max_connections, \
                 server.max_sessions_per_address, server.handshakes_per_sec_per_address).",
                Counter,
            ),
            [
                ("server_full", a.refused_server_full),
                ("address_full", a.refused_address_full),
                ("rate_limited", a.refused_rate_limited),
            ]
            .map(|(reason, n)| ([("reason", reason)], ConstCounter::new(n))),
        )?;
        family(
            e,
            (
                "switchboard_inbox_overflow_disconnects",
                "Connections closed because a socket had more than socketio.max_pending_events \
                 events (or socketio.max_pending_bytes bytes) waiting for its handler.",
                Counter,
            ),
            per_ns(|ns| ns.stats().inbox_overflows.load(Relaxed))
                .map(|(l, n)| (l, ConstCounter::new(n))),
        )?;
        family(
            e,
            (
                "switchboard_recoveries",
                "CONNECTs that asked to recover a socket (connection state recovery), \
                 by namespace and outcome: recovered, or not (session unknown, expired, \
                 dropped for room or another user's; missed events no longer all kept).",
                Counter,
            ),
            namespaces.iter().flat_map(|ns| {
                let stats = ns.stats();
                [
                    ("recovered", stats.recovered.load(Relaxed)),
                    ("not_recovered", stats.not_recovered.load(Relaxed)),
                ]
                .map(|(outcome, n)| {
                    let labels = [("namespace", ns.name()), ("outcome", outcome)];
                    (labels, ConstCounter::new(n))
                })
            }),
        )?;
        let held = (app.io.session_store()).map_or_else(Default::default, |store| store.usage());
        single(
            e,
            (
                "switchboard_recovery_bytes",
                "Bytes kept for connection state recovery: events and sessions \
                 (what socketio.recovery_max_bytes bounds).",
                Gauge,
            ),
            held.bytes,
        )?;
        single(
            e,
            (
                "switchboard_recovery_events",
                "Events kept for connection state recovery.",
                Gauge,
            ),
            held.packets,
        )?;
        single(
            e,
            (
                "switchboard_recovery_sessions",
                "Sessions of dropped sockets kept for connection state recovery \
                 (what socketio.recovery_max_sessions bounds).",
                Gauge,
            ),
            held.sessions,
        )?;
        single(
            e,
            (
                "switchboard_slow_consumer_disconnects",
                "Connections closed because their outbound queue stayed full.",
                Counter,
            ),
            stats.slow_consumer_disconnects,
        )?;
        family(
            e,
            (
                "switchboard_sockets",
                "Socket.IO sockets connected, by namespace.",
                Gauge,
            ),
            per_ns(|ns| ns.len() as u64).map(|(l, n)| (l, ConstGauge::new(n))),
        )?;
        family(
            e,
            (
                "switchboard_store_query_seconds",
                "Store query latency (readiness checks included), by backend.",
                Histogram,
            ),
            [(
                [("backend", app.store.backend().as_str())],
                Buckets(app.store.latency()),
            )],
        )
    }
}

/// The cluster bus's figures (cluster mode only), in name order.
fn cluster_families(
    e: &mut DescriptorEncoder,
    cluster: &cluster::Cluster,
    live: Option<&crate::live::LiveStats>,
) -> std::fmt::Result {
    let s = cluster.stats();
    let health = cluster.health();
    let counted = |pairs: &[(&'static str, u64)], label: &'static str| {
        (pairs.iter())
            .map(|&(value, n)| ([(label, value)], ConstCounter::new(n)))
            .collect::<Vec<_>>()
    };
    single(
        e,
        (
            "switchboard_cluster_nodes",
            "Switchboard nodes alive in the cluster, this one included (by heartbeats; \
             Node nodes are not counted).",
            Gauge,
        ),
        cluster.nodes().len() as u64 + 1,
    )?;
    family(
        e,
        (
            "switchboard_cluster_publish_dropped",
            "Broadcasts delivered on this node but not published to the others, by reason: \
             queue_full (cluster.publish_queue or publish_queue_bytes), too_large \
             (cluster.max_message_bytes), failed (a pipeline that broke), closed (after shutdown).",
            Counter,
        ),
        counted(
            &[
                ("queue_full", s.dropped_queue_full),
                ("too_large", s.dropped_too_large),
                ("failed", s.publish_failed),
                ("closed", s.dropped_closed),
            ],
            "reason",
        ),
    )?;
    single(
        e,
        (
            "switchboard_cluster_publish_queue",
            "Broadcasts waiting to be published (bounded by cluster.publish_queue).",
            Gauge,
        ),
        s.queued as u64,
    )?;
    single(
        e,
        (
            "switchboard_cluster_publish_queue_bytes",
            "Bytes of the broadcasts waiting to be published (bounded by cluster.publish_queue_bytes).",
            Gauge,
        ),
        s.queued_bytes as u64,
    )?;
    single(
        e,
        (
            "switchboard_cluster_published",
            "Broadcasts published to Redis.",
            Counter,
        ),
        s.published,
    )?;
    family(
        e,
        (
            "switchboard_cluster_received",
            "Bus messages received, by outcome: delivered, own (this node's, back from Redis), \
             unknown_room (no socket here in its room), out_of_touch (read while this node \
             rejoins after a freeze or a cut subscription: its clients recover them from the log), other_namespace, \
             malformed, too_large.",
            Counter,
        ),
        counted(
            &[
                ("delivered", s.delivered),
                ("own", s.own),
                ("unknown_room", s.unknown_room),
                ("out_of_touch", s.out_of_touch),
                ("other_namespace", s.other_namespace),
                ("malformed", s.malformed),
                ("too_large", s.received_too_large),
            ],
            "outcome",
        ),
    )?;
    family(
        e,
        (
            "switchboard_cluster_reconnects",
            "Connections to Redis opened again after a failure, by connection.",
            Counter,
        ),
        counted(
            &[
                ("publish", s.publish_reconnects),
                ("subscribe", s.subscribe_reconnects),
            ],
            "connection",
        ),
    )?;
    family(
        e,
        (
            "switchboard_cluster_redis_up",
            "Whether each connection to Redis works (1) or not (0).",
            Gauge,
        ),
        [
            ("publish", health.publish_up),
            ("subscribe", health.subscribe_up),
        ]
        .map(|(connection, up)| ([("connection", connection)], ConstGauge::new(u64::from(up)))),
    )?;
    single(
        e,
        (
            "switchboard_cluster_rejoins",
            "Times this node closed its clients' connections so that they reconnect and \
             recover what it may have missed: it had been silent past \
             cluster.heartbeat_timeout_ms (frozen, or cut off from Redis), so that the others \
             may have dropped it, or its subscription to Redis was cut.",
            Counter,
        ),
        s.rejoins,
    )?;
    single(
        e,
        (
            "switchboard_cluster_requests_incomplete",
            "Requests of this node to the others (the sockets of a room on every node, every \
             room, a server-side emit with acks) that ended without every node's answer \
             (cluster.request_timeout_ms).",
            Counter,
        ),
        s.requests_incomplete,
    )?;
    family(
        e,
        (
            "switchboard_cluster_requests_received",
            "Requests of other nodes or emitters (fetchSockets, allRooms, socketsJoin, \
             disconnectSockets, serverSideEmit, broadcasts with acks), by outcome: served, \
             malformed (requests or answers that could not be read).",
            Counter,
        ),
        counted(
            &[
                ("served", s.requests_served),
                ("malformed", s.requests_malformed),
            ],
            "outcome",
        ),
    )?;
    single(
        e,
        (
            "switchboard_cluster_requests_sent",
            "Requests of this node to the others that wait for answers.",
            Counter,
        ),
        s.requests_sent,
    )?;
    let Some(live) = live else {
        return Ok(());
    };
    let errors = [
        (
            "presence",
            &live.presence_unavailable,
            &live.presence_malformed,
        ),
        ("typing", &live.typing_unavailable, &live.typing_malformed),
        ("calls", &live.calls_unavailable, &live.calls_malformed),
        ("rates", &live.rates_unavailable, &live.rates_malformed),
    ];
    family(
        e,
        (
            "switchboard_cluster_state_errors",
            "Calls to the live state in Redis that failed, by state and kind: unavailable \
             (Redis down, slow or refusing; the client is answered unavailable, except for \
             rates: admitted on the node's own bucket), malformed \
             (a reply that is not what the script returns: keys written by something else).",
            Counter,
        ),
        errors.iter().flat_map(|(state, unavailable, malformed)| {
            [("unavailable", *unavailable), ("malformed", *malformed)].map(|(kind, n)| {
                (
                    [("state", *state), ("kind", kind)],
                    ConstCounter::new(n.load(std::sync::atomic::Ordering::Relaxed)),
                )
            })
        }),
    )
}
