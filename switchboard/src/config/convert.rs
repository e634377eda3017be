//! From the configuration to the settings each layer is built from: the
//! engine's ([`engineio::EngineConfig`]), Socket.IO's
//! ([`socketio::SocketIoConfig`]), the hub's ([`hub::HubConfig`]) and the
//! publish API's keys. Plain conversions of a validated configuration:
//! what a value may be is [`super::validate`]'s.

use std::path::Path;
use std::time::Duration;

use super::{ApiKeySection, Config, ConfigError};

impl ApiKeySection {
    /// The key and what it may do, checked.
    pub fn resolve(&self) -> Result<crate::api::ApiKey, ConfigError> {
        use crate::api::{ApiKey, Scope};
        let (key, scopes) = match self {
            ApiKeySection::Plain(key) => (key, Scope::ALL.to_vec()),
            ApiKeySection::Scoped(scoped) => {
                let scopes = scoped
                    .scopes
                    .iter()
                    .map(|name| {
                        Scope::parse(name).ok_or_else(|| {
                            ConfigError::invalid(
                                "api.keys",
                                format!("unknown scope {name:?} (publish, disconnect, read)"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if scopes.is_empty() {
                    return Err(ConfigError::invalid(
                        "api.keys",
                        "a key without scopes can do nothing: give it some or remove it",
                    ));
                }
                (&scoped.key, scopes)
            }
        };
        if key.trim().is_empty() {
            return Err(ConfigError::invalid(
                "api.keys",
                "a key is empty: every key needs a secret value",
            ));
        }
        Ok(ApiKey {
            key: key.clone(),
            scopes,
        })
    }
}

impl Config {
    /// Whether tokens are verified with RS256 keys only (no HS256 secret,
    /// but a public key or a JWKS): then this hub cannot sign tokens.
    pub fn rs256_only(&self) -> bool {
        let a = &self.auth;
        a.hs256_secret.is_empty()
            && (!a.rs256_public_key_file.is_empty()
                || !a.jwks_file.is_empty()
                || !a.jwks_url.is_empty())
    }

    /// The Engine.IO settings.
    pub fn engine_config(&self) -> engineio::EngineConfig {
        let e = &self.engine;
        let cors = if e.cors_origins.iter().any(|o| o == "*") {
            engineio::Cors::Any
        } else if e.cors_origins.is_empty() {
            engineio::Cors::SameOrigin
        } else {
            engineio::Cors::List(e.cors_origins.clone())
        };
        engineio::EngineConfig {
            path: e.path.clone(),
            ping_interval: Duration::from_millis(e.ping_interval_ms),
            ping_timeout: Duration::from_millis(e.ping_timeout_ms),
            max_payload: e.max_payload,
            upgrade_timeout: Duration::from_millis(e.upgrade_timeout_ms),
            allow_polling: e.transports.iter().any(|t| t == "polling"),
            allow_websocket: e.transports.iter().any(|t| t == "websocket"),
            cors,
            max_queued_frames: e.max_queued_frames,
            max_queued_bytes: e.max_queued_bytes,
            max_partial_bytes: e.max_partial_bytes,
            partial_timeout: Duration::from_millis(e.partial_timeout_ms),
            admission: self.admission(),
            allow_eio3: e.allow_eio3,
            allow_jsonp: e.allow_jsonp,
        }
    }

    /// Most TCP connections at once (`server.max_tcp_connections`, 0 =
    /// twice `server.max_connections`).
    pub fn max_tcp_connections(&self) -> usize {
        match self.server.max_tcp_connections {
            0 => self.server.max_connections.saturating_mul(2),
            n => n,
        }
    }

    /// The proxies whose `X-Forwarded-For` is believed, parsed.
    pub(super) fn trusted_proxies(&self) -> Result<Vec<engineio::IpNet>, ConfigError> {
        const KEY: &str = "server.trusted_proxies";
        self.server
            .trusted_proxies
            .iter()
            .map(|p| {
                let net = p
                    .parse::<engineio::IpNet>()
                    .map_err(|err| ConfigError::invalid(KEY, err.to_string()))?;
                // A catch-all would trust every peer's X-Forwarded-For: any
                // client could pick the address it is counted under.
                if net.prefix() == 0 {
                    return Err(ConfigError::invalid(
                        KEY,
                        format!(
                            "{p:?} trusts every address; \
                             list only your proxies' addresses or networks"
                        ),
                    ));
                }
                Ok(net)
            })
            .collect()
    }

    /// How many sessions the engine admits.
    fn admission(&self) -> engineio::AdmissionConfig {
        let s = &self.server;
        engineio::AdmissionConfig {
            max_sessions: s.max_connections,
            max_sessions_per_address: s.max_sessions_per_address,
            handshakes_per_sec_per_address: s.handshakes_per_sec_per_address,
            handshake_burst_per_address: s.handshake_burst_per_address,
            // Checked by `validate`.
            trusted_proxies: self.trusted_proxies().unwrap_or_default(),
        }
    }

    /// What each socket of a component namespace may ask.
    pub fn limits(&self) -> hub::limits::Limits {
        let l = &self.limits;
        hub::limits::Limits {
            rate: hub::limits::RateLimit {
                per_sec: l.events_per_sec,
                burst: l.event_burst,
            },
            rooms: hub::limits::RoomLimits {
                max_rooms_per_socket: l.max_rooms_per_socket,
                max_room_len: l.max_room_len,
            },
        }
    }

    /// The store settings; an empty URL means `switchboard.db` in `data_dir`.
    pub fn store_config(&self) -> hub::store::StoreConfig {
        let url = if self.store.url.is_empty() {
            hub::store::sqlite_url_of(&Path::new(&self.data_dir).join("switchboard.db"))
        } else {
            self.store.url.clone()
        };
        hub::store::StoreConfig {
            url,
            max_connections: self.store.max_connections,
            timeout: Duration::from_millis(self.store.timeout_ms),
        }
    }

    /// The hub's configuration: the store, the identity settings, the
    /// limits, the Socket.IO settings and the namespaces, as plain data.
    pub fn hub_config(&self) -> hub::HubConfig {
        let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
        let a = &self.auth;
        hub::HubConfig {
            store: self.store_config(),
            identity: hub::IdentityConfig {
                hs256_secret: non_empty(&a.hs256_secret),
                rs256_public_key_file: non_empty(&a.rs256_public_key_file).map(Into::into),
                jwks_file: non_empty(&a.jwks_file).map(Into::into),
                data_dir: self.data_dir.clone().into(),
                jwks_url: non_empty(&a.jwks_url).map(|url| hub::jwks::JwksSource {
                    url,
                    ca_file: non_empty(&a.jwks_ca_file).map(Into::into),
                    refresh: Duration::from_secs(a.jwks_refresh_secs),
                    min_refresh: Duration::from_secs(a.jwks_min_refresh_secs),
                    max_bytes: a.jwks_max_bytes,
                    timeout: Duration::from_millis(a.jwks_timeout_ms),
                }),
                claims: hub::identity::ClaimRules {
                    issuer: non_empty(&a.issuer),
                    audience: a.audience.clone(),
                    leeway_secs: a.leeway_secs,
                    accept_dev: self.dev_mode,
                },
            },
            limits: self.limits(),
            socketio: self.socketio_config(),
            namespaces: self
                .namespaces
                .iter()
                .map(|ns| hub::NamespaceConfig {
                    name: ns.name.clone(),
                    handler: ns.handler.clone(),
                    auth: ns.auth,
                    backend: non_empty(&ns.backend).map(|url| hub::BackendConfig {
                        url,
                        timeout: Duration::from_millis(ns.backend_timeout_ms),
                        secret: non_empty(&ns.backend_secret),
                    }),
                })
                .collect(),
            components: hub::ComponentsConfig {
                notifications: self.notifications.clone(),
                chat: self.chat.clone(),
                presence: self.presence.clone(),
                calls: self.calls.clone(),
            },
            // In cluster mode the application puts the Redis state here.
            live: hub::LiveConfig::default(),
        }
    }

    /// The cluster's settings, when `cluster.redis_url` is set (without
    /// it, one embedded node).
    pub fn cluster_config(&self) -> Option<cluster::ClusterConfig> {
        let c = &self.cluster;
        if c.redis_url.is_empty() {
            return None;
        }
        Some(cluster::ClusterConfig {
            redis_url: c.redis_url.clone(),
            redis_ca_file: (!c.redis_ca_file.is_empty()).then(|| c.redis_ca_file.clone().into()),
            key_prefix: c.key_prefix.clone(),
            publish_queue: c.publish_queue,
            publish_queue_bytes: c.publish_queue_bytes,
            publish_batch: c.publish_batch,
            max_message_bytes: c.max_message_bytes,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            command_timeout: Duration::from_millis(c.command_timeout_ms),
            health_interval: Duration::from_millis(c.health_interval_ms),
            request_timeout: Duration::from_millis(c.request_timeout_ms),
            heartbeat_interval: Duration::from_millis(c.heartbeat_interval_ms),
            heartbeat_timeout: Duration::from_millis(c.heartbeat_timeout_ms),
            reconnect_min: Duration::from_millis(c.reconnect_min_ms),
            reconnect_max: Duration::from_millis(c.reconnect_max_ms),
            pubsub: match c.pubsub {
                super::schema::PubSubSection::Classic => cluster::config::PubSub::Classic,
                super::schema::PubSubSection::Sharded => cluster::config::PubSub::Sharded,
            },
            sharded_subscription_mode: match c.sharded_subscription_mode {
                super::schema::SubscriptionModeSection::Static => {
                    cluster::config::SubscriptionMode::Static
                }
                super::schema::SubscriptionModeSection::Dynamic => {
                    cluster::config::SubscriptionMode::Dynamic
                }
            },
        })
    }

    /// The Socket.IO settings.
    pub fn socketio_config(&self) -> socketio::SocketIoConfig {
        socketio::SocketIoConfig {
            connect_timeout: Duration::from_millis(self.socketio.connect_timeout_ms),
            max_attachments: self.socketio.max_attachments,
            stats: socketio::stats::StatsConfig {
                max_event_names: self.socketio.metrics_max_event_names,
                ..socketio::stats::StatsConfig::default()
            },
            max_pending_events: self.socketio.max_pending_events,
            max_pending_bytes: self.socketio.max_pending_bytes,
            max_attachment_bytes: match self.socketio.max_attachment_bytes {
                0 => self.engine.max_payload,
                bytes => bytes,
            },
            attachment_timeout: Duration::from_millis(self.socketio.attachment_timeout_ms),
            connects_per_sec: self.socketio.connects_per_sec,
            connect_burst: self.socketio.connect_burst,
            // The cluster's adapters are set by `App::new`, which starts
            // the bus (a runtime object, not a setting).
            adapter: socketio::AdapterFactory::default(),
            // In cluster mode the store is the cluster's (sessions and log
            // in Redis), set by `App::new` with the adapters.
            recovery: socketio::RecoveryConfig {
                window: Duration::from_millis(self.socketio.recovery_window_ms),
                max_bytes: self.socketio.recovery_max_bytes,
                max_sessions: self.socketio.recovery_max_sessions,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::tests::env;
    use std::time::Duration;

    #[test]
    fn defaults_match_the_reference_server() {
        let config = Config::load(None, env(&[])).unwrap();
        let engine = config.engine_config();
        assert_eq!(engine.ping_interval, Duration::from_millis(25_000));
        assert_eq!(engine.ping_timeout, Duration::from_millis(20_000));
        assert_eq!(engine.max_payload, 1_000_000);
        assert_eq!(engine.path, "/socket.io/");
        assert_eq!(
            config.socketio_config().connect_timeout,
            Duration::from_secs(45)
        );
    }

    #[test]
    fn attachments_are_bounded_by_max_payload_unless_configured() {
        let config =
            Config::load(None, env(&[("SWITCHBOARD_ENGINE_MAX_PAYLOAD", "5000")])).unwrap();
        assert_eq!(config.socketio_config().max_attachment_bytes, 5000);
        let config = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_SOCKETIO_MAX_ATTACHMENT_BYTES", "700"),
                ("SWITCHBOARD_SOCKETIO_CONNECTS_PER_SEC", "2"),
            ]),
        )
        .unwrap();
        let io = config.socketio_config();
        assert_eq!(io.max_attachment_bytes, 700);
        assert_eq!(io.connects_per_sec, 2.0);
        assert_eq!(io.attachment_timeout, Duration::from_secs(30));
    }

    #[test]
    fn recovery_is_on_by_default_and_off_with_a_zero_window() {
        let config = Config::load(None, env(&[])).unwrap();
        let recovery = config.socketio_config().recovery;
        assert_eq!(recovery.window, Duration::from_secs(120));
        assert!(recovery.enabled());
        let config = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_SOCKETIO_RECOVERY_WINDOW_MS", "0"),
                ("SWITCHBOARD_SOCKETIO_RECOVERY_MAX_BYTES", "1000"),
            ]),
        )
        .unwrap();
        let recovery = config.socketio_config().recovery;
        assert!(!recovery.enabled());
        assert_eq!(recovery.max_bytes, 1000);
        // Cluster mode: on too (kept in Redis).
        let config = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_CLUSTER_REDIS_URL", "redis://127.0.0.1:6379"),
                ("SWITCHBOARD_STORE_URL", "postgres://u@db/sb"),
            ]),
        )
        .unwrap();
        assert_eq!(config.socketio.recovery_window_ms, 120_000);
        assert!(config.socketio_config().recovery.enabled());
        let bad = Config::load(
            None,
            env(&[("SWITCHBOARD_SOCKETIO_RECOVERY_MAX_SESSIONS", "0")]),
        )
        .unwrap_err();
        assert!(
            format!("{bad:#}").contains("socketio.recovery_max_sessions"),
            "{bad:#}"
        );
    }

