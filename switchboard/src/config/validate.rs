//! What values each key takes, checked once at start, every section the
//! same way: a value is refused, with an error naming its key
//! (`chat.max_page: must be between 1 and 500, got 0`), when it means
//! nothing (a zero-length limit on something that cannot be empty, a rate
//! that is not a number) or when the code that uses it would clamp it (a
//! refused value is then no longer silently replaced). Everything else —
//! including 0 where it turns a limit off — is accepted as it is.

use std::fmt::Display;

use super::{Config, ConfigError};

/// The longest lifetime of a dev mode token: 30 days.
const MAX_DEV_TOKEN_TTL_SECS: u64 = 30 * 86_400;

/// The largest `chat.max_page`: a `conversations` page is one compound
/// SELECT of a part per conversation, and SQLite takes 500 parts at most.
const MAX_CHAT_PAGE: i64 = 500;

/// The shortest period of the hub's periodic sweeps (chat's typing
/// expiry, the notifications' prune), in milliseconds: shorter ones would
/// be busy loops.
const MIN_SWEEP_MS: u64 = 10;

impl Config {
    /// Checks every section; the first value refused is the error.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_top()?;
        self.validate_server()?;
        self.validate_engine()?;
        self.validate_socketio()?;
        self.validate_namespaces()?;
        self.validate_log()?;
        self.validate_auth()?;
        self.validate_api()?;
        self.validate_store()?;
        self.validate_cluster()?;
        self.validate_limits()?;
        self.validate_notifications()?;
        self.validate_chat()?;
        self.validate_presence()?;
        self.validate_calls()?;
        Ok(())
    }

    fn validate_top(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::invalid("listen", "needs at least one address"));
        }
        between(
            "dev_token_ttl_secs",
            self.dev_token_ttl_secs,
            1,
            MAX_DEV_TOKEN_TTL_SECS,
        )
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        at_least("server.max_connections", s.max_connections, 1)?;
        // The listener counts its connections in a u32.
        if self.max_tcp_connections() > u32::MAX as usize {
            return Err(ConfigError::invalid(
                "server.max_tcp_connections",
                format!(
                    "must be at most {} (0: twice server.max_connections), got {}",
                    u32::MAX,
                    self.max_tcp_connections()
                ),
            ));
        }
        rate(
            "server.handshakes_per_sec_per_address",
            s.handshakes_per_sec_per_address,
        )?;
        burst(
            "server.handshake_burst_per_address",
            s.handshake_burst_per_address,
        )?;
        self.trusted_proxies()?;
        at_least(
            "server.admin_max_tcp_connections",
            s.admin_max_tcp_connections,
            1,
        )
    }

    fn validate_engine(&self) -> Result<(), ConfigError> {
        let e = &self.engine;
        if !e.path.starts_with('/') || !e.path.ends_with('/') {
            return Err(ConfigError::invalid(
                "engine.path",
                format!("must start and end with `/`, got {:?}", e.path),
            ));
        }
        at_least("engine.ping_interval_ms", e.ping_interval_ms, 1)?;
        at_least("engine.ping_timeout_ms", e.ping_timeout_ms, 1)?;
        at_least("engine.upgrade_timeout_ms", e.upgrade_timeout_ms, 1)?;
        at_least("engine.max_payload", e.max_payload, 1)?;
        for t in &e.transports {
            if t != "polling" && t != "websocket" {
                return Err(ConfigError::invalid(
                    "engine.transports",
                    format!("unknown transport {t:?} (polling, websocket)"),
                ));
            }
        }
        if e.transports.is_empty() {
            return Err(ConfigError::invalid(
                "engine.transports",
                "needs at least one transport (polling, websocket)",
            ));
        }
        at_least("engine.max_queued_frames", e.max_queued_frames, 1)?;
        at_least("engine.max_queued_bytes", e.max_queued_bytes, 1)?;
        at_least("engine.max_partial_bytes", e.max_partial_bytes, 1)?;
        at_least("engine.partial_timeout_ms", e.partial_timeout_ms, 1)?;
        // A v3 client is put in `/` by the server, never asks for it, and
        // waits for it before anything else (python-socketio 4 never joins
        // another namespace without it).
        if e.allow_eio3 && !self.namespaces.iter().any(|ns| ns.name == "/") {
            return Err(ConfigError::invalid(
                "engine.allow_eio3",
                "needs a `/` namespace: Engine.IO v3 clients are connected to it implicitly",
            ));
        }
        Ok(())
    }

    fn validate_socketio(&self) -> Result<(), ConfigError> {
        let io = &self.socketio;
        at_least("socketio.connect_timeout_ms", io.connect_timeout_ms, 1)?;
        at_least("socketio.max_pending_events", io.max_pending_events, 1)?;
        at_least("socketio.max_pending_bytes", io.max_pending_bytes, 1)?;
        at_least(
            "socketio.attachment_timeout_ms",
            io.attachment_timeout_ms,
            1,
        )?;
        rate("socketio.connects_per_sec", io.connects_per_sec)?;
        burst("socketio.connect_burst", io.connect_burst)?;
        at_least("socketio.recovery_max_bytes", io.recovery_max_bytes, 1)?;
        at_least(
            "socketio.recovery_max_sessions",
            io.recovery_max_sessions,
            1,
        )
    }

    fn validate_namespaces(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for ns in &self.namespaces {
            if !ns.name.starts_with('/') {
                return Err(ConfigError::invalid(
                    "namespaces.name",
                    format!("namespace {:?} must start with `/`", ns.name),
                ));
            }
            if !seen.insert(ns.name.as_str()) {
                return Err(ConfigError::invalid(
                    "namespaces.name",
                    format!("namespace {} is listed twice", ns.name),
                ));
            }
            if ns.handler == "testkit" && !self.test_setup {
                return Err(ConfigError::invalid(
                    "namespaces.handler",
                    format!(
                        "namespace {}: the testkit handler lets any client join any room; \
                         it runs only in a test setup (set `test_setup = true` at the top of \
                         the configuration, never in production)",
                        ns.name
                    ),
                ));
            }
            if !ns.backend.is_empty() {
                at_least("namespaces.backend_timeout_ms", ns.backend_timeout_ms, 1)?;
            }
        }
        Ok(())
    }

    fn validate_log(&self) -> Result<(), ConfigError> {
        one_of("log.format", &self.log.format, &["text", "json"])
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        if !a.jwks_url.is_empty()
            && !a.jwks_url.starts_with("http://")
            && !a.jwks_url.starts_with("https://")
        {
            return Err(ConfigError::invalid(
                "auth.jwks_url",
                "must be http://… or https://…",
            ));
        }
        if !a.jwks_ca_file.is_empty() && !a.jwks_url.starts_with("https://") {
            return Err(ConfigError::invalid(
                "auth.jwks_ca_file",
                "is trusted for an https auth.jwks_url only, and there is none",
            ));
        }
        at_least("auth.jwks_refresh_secs", a.jwks_refresh_secs, 1)?;
        at_least("auth.jwks_max_bytes", a.jwks_max_bytes, 1)?;
        at_least("auth.jwks_timeout_ms", a.jwks_timeout_ms, 1)?;
        if a.audience.iter().any(String::is_empty) {
            return Err(ConfigError::invalid(
                "auth.audience",
                "an audience cannot be empty",
            ));
        }
        Ok(())
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        at_least("api.max_body_bytes", self.api.max_body_bytes, 1)?;
        rate("api.recipients_per_sec", self.api.recipients_per_sec)?;
        burst("api.recipient_burst", self.api.recipient_burst)?;
        let mut seen = std::collections::HashMap::new();
        for (index, key) in self.api.keys.iter().enumerate() {
            let key = key.resolve()?;
            // The same secret twice would silently leave one entry's scopes
            // unused (the last would win): refused, without naming it.
            if let Some(first) = seen.insert(key.key, index) {
                return Err(ConfigError::invalid(
                    "api.keys",
                    format!(
                        "entries {} and {} hold the same key: \
                         give each key one entry with all its scopes",
                        first + 1,
                        index + 1
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_store(&self) -> Result<(), ConfigError> {
        let s = &self.store;
        if !s.url.is_empty() && hub::store::Backend::of(&s.url).is_none() {
            // Redacted: the URL may hold a password.
            return Err(ConfigError::invalid(
                "store.url",
                format!(
                    "{:?}: use sqlite:PATH or postgres://…",
                    hub::store::redact(&s.url)
                ),
            ));
        }
        at_least("store.max_connections", s.max_connections, 1)?;
        at_least("store.timeout_ms", s.timeout_ms, 1)
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if c.redis_url.is_empty() {
            return Ok(());
        }
        let ca_file = (!c.redis_ca_file.is_empty()).then(|| std::path::Path::new(&c.redis_ca_file));
        cluster::check(&c.redis_url, ca_file).map_err(|err| match err {
            cluster::ClusterError::Ca(message) => {
                ConfigError::invalid("cluster.redis_ca_file", message)
            }
            cluster::ClusterError::Url(message) => {
                ConfigError::invalid("cluster.redis_url", message)
            }
            other => ConfigError::invalid("cluster.redis_url", other.to_string()),
        })?;
        // Every node must see every write: one node's SQLite file cannot.
        if hub::store::Backend::of(&self.store.url) != Some(hub::store::Backend::Postgres) {
            return Err(ConfigError::invalid(
                "cluster.redis_url",
                "a cluster's nodes share one store: set store.url to postgres://… \
                 (SQLite is one node's file, which the other nodes cannot see)",
            ));
        }
        if c.key_prefix.is_empty() {
            return Err(ConfigError::invalid(
                "cluster.key_prefix",
                "cannot be empty",
            ));
        }
        at_least("cluster.publish_queue", c.publish_queue, 1)?;
        at_least("cluster.publish_queue_bytes", c.publish_queue_bytes, 1)?;
        at_least("cluster.publish_batch", c.publish_batch, 1)?;
        at_least("cluster.max_message_bytes", c.max_message_bytes, 1)?;
        at_least("cluster.connect_timeout_ms", c.connect_timeout_ms, 1)?;
        at_least("cluster.command_timeout_ms", c.command_timeout_ms, 1)?;
        at_least("cluster.rate_timeout_ms", c.rate_timeout_ms, 1)?;
        at_least(
            "cluster.health_interval_ms",
            c.health_interval_ms,
            MIN_SWEEP_MS,
        )?;
        at_least("cluster.request_timeout_ms", c.request_timeout_ms, 1)?;
        at_least("cluster.heartbeat_interval_ms", c.heartbeat_interval_ms, 1)?;
        at_least(
            "cluster.heartbeat_timeout_ms",
            c.heartbeat_timeout_ms,
            c.heartbeat_interval_ms.saturating_add(1),
        )?;
        at_least("cluster.reconnect_min_ms", c.reconnect_min_ms, 1)?;
        at_least(
            "cluster.reconnect_max_ms",
            c.reconnect_max_ms,
            c.reconnect_min_ms,
        )
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        rate("limits.events_per_sec", l.events_per_sec)?;
        burst("limits.event_burst", l.event_burst)?;
        at_least("limits.max_rooms_per_socket", l.max_rooms_per_socket, 1)?;
        at_least("limits.max_room_len", l.max_room_len, 1)
    }

    fn validate_notifications(&self) -> Result<(), ConfigError> {
        let n = &self.notifications;
        at_least("notifications.max_per_user", n.max_per_user, 1)?;
        at_least("notifications.max_age_days", n.max_age_days, 1)?;
        at_least(
            "notifications.prune_interval_ms",
            n.prune_interval_ms,
            MIN_SWEEP_MS,
        )?;
        at_least("notifications.max_data_bytes", n.max_data_bytes, 1)?;
        at_least("notifications.max_type_chars", n.max_type_chars, 1)?;
        at_least("notifications.max_title_chars", n.max_title_chars, 1)?;
        at_least("notifications.max_user_id_bytes", n.max_user_id_bytes, 1)?;
        at_least(
            "notifications.max_users_per_request",
            n.max_users_per_request,
            1,
        )?;
        at_least("notifications.max_read_ids", n.max_read_ids, 1)?;
        at_least("notifications.max_list_limit", n.max_list_limit, 1)
    }

    fn validate_chat(&self) -> Result<(), ConfigError> {
        let c = &self.chat;
        at_least("chat.max_members", c.max_members, 1)?;
        at_least("chat.max_text_chars", c.max_text_chars, 1)?;
        at_least("chat.max_name_chars", c.max_name_chars, 1)?;
        at_least("chat.max_client_id_bytes", c.max_client_id_bytes, 1)?;
        at_least("chat.max_user_id_bytes", c.max_user_id_bytes, 1)?;
        between("chat.max_page", c.max_page, 1, MAX_CHAT_PAGE)?;
        rate("chat.messages_per_sec", c.messages_per_sec)?;
        burst("chat.message_burst", c.message_burst)?;
        at_least("chat.typing_ttl_ms", c.typing_ttl_ms, 1)?;
        rate("chat.typing_relays_per_sec", c.typing_relays_per_sec)?;
        burst("chat.typing_relay_burst", c.typing_relay_burst)?;
        // A start is charged for itself and its stop: a burst of less
        // would let no start through.
        at_least("chat.typing_relay_burst", c.typing_relay_burst, 2.0)?;
        at_least("chat.typing_sweep_ms", c.typing_sweep_ms, MIN_SWEEP_MS)?;
        at_least("chat.max_batch", c.max_batch, 1)?;
        at_least("chat.write_queue", c.write_queue, 1)?;
        at_least("chat.max_listed_members", c.max_listed_members, 0)?;
        at_least(
            "chat.max_conversations_per_user",
            c.max_conversations_per_user,
            1,
        )?;
        at_least("chat.max_sends_in_flight", c.max_sends_in_flight, 1)?;
        at_least("chat.retry_window_ms", c.retry_window_ms, 1)?;
        rate("chat.members_added_per_min", c.members_added_per_min)?;
        // Any burst is taken: below `max_members - 1` it counts as that
        // (a full group can always be created).
        rate("chat.members_added_burst", c.members_added_burst)
    }

    fn validate_presence(&self) -> Result<(), ConfigError> {
        let p = &self.presence;
        at_least("presence.max_watch", p.max_watch, 1)?;
        at_least("presence.max_user_bytes", p.max_user_bytes, 1)?;
        rate("presence.status_changes_per_sec", p.status_changes_per_sec)?;
        burst("presence.status_change_burst", p.status_change_burst)
    }

    fn validate_calls(&self) -> Result<(), ConfigError> {
        let c = &self.calls;
        // The caller and one other.
        at_least("calls.max_participants", c.max_participants, 2)?;
        at_least("calls.ring_timeout_ms", c.ring_timeout_ms, 1)?;
        at_least("calls.max_calls_per_user", c.max_calls_per_user, 1)?;
        at_least("calls.max_user_id_bytes", c.max_user_id_bytes, 1)?;
        at_least("calls.max_signal_bytes", c.max_signal_bytes, 1)?;
        rate("calls.signals_per_sec", c.signals_per_sec)?;
        burst("calls.signal_burst", c.signal_burst)?;
        rate("calls.invites_per_minute", c.invites_per_minute)?;
        for url in &c.stun_urls {
            scheme("calls.stun_urls", url, &["stun:", "stuns:"])?;
        }
        for url in &c.turn_urls {
            scheme("calls.turn_urls", url, &["turn:", "turns:"])?;
        }
        at_least("calls.turn_ttl_secs", c.turn_ttl_secs, 1)
    }
}

/// `value` is at least `min`.
fn at_least<T: PartialOrd + Display>(key: &str, value: T, min: T) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::invalid(
            key,
            format!("must be at least {min}, got {value}"),
        ));
    }
    Ok(())
}

/// `value` is `min` to `max`.
fn between<T: PartialOrd + Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            key,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}

/// A rate: a finite number, 0 or more (0 turns its limit off).
fn rate(key: &str, value: f64) -> Result<(), ConfigError> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(ConfigError::invalid(
            key,
            format!("must be a number of 0 or more, got {value}"),
        ));
    }
    Ok(())
}

