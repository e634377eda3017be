//! The listener: accepts TCP connections, serves HTTP/1.1 on each (with
//! WebSocket upgrades), hands each request to the application, and shuts
//! down gracefully: stop accepting, close every session so that clients
//! reconnect elsewhere, let in-flight requests finish, bounded in time.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt as _;

pub use crate::app::{App, signing_secret};
use crate::config::Config;
use crate::routes::Operator;

/// The listeners of a server: the public ones (`listen`), and the
/// operator's (`server.admin_listen`), which serve only `/healthz`,
/// `/readyz` and `/metrics`.
pub struct Listeners {
    pub public: Vec<TcpListener>,
    pub admin: Vec<TcpListener>,
}

impl Listeners {
    /// Binds `listen` and, when set, `server.admin_listen`.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let admin = match config.server.admin_listen.as_str() {
            "" => Vec::new(),
            address => bind(&[address.to_owned()]).await?,
        };
        Ok(Listeners {
            public: bind(&config.listen).await?,
            admin,
        })
    }
}

impl From<Vec<TcpListener>> for Listeners {
    fn from(public: Vec<TcpListener>) -> Listeners {
        Listeners {
            public,
            admin: Vec::new(),
        }
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
    listeners: impl Into<Listeners>,
    config: &Config,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    app.hub.start();
    if config.server.admin_listen.is_empty() && config.server.metrics_token.is_empty() {
        tracing::warn!(
            "neither server.admin_listen nor server.metrics_token is set: metrics and \
             readiness detail are served on the public listener"
        );
    }
    // Sessions are counted by the engine (`server.max_connections`); this
    // bounds the TCP connections, hence the file descriptors.
    let max_tcp = config.max_tcp_connections();
    let limit = Arc::new(Semaphore::new(max_tcp));
    // The admin listener has its own bound: idle connections filling the
    // public one must not lock operators out of /metrics and /readyz.
    let max_admin_tcp = config.server.admin_max_tcp_connections;
    let admin_limit = Arc::new(Semaphore::new(max_admin_tcp));
    let (stop_tx, stop_rx) = watch::channel(false);
    let listeners = listeners.into();
    let public = Site {
        app: app.clone(),
        router: crate::routes::router(&app, Operator::public(config)),
        engines: true,
    };
    let admin = Site {
        app: app.clone(),
        router: crate::routes::admin_router(&app, Operator::admin(config)),
        engines: false,
    };
    let mut accept_tasks = Vec::new();
    let all = (listeners.public.into_iter().map(|l| (l, &public, &limit))).chain(
        listeners
            .admin
            .into_iter()
            .map(|l| (l, &admin, &admin_limit)),
    );
    for (listener, site, limit) in all {
        let addr = listener.local_addr()?;
        match site.engines {
            true => tracing::info!(%addr, "listening"),
            false => tracing::info!(%addr, "listening (operator endpoints)"),
        }
        accept_tasks.push(tokio::spawn(accept_loop(
            listener,
            site.clone(),
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
        let max = u32::try_from(max_tcp).unwrap_or(u32::MAX);
        let _all = limit.acquire_many(max).await;
        let max_admin = u32::try_from(max_admin_tcp).unwrap_or(u32::MAX);
        let _admin = admin_limit.acquire_many(max_admin).await;
        while app.session_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(sessions = app.session_count(), "shutdown grace period over");
    }
    app.close(grace).await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    site: Site,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let site = site.clone();
        let stop = stop.clone();
        tokio::spawn(serve_connection(stream, peer, site, stop, Arc::new(permit)));
    }
}

/// What one listener serves: the engines' paths (on the public listener),
/// then the HTTP routes.
#[derive(Clone)]
struct Site {
    app: App,
    router: axum::Router,
    /// Whether Engine.IO requests are served here.
    engines: bool,
}

/// A response of either side: the engine's as it made it, or the router's.
type Body = Either<Full<Bytes>, axum::body::Body>;

impl Site {
    /// Engine.IO requests go to their engine untouched (its path is the
    /// measured one); everything else to the axum router.
    async fn respond(self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        if !self.engines {
            return self.route(req).await;
        }
        if self.app.engine.matches_path(path) {
            return self.app.engine.handle(req).await.map(Either::Left);
        }
        if let Some(raw) = &self.app.raw_engine
            && raw.matches_path(path)
        {
            return raw.handle(req).await.map(Either::Left);
        }
        self.route(req).await
    }

    async fn route(self, req: Request<Incoming>) -> Response<Body> {
        match self.router.oneshot(req).await {
            Ok(response) => response.map(Either::Right),
            Err(never) => match never {},
        }
    }
}

/// A slot of `server.max_tcp_connections` (or, on the admin listener,
/// `server.admin_max_tcp_connections`). Each request carries a clone as
/// its [`engineio::ConnectionGuard`], which the engine keeps for as long
/// as an upgraded connection lives, so a WebSocket keeps its slot.
type ConnectionPermit = Arc<OwnedSemaphorePermit>;

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    site: Site,
    mut stop: watch::Receiver<bool>,
    permit: ConnectionPermit,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |mut req: Request<Incoming>| {
        let site = site.clone();
        req.extensions_mut()
            .insert(engineio::ConnectionGuard(permit.clone()));
        // For the engine's per-address limits.
        req.extensions_mut().insert(engineio::ClientAddr(peer));
        async move { Ok::<_, Infallible>(site.respond(req).await) }
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
