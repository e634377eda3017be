//! The listener: accepts TCP connections, serves HTTP/1.1 on each (with
//! WebSocket upgrades), routes requests to the engines, and shuts down
//! gracefully: stop accepting, close every session so that clients
//! reconnect elsewhere, let in-flight requests finish, bounded in time.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use engineio::Engine;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hub::Hub;
use hub::store::Store;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socketio::SocketIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::Config;
use crate::handlers;
use crate::handlers::echo::RawEcho;

/// Everything a request can be routed to.
#[derive(Clone)]
pub struct App {
    /// The Socket.IO server.
    pub io: SocketIo,
    /// Its Engine.IO server.
    pub engine: Engine<SocketIo>,
    /// The raw Engine.IO echo (conformance only).
    pub raw_engine: Option<Engine<RawEcho>>,
    /// The hub: namespaces, components, store.
    pub hub: Hub,
    /// The publish API's settings.
    api: Arc<crate::api::ApiConfig>,
    /// API requests answered, by status code.
    api_requests: Arc<parking_lot::Mutex<std::collections::BTreeMap<u16, u64>>>,
    /// The SQL store.
    pub store: Store,
}

/// The HS256 secret tokens are signed with: the configured one, or the
/// development secret kept in `data_dir` (shared by `serve` and `token`).
pub fn signing_secret(config: &Config) -> anyhow::Result<String> {
    Ok(hub::assembly::signing_secret(
        &config.hub_config().identity,
    )?)
}

impl App {
    /// Opens (and migrates) the store, and builds the servers and
    /// namespaces the configuration describes.
    pub async fn new(config: &Config) -> anyhow::Result<App> {
        let hub = Hub::new(config.hub_config(), &handlers::provided()).await?;
        let io = hub.io.clone();
        let engine = Engine::new(config.engine_config(), io.clone());
        let raw_engine = config.raw_engine.as_ref().map(|raw| {
            let mut engine_config = config.engine_config();
            engine_config.path = raw.path.clone();
            Engine::new(engine_config, RawEcho)
        });
        Ok(App {
            io,
            engine,
            raw_engine,
            api_requests: Arc::default(),
            store: hub.store.clone(),
            hub,
            api: Arc::new(crate::api::ApiConfig {
                keys: config.api.keys.clone(),
                max_body_bytes: config.api.max_body_bytes,
            }),
        })
    }

    async fn route(self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if self.engine.matches_path(path) {
            return self.engine.handle(req).await;
        }
        if let Some(raw) = &self.raw_engine
            && raw.matches_path(path)
        {
            return raw.handle(req).await;
        }
        if path.starts_with("/api/v1/") {
            let response = crate::api::handle(&self.io, &self.api, req).await;
            *self
                .api_requests
                .lock()
                .entry(response.status().as_u16())
                .or_default() += 1;
            return response;
        }
        match (req.method(), path) {
            (&http::Method::GET, "/healthz") => {
                crate::api::reply(StatusCode::OK, serde_json::json!({"status": "ok"}))
            }
            (&http::Method::GET, "/readyz") => self.readiness().await,
            (&http::Method::GET, "/metrics") => {
                let mut response = Response::new(Full::from(self.metrics()));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            _ => crate::api::failure(StatusCode::NOT_FOUND, "not_found", "no such path"),
        }
    }

    /// Ready to serve: the store answers (within `store.timeout_ms`).
    async fn readiness(&self) -> Response<Full<Bytes>> {
        let backend = self.store.backend().as_str();
        match self.store.ping().await {
            Ok(took) => crate::api::reply(
                StatusCode::OK,
                serde_json::json!({
                    "status": "ready",
                    "store": {"backend": backend, "latency_ms": took.as_secs_f64() * 1e3},
                }),
            ),
            Err(err) => {
                tracing::warn!(%err, "not ready: the store does not answer");
                crate::api::reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({
                        "status": "unavailable",
                        "error": {"code": "store_unreachable", "message": err.to_string()},
                        "store": {"backend": backend},
                    }),
                )
            }
        }
    }

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
             socketio.max_pending_events events waiting for its handler.",
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
        render(&[
            api_requests,
            fanout,
            Family::single(
                "switchboard_connections",
                "Engine.IO sessions open (one per client connection).",
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

    fn close_all(&self) {
        self.engine.close_all();
        if let Some(raw) = &self.raw_engine {
            raw.close_all();
        }
    }

    fn session_count(&self) -> usize {
        self.engine.session_count() + self.raw_engine.as_ref().map_or(0, |e| e.session_count())
    }
}

/// Binds every configured address (a host name binds all it resolves to).
pub async fn bind(addresses: &[String]) -> anyhow::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for address in addresses {
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host(address.as_str())
            .await
            .with_context(|| format!("resolving listen address {address}"))?
            .collect();
        let mut bound = 0;
        for addr in &resolved {
            match listen(*addr) {
                Ok(listener) => {
                    listeners.push(listener);
                    bound += 1;
                }
                // `localhost` may resolve to an IPv6 address the machine lacks.
                Err(err) if resolved.len() > 1 => tracing::warn!(%addr, %err, "cannot listen"),
                Err(err) => return Err(err).with_context(|| format!("listening on {addr}")),
            }
        }
        if bound == 0 {
            anyhow::bail!("could not listen on any address of {address}");
        }
    }
    Ok(listeners)
}

/// Pending connections the kernel may queue for `accept` (tokio's default
/// is smaller; a reconnect storm after a node restart needs more).
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves until `shutdown` completes, then drains.
pub async fn run(
    listeners: Vec<TcpListener>,
    config: &Config,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    app.hub.start();
    let limit = Arc::new(Semaphore::new(config.server.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        tracing::info!(addr = %listener.local_addr()?, "listening");
        accept_tasks.push(tokio::spawn(accept_loop(
            listener,
            app.clone(),
            limit.clone(),
            stop_rx.clone(),
        )));
    }

    shutdown.await;
    tracing::info!("shutting down: closing sessions");
    // Stop accepting before closing anything: a client told to reconnect
    // must not land here again. Awaiting the aborted tasks makes sure their
    // listeners are closed.
    for task in accept_tasks {
        task.abort();
        let _ = task.await;
    }
    let _ = stop_tx.send(true);
    app.close_all();

    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let drained = tokio::time::timeout(grace, async {
        let max = u32::try_from(config.server.max_connections).unwrap_or(u32::MAX);
        let _all = limit.acquire_many(max).await;
        while app.session_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(sessions = app.session_count(), "shutdown grace period over");
    }
    app.hub.close().await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    app: App,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(serve_connection(
            stream,
            app,
            stop,
            ConnectionPermit(Arc::new(permit)),
        ));
    }
}

/// A slot of `server.max_connections`. Each request carries a clone, and
/// the engine keeps a WebSocket's request extensions for as long as the
/// connection lives, so an upgraded connection keeps its slot.
#[derive(Clone)]
struct ConnectionPermit(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

async fn serve_connection(
    stream: TcpStream,
    app: App,
    mut stop: watch::Receiver<bool>,
    permit: ConnectionPermit,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |mut req: Request<Incoming>| {
        let app = app.clone();
        req.extensions_mut().insert(permit.clone());
        async move { Ok::<_, Infallible>(app.route(req).await) }
    });
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%err, "connection error");
            }
        }
        _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