/// A burst: a finite number, 1 or more (less would admit nothing).
fn burst(key: &str, value: f64) -> Result<(), ConfigError> {
    if !(value.is_finite() && value >= 1.0) {
        return Err(ConfigError::invalid(
            key,
            format!("must be a number of 1 or more, got {value}"),
        ));
    }
    Ok(())
}

/// `value` is one of `allowed`.
fn one_of(key: &str, value: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    if !allowed.contains(&value) {
        return Err(ConfigError::invalid(
            key,
            format!("must be one of {}, got {value:?}", allowed.join(", ")),
        ));
    }
    Ok(())
}

/// `url` starts with one of `schemes`.
fn scheme(key: &str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    if !schemes.iter().any(|s| url.starts_with(s)) {
        return Err(ConfigError::invalid(
            key,
            format!("{url:?} must start with {}", schemes.join(" or ")),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::env;
    use super::super::{Config, ConfigError};

    /// The error of the defaults with `variable` set to `value`.
    fn refused(variable: &str, value: &str) -> String {
        match Config::load(None, env(&[(variable, value)])) {
            Ok(_) => panic!("{variable}={value} was accepted"),
            Err(err @ ConfigError::Invalid { .. }) => err.to_string(),
            Err(other) => panic!("{variable}={value}: {other:?}"),
        }
    }

    #[test]
    fn the_components_sections_are_checked_and_the_error_names_the_key() {
        for (variable, value, message) in [
            (
                "SWITCHBOARD_CHAT_MAX_TEXT_CHARS",
                "0",
                "chat.max_text_chars: must be at least 1, got 0",
            ),
            (
                "SWITCHBOARD_CHAT_MAX_PAGE",
                "501",
                "chat.max_page: must be between 1 and 500, got 501",
            ),
            (
                "SWITCHBOARD_CHAT_TYPING_SWEEP_MS",
                "5",
                "chat.typing_sweep_ms: must be at least 10, got 5",
            ),
            (
                "SWITCHBOARD_CHAT_MESSAGE_BURST",
                "0.5",
                "chat.message_burst: must be a number of 1 or more, got 0.5",
            ),
            (
                "SWITCHBOARD_CHAT_MESSAGES_PER_SEC",
                "nan",
                "chat.messages_per_sec: must be a number of 0 or more, got NaN",
            ),
            (
                "SWITCHBOARD_NOTIFICATIONS_PRUNE_INTERVAL_MS",
                "0",
                "notifications.prune_interval_ms: must be at least 10, got 0",
            ),
            (
                "SWITCHBOARD_NOTIFICATIONS_MAX_LIST_LIMIT",
                "0",
                "notifications.max_list_limit: must be at least 1, got 0",
            ),
            (
                "SWITCHBOARD_PRESENCE_MAX_WATCH",
                "0",
                "presence.max_watch: must be at least 1, got 0",
            ),
            (
                "SWITCHBOARD_PRESENCE_STATUS_CHANGES_PER_SEC",
                "-1",
                "presence.status_changes_per_sec: must be a number of 0 or more, got -1",
            ),
            (
                "SWITCHBOARD_PRESENCE_STATUS_CHANGE_BURST",
                "0",
                "presence.status_change_burst: must be a number of 1 or more, got 0",
            ),
            (
                "SWITCHBOARD_CHAT_TYPING_RELAYS_PER_SEC",
                "inf",
                "chat.typing_relays_per_sec: must be a number of 0 or more, got inf",
            ),
            (
                "SWITCHBOARD_CHAT_TYPING_RELAY_BURST",
                "1.5",
                "chat.typing_relay_burst: must be at least 2, got 1.5",
            ),
            (
                "SWITCHBOARD_CHAT_TYPING_RELAY_BURST",
                "nan",
                "chat.typing_relay_burst: must be a number of 1 or more, got NaN",
            ),
            (
                "SWITCHBOARD_API_RECIPIENTS_PER_SEC",
                "nan",
                "api.recipients_per_sec: must be a number of 0 or more, got NaN",
            ),
            (
                "SWITCHBOARD_API_RECIPIENT_BURST",
                "0.5",
                "api.recipient_burst: must be a number of 1 or more, got 0.5",
            ),
            (
                "SWITCHBOARD_CALLS_MAX_PARTICIPANTS",
                "1",
                "calls.max_participants: must be at least 2, got 1",
            ),
            (
                "SWITCHBOARD_CALLS_SIGNAL_BURST",
                "inf",
                "calls.signal_burst: must be a number of 1 or more, got inf",
            ),
            (
                "SWITCHBOARD_CALLS_TURN_URLS",
                "http://turn.example.org",
                "calls.turn_urls: \"http://turn.example.org\" must start with turn: or turns:",
            ),
            (
                "SWITCHBOARD_LOG_FORMAT",
                "jsonl",
                "log.format: must be one of text, json, got \"jsonl\"",
            ),
            (
                "SWITCHBOARD_ENGINE_PING_INTERVAL_MS",
                "0",
                "engine.ping_interval_ms: must be at least 1, got 0",
            ),
            (
                "SWITCHBOARD_DEV_TOKEN_TTL_SECS",
                "0",
                "dev_token_ttl_secs: must be between 1 and 2592000, got 0",
            ),
        ] {
            assert_eq!(refused(variable, value), message, "{variable}={value}");
        }
    }

    #[test]
    fn zero_where_it_turns_a_limit_off_is_accepted() {
        for (variable, value) in [
            ("SWITCHBOARD_CHAT_MESSAGES_PER_SEC", "0"),
            ("SWITCHBOARD_CHAT_MEMBERS_ADDED_PER_MIN", "0"),
            ("SWITCHBOARD_CHAT_TYPING_RELAYS_PER_SEC", "0"),
            ("SWITCHBOARD_PRESENCE_STATUS_CHANGES_PER_SEC", "0"),
            ("SWITCHBOARD_API_RECIPIENTS_PER_SEC", "0"),
            // Below max_members - 1 it counts as that (the code raises it).
            ("SWITCHBOARD_CHAT_MEMBERS_ADDED_BURST", "0"),
            ("SWITCHBOARD_CHAT_MAX_LISTED_MEMBERS", "0"),
            ("SWITCHBOARD_CALLS_SIGNALS_PER_SEC", "0"),
            ("SWITCHBOARD_CALLS_INVITES_PER_MINUTE", "0"),
            ("SWITCHBOARD_PRESENCE_GRACE_MS", "0"),
            ("SWITCHBOARD_PRESENCE_MAX_LINGERING", "0"),
            ("SWITCHBOARD_LIMITS_EVENTS_PER_SEC", "0"),
            ("SWITCHBOARD_SERVER_HANDSHAKES_PER_SEC_PER_ADDRESS", "0"),
            ("SWITCHBOARD_SERVER_MAX_SESSIONS_PER_ADDRESS", "0"),
            ("SWITCHBOARD_AUTH_JWKS_MIN_REFRESH_SECS", "0"),
            ("SWITCHBOARD_SERVER_READINESS_CACHE_MS", "0"),
        ] {
            if let Err(err) = Config::load(None, env(&[(variable, value)])) {
                panic!("{variable}={value}: {err}");
            }
        }
    }

    #[test]
    fn a_cluster_needs_postgresql_and_a_redis_url() {
        let redis = ("SWITCHBOARD_CLUSTER_REDIS_URL", "redis://127.0.0.1:6379");
        // One node (no Redis) on SQLite, as today.
        Config::load(None, env(&[])).unwrap();
        for store in [None, Some("sqlite:/tmp/sb.db")] {
            let mut vars = vec![redis];
            vars.extend(store.map(|url| ("SWITCHBOARD_STORE_URL", url)));
            let err = Config::load(None, env(&vars)).unwrap_err().to_string();
            assert!(
                err.starts_with("cluster.redis_url: a cluster's nodes share one store"),
                "{err}"
            );
        }
        let postgres = ("SWITCHBOARD_STORE_URL", "postgres://u@db/sb");
        let config = Config::load(None, env(&[redis, postgres])).unwrap();
        let cluster = config.cluster_config().unwrap();
        assert_eq!(cluster.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(cluster.key_prefix, "socket.io");
        assert!(
            Config::load(None, env(&[]))
                .unwrap()
                .cluster_config()
                .is_none()
        );
        let tls = (
            "SWITCHBOARD_CLUSTER_REDIS_URL",
            "rediss://redis.example:6380",
        );
        let config = Config::load(None, env(&[tls, postgres])).unwrap();
        assert_eq!(
            config.cluster_config().unwrap().redis_ca_file,
            None,
            "rediss:// trusts the system's roots unless told"
        );
        for (url, message) in [
            ("rediss://h/#insecure", "cluster.redis_url: #insecure"),
            ("http://h", "must be redis://"),
        ] {
            let err = Config::load(
                None,
                env(&[("SWITCHBOARD_CLUSTER_REDIS_URL", url), postgres]),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(message), "{url}: {err}");
        }
        let err = Config::load(
            None,
            env(&[
                redis,
                postgres,
                ("SWITCHBOARD_CLUSTER_RECONNECT_MAX_MS", "10"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "cluster.reconnect_max_ms: must be at least 100, got 10"
        );
    }

    /// v3 clients are put in `/` without asking: serving them needs it.
    #[test]
    fn allow_eio3_needs_the_root_namespace() {
        let on = env(&[("SWITCHBOARD_ENGINE_ALLOW_EIO3", "true")]);
        let config = Config::load(None, on.clone()).unwrap();
        assert!(config.engine.allow_eio3 && config.engine_config().allow_eio3);
        assert!(!Config::default().engine_config().allow_eio3);
        let file = super::super::tests::TempFile::new(
            "[[namespaces]]\nname = \"/chat\"\nhandler = \"echo\"\n",
        );
        let err = Config::load(Some(&file.path), on).unwrap_err().to_string();
        assert!(
            err.starts_with("engine.allow_eio3: needs a `/` namespace"),
            "{err}"
        );
        Config::load(Some(&file.path), Vec::new()).unwrap();
    }

    #[test]
    fn refuses_catch_all_trusted_proxies() {
        for catch_all in ["0.0.0.0/0", "::/0", "10.0.0.1, 192.0.2.0/0"] {
            let err = Config::load(
                None,
                env(&[("SWITCHBOARD_SERVER_TRUSTED_PROXIES", catch_all)]),
            )
            .unwrap_err();
            let message = format!("{err:#}");
            assert!(message.contains("trusts every address"), "{message}");
        }
        // A narrow network is fine.
        Config::load(
            None,
            env(&[("SWITCHBOARD_SERVER_TRUSTED_PROXIES", "10.0.0.0/8, ::1/128")]),
        )
        .unwrap();
    }

    #[test]
    fn refuses_duplicate_api_keys_without_naming_them() {
        let toml = |keys: &str| {
            let dir = std::env::temp_dir().join(format!(
                "switchboard-dupkeys-{}-{}",
                std::process::id(),
                keys.len()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("config.toml");
            std::fs::write(&path, format!("[api]\nkeys = {keys}\n")).unwrap();
            path
        };
        let path = toml(
            r#"[{ key = "s3cret-dup", scopes = ["read"] }, "other", { key = "s3cret-dup", scopes = ["publish"] }]"#,
        );
        let err = Config::load(Some(&path), env(&[])).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("entries 1 and 3"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let path = toml(r#"["one", { key = "two", scopes = ["read"] }]"#);
        Config::load(Some(&path), env(&[])).unwrap();
    }
}
