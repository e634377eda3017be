//! The application: the hub and the engines wired together from the
//! configuration, and what the listener asks of them at shutdown.

use std::sync::Arc;

use engineio::Engine;
use hub::Hub;
use hub::store::Store;
use socketio::SocketIo;

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
    pub(crate) api: Arc<crate::api::ApiConfig>,
    /// API requests answered, by status code.
    pub(crate) api_requests: Arc<parking_lot::Mutex<std::collections::BTreeMap<u16, u64>>>,
    /// The SQL store.
    pub store: Store,
    /// The cluster bus, in cluster mode (`cluster.redis_url`).
    pub cluster: Option<cluster::Cluster>,
    /// The failures of the live state in Redis, in cluster mode.
    pub live: Option<Arc<crate::live::LiveStats>>,
    /// Dev mode's token signer (`POST /dev/token`), when `dev_mode` is on.
    pub dev: Option<Arc<crate::dev::DevTokens>>,
    /// The web client served at `/`, when it is built.
    pub web: Option<crate::web::WebClient>,
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
        // Before the store opens: a dev mode that cannot sign stops the start.
        crate::dev::DevTokens::check(config)?;
        let cluster = match config.cluster_config() {
            Some(settings) => Some(cluster::Cluster::start(settings)?),
            None => None,
        };
        if let Some(cluster) = &cluster {
            // Sharded pub/sub on a Redis before 7.0 stops the start: every
            // SSUBSCRIBE would fail.
            cluster.check_server().await?;
        }
        let mut hub_config = config.hub_config();
        let mut live = None;
        let mut cluster_typing = None;
        let mut shared_rates: Option<Arc<dyn hub::limits::SharedBuckets>> = None;
        if let Some(cluster) = &cluster {
            // The live state every node shares, in Redis; this node's
            // entries name it by its uid on the bus, so that they go with
            // it when it stops.
            let stats = Arc::new(crate::live::LiveStats::default());
            let presence = crate::live::RedisPresence::new(
                cluster,
                config.presence.max_lingering,
                stats.clone(),
            );
            let timers = config.chat.typing_timers();
            let typing = hub::components::chat::state::MemoryTyping::new(timers);
            let typing = crate::live::RedisTyping::new(cluster, typing, stats.clone());
            cluster_typing = Some(typing.clone());
            // The per-sender bounds (the components' and the API keys'),
            // every node's admits together.
            let rates: Arc<dyn hub::limits::SharedBuckets> =
                Arc::new(crate::live::RedisRates::new(
                    cluster,
                    std::time::Duration::from_millis(config.cluster.rate_timeout_ms),
                    stats.clone(),
                ));
            shared_rates = Some(rates.clone());
            hub_config.live = hub::LiveConfig {
                node: Some(cluster.uid().to_owned()),
                presence: Some(Arc::new(presence)),
                typing: Some(Arc::new(typing)),
                calls: Some(Arc::new(crate::live::RedisCalls::new(
                    cluster,
                    stats.clone(),
                ))),
                rates: Some(rates),
            };
            live = Some(stats);
            let recovery = hub_config.socketio.recovery;
            if recovery.enabled() && config.cluster.pubsub == crate::config::PubSubSection::Sharded
            {
                // Its log is published in the classic format (as Node's
                // sharded adapter, which keeps no sessions either).
                tracing::warn!(
                    "connection state recovery is off: it needs cluster.pubsub = \"classic\" \
                     (set socketio.recovery_window_ms = 0 to say so and silence this)"
                );
                hub_config.socketio.recovery.window = std::time::Duration::ZERO;
            } else if recovery.enabled() {
                // Sessions and missed events in Redis, for every node.
                if let Err(err) = cluster.recovery_store(recovery).await {
                    // Recovering from a node's memory would miss the other
                    // nodes' events: better none than a gap.
                    tracing::error!(
                        %err,
                        "connection state recovery is off: its key could not be read from Redis"
                    );
                    hub_config.socketio.recovery.window = std::time::Duration::ZERO;
                }
            }
            // Every namespace's rooms on this node, its broadcasts on the
            // bus (and recovery's store, when it is on).
            hub_config.socketio.adapter = cluster.adapters();
            // What another node's fetchSockets() sees of a socket here:
            // its user, as a Node app would keep it in `socket.data`.
            cluster.set_socket_data(|socket| {
                hub::auth::identity_of(socket).map(|id| serde_json::json!({ "user": id.user }))
            });
        }
        let hub = Hub::new(hub_config, &handlers::provided()).await?;
        if let Some(cluster) = &cluster {
            crate::live::watch_nodes(cluster, &hub);
            let others = crate::live::ClusterNodes(cluster.clone());
            hub.ctx.peers.set_others(Arc::new(others));
        }
        if let Some(cluster) = &cluster {
            // Once every namespace has its adapter: up means subscribed for
            // all of them.
            wait_for_bus(cluster, config).await;
        }
        let dev = crate::dev::DevTokens::from_config(config)?.map(Arc::new);
        let keys = config
            .api
            .keys
            .iter()
            .map(|key| key.resolve())
            .collect::<Result<Vec<_>, crate::config::ConfigError>>()?;
        let (per_sec, burst) = (config.api.recipients_per_sec, config.api.recipient_burst);
        let rates = match shared_rates {
            Some(shared) => {
                let secrets: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
                crate::api_rate::KeyRates::shared(&secrets, per_sec, burst, shared)
            }
            None => crate::api_rate::KeyRates::new(keys.len(), per_sec, burst),
        };
        let io = hub.io.clone();
        let engine = Engine::new(config.engine_config(), io.clone());
        if let (Some(cluster), Some(typing)) = (&cluster, cluster_typing) {
            crate::live::rejoin_clean(cluster, typing, engine.clone());
        }
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
            cluster,
            live,
            hub,
            dev,
            web: crate::web::WebClient::from_config(config),
            api: Arc::new(crate::api::ApiConfig {
                keys,
                max_body_bytes: config.api.max_body_bytes,
                cors_origins: config.api.cors_origins.clone(),
                rates,
            }),
        })
    }

    /// Stops the components' background work, then (what the last
    /// sockets' departures emitted flushed to the other nodes, within
    /// `grace`) the cluster bus, then the store.
    pub(crate) async fn close(&self, grace: std::time::Duration) {
        if let Some(cluster) = &self.cluster {
            cluster.close(grace).await;
        }
        self.hub.close().await;
    }

    pub(crate) fn close_all(&self) {
        self.engine.close_all();
        if let Some(raw) = &self.raw_engine {
            raw.close_all();
        }
    }

    pub(crate) fn session_count(&self) -> usize {
        self.engine.session_count() + self.raw_engine.as_ref().map_or(0, |e| e.session_count())
    }
}

/// Gives the cluster bus the time to connect and subscribe (its connect
/// timeout): a node whose Redis is not there yet still starts, and says so
/// on `/readyz` until it is.
async fn wait_for_bus(cluster: &cluster::Cluster, config: &Config) {
    let wait = std::time::Duration::from_millis(config.cluster.connect_timeout_ms);
    if cluster.wait_up(wait).await {
        tracing::info!(uid = cluster.uid(), "cluster mode: connected to Redis");
    } else {
        tracing::warn!(
            error = cluster.health().error.unwrap_or_default(),
            "cluster mode: Redis is not reachable yet; /readyz reports the node degraded \
             until it is (broadcasts wait in the publish queue)"
        );
    }
}