    #[test]
    fn admission_settings() {
        let config = Config::load(
            None,
            env(&[
                (
                    "SWITCHBOARD_SERVER_TRUSTED_PROXIES",
                    "10.0.0.0/8, 192.0.2.1",
                ),
                ("SWITCHBOARD_SERVER_MAX_CONNECTIONS", "1000"),
            ]),
        )
        .unwrap();
        let admission = config.engine_config().admission;
        assert_eq!(admission.max_sessions, 1000);
        assert_eq!(admission.trusted_proxies.len(), 2);
        assert_eq!(config.max_tcp_connections(), 2000);
        let bad = Config::load(
            None,
            env(&[("SWITCHBOARD_SERVER_TRUSTED_PROXIES", "10.0.0.0/99")]),
        )
        .unwrap_err();
        assert!(format!("{bad:#}").contains("10.0.0.0/99"), "{bad:#}");
    }

    #[test]
    fn the_audience_is_a_string_or_a_list_and_test_setup_is_a_top_level_flag() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("one.toml");
        std::fs::write(&path, "[auth]\naudience = \"switchboard\"\n").unwrap();
        let config = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(config.auth.audience, vec!["switchboard"]);
        assert!(!config.test_setup);
        let config = Config::load(
            None,
            env(&[
                ("SWITCHBOARD_AUTH_AUDIENCE", "switchboard, esn"),
                ("SWITCHBOARD_AUTH_LEEWAY_SECS", "5"),
                ("SWITCHBOARD_TEST_SETUP", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(config.auth.audience, vec!["switchboard", "esn"]);
        assert_eq!(config.hub_config().identity.claims.leeway_secs, 5);
        assert!(config.test_setup);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
