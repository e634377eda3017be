//! The configuration's reference: what every key does, written once here,
//! and rendered with every key's default value (taken from
//! [`Config::default`], never copied) as an annotated TOML file —
//! `switchboard config --default` prints it, and `docs/CONFIGURATION.md`
//! holds a copy that a test keeps current. A test also fails when a key
//! of [`Config`] has no entry here, or an entry names no key.

use super::{Config, env};

/// A section of the file, or the top level (`name` empty).
struct Section {
    name: &'static str,
    doc: &'static str,
    form: Form,
    keys: &'static [Key],
}

/// How a section is written in TOML.
#[derive(PartialEq)]
enum Form {
    /// Keys before any section header.
    Top,
    /// `[name]`, always present.
    Table,
    /// `[name]`, absent unless configured: shown commented out, with an
    /// example value for each key.
    Optional,
    /// `[[name]]`, a list of tables: the default list is shown; what each
    /// key means is said once, above it.
    List,
}

/// One key and what it does.
struct Key {
    name: &'static str,
    doc: &'static str,
    /// For an [`Form::Optional`] section: an example value, in TOML.
    example: &'static str,
}

const fn key(name: &'static str, doc: &'static str) -> Key {
    Key {
        name,
        doc,
        example: "",
    }
}

/// The opening comment of the rendered file.
const PREAMBLE: &str = "\
# Switchboard's configuration, every key at its default value.
#
# `switchboard serve --config FILE` reads a file like this one; a file names
# only the keys it changes. Every key can also be set by the environment
# variable shown beside it (lists: comma-separated or a TOML array), which
# wins over the file. `switchboard config --check FILE` checks a file
# without starting the hub. Durations are in the unit their name ends with
# (_ms, _secs, _days); sizes in bytes or characters, as their name says.
#
# Printed by `switchboard config --default`.
";

/// Every section, in the order of the file.
const SECTIONS: &[Section] = &[
    Section {
        name: "",
        doc: "",
        form: Form::Top,
        keys: &[
            key(
                "listen",
                "Addresses to listen on (`host:port`); a host name binds every address it resolves to.",
            ),
            key(
                "data_dir",
                "Where the hub keeps its files: the development secret and, unless `store.url` says otherwise, the SQLite store `switchboard.db`.",
            ),
            key(
                "test_setup",
                "Says this is a test setup: required by the `testkit` handler, which lets any client join any room (the hub refuses to start it otherwise). Never in production.",
            ),
            key(
                "dev_mode",
                "Development mode: `POST /dev/token` signs a token for any user name (the web client's sign-in screen). With no configuration file, no `SWITCHBOARD_AUTH_*` variable and every listener on loopback it is on (with a warning); otherwise off unless set here. The variable wins over both.",
            ),
            key(
                "dev_token_ttl_secs",
                "How long a token from `POST /dev/token` is valid, in seconds (30 days at most).",
            ),
        ],
    },
    Section {
        name: "server",
        doc: "Admission: how many connections the hub takes, from whom, and the operator endpoints.",
        form: Form::Table,
        keys: &[
            key(
                "max_connections",
                "Most Engine.IO sessions open at once, polling and WebSocket alike; a handshake past it is refused with 503.",
            ),
            key(
                "shutdown_grace_ms",
                "How long shutdown waits for connections to finish.",
            ),
            key(
                "max_tcp_connections",
                "Most TCP connections at once (file descriptors); more wait to be accepted. 0 = twice `max_connections`: a polling session may hold two (its waiting GET and a POST), an upgrading one two (polling and the new WebSocket).",
            ),
            key(
                "max_sessions_per_address",
                "Most sessions open at once from one client address (IPv6: one /64); 0 = no limit. Generous: a whole site behind NAT shares one address.",
            ),
            key(
                "handshakes_per_sec_per_address",
                "Sustained handshakes per second from one client address; 0 = no limit.",
            ),
            key(
                "handshake_burst_per_address",
                "Handshakes one client address may make at once (a reconnect storm after a restart); at least 1.",
            ),
            key(
                "trusted_proxies",
                "Proxies (IP addresses or CIDR networks) whose `X-Forwarded-For` names the client; empty = the header is ignored. A catch-all (`0.0.0.0/0`, `::/0`) is refused.",
            ),
            key(
                "admin_listen",
                "An address for the operator endpoints (`/metrics`, the detail of `/readyz`); when set, the public listener answers `/metrics` with 404 and `/readyz` with its status only. Empty = served on `listen`.",
            ),
            key(
                "metrics_token",
                "A bearer token `/metrics` and the detail of `/readyz` require, wherever they are served. Empty = none.",
            ),
            key(
                "admin_max_tcp_connections",
                "TCP connections the admin listener accepts at once, apart from `max_tcp_connections` (so a flood of the public port cannot keep operators from `/metrics` and `/readyz`).",
            ),
            key(
                "readiness_cache_ms",
                "How long `/readyz` reuses a store check's outcome (concurrent requests share one check even at 0).",
            ),
        ],
    },
    Section {
        name: "engine",
        doc: "The Engine.IO transport.",
        form: Form::Table,
        keys: &[
            key(
                "path",
                "The path Engine.IO is served at; starts and ends with `/`.",
            ),
            key(
                "ping_interval_ms",
                "How often the server pings each connection.",
            ),
            key(
                "ping_timeout_ms",
                "How long a pong may take before the connection is closed.",
            ),
            key(
                "max_payload",
                "Largest message a client may send, in bytes.",
            ),
            key(
                "upgrade_timeout_ms",
                "How long an upgrade from polling to WebSocket may take.",
            ),
            key(
                "transports",
                "Offered transports: `polling`, `websocket` (at least one).",
            ),
            key(
                "cors_origins",
                "Origins allowed by CORS: empty = same origin only, `*` = any.",
            ),
            key(
                "max_queued_frames",
                "Frames a connection may have queued before it counts as a slow consumer.",
            ),
            key(
                "max_queued_bytes",
                "Bytes a connection may hold outbound (queued, and on WebSocket written but not yet taken by the kernel) before it counts as a slow consumer.",
            ),
            key(
                "max_partial_bytes",
                "Bytes held for incomplete client messages, all connections together; past it, the connection holding the most is closed.",
            ),
            key(
                "partial_timeout_ms",
                "How long a client message may take to arrive once it started.",
            ),
            key(
                "allow_eio3",
                "Also serve Engine.IO v3 clients (socket.io-client 1.x and 2.x, python-socketio 4.x), as the reference server's `allowEIO3`; off, their handshake gets error 5. They join `/` without asking, so a `/` namespace must be configured; they authenticate with `?token=` in the URL (handshake and namespace queries), which proxies may log. Browsers send their credentials: list the origins in `cors_origins` rather than `*`.",
            ),
            key(
                "allow_jsonp",
                "Serve JSONP polling: a `j` in the query makes each GET a script calling the page's callback and each POST a form (engine.io-client up to 5.x, so socket.io-client up to 3.x, uses it with `forceJSONP` or where `XMLHttpRequest` is missing), for both protocol revisions, as the reference server does. A script's answer is readable by any page that knows the session id; the form's POST is checked against `cors_origins` like any other request. Off: such requests get error 3.",
            ),
        ],
    },
    Section {
        name: "socketio",
        doc: "The Socket.IO protocol.",
        form: Form::Table,
        keys: &[
            key(
                "connect_timeout_ms",
                "How long a connection may take to join its first namespace.",
            ),
            key(
                "max_attachments",
                "Binary attachments one packet may have (0: none).",
            ),
            key(
                "metrics_max_event_names",
                "Event names counted separately in `/metrics`, per namespace and direction; later names are counted as `_other`.",
            ),
            key(
                "max_pending_events",
                "Events one socket may have waiting behind a handler that has not finished; one more closes its connection.",
            ),
            key(
                "max_pending_bytes",
                "Bytes (arguments and attachments) of the events one socket may have waiting behind a busy handler; an event past it closes its connection. An event that finds the queue empty always waits.",
            ),
            key(
                "max_attachment_bytes",
                "Bytes a packet may hold while its binary attachments arrive; 0 = `engine.max_payload`.",
            ),
            key(
                "attachment_timeout_ms",
                "Time for a packet's binary attachments to arrive.",
            ),
            key(
                "connects_per_sec",
                "CONNECT packets (and `refresh` events) per second per connection.",
            ),
            key(
                "connect_burst",
                "CONNECTs a connection may send at once; at least 1.",
            ),
            key(
                "recovery_window_ms",
                "Connection state recovery, as the reference server's `connectionStateRecovery`: a client whose connection dropped and that comes back within this time keeps its socket id and rooms and receives the events it missed (`socket.recovered` on the official client). Recoverable events carry an offset as their last argument. 0 turns recovery off (no offsets). In cluster mode (`cluster.redis_url`) sessions and events are kept in Redis, so a client recovers on any node, even after its node was killed; see docs/OPERATIONS.md.",
            ),
            key(
                "recovery_max_bytes",
                "Bytes of events and sessions kept for recovery, all namespaces together (encoded events, room names, bookkeeping); past it the oldest of either go, and a client whose session went, or that missed an event that went, is not recovered (never a partial replay). In cluster mode: the bytes of each namespace's event log in Redis, each event counted at what Redis spends on it (docs/DEPLOY.md); sessions are not counted.",
            ),
            key(
                "recovery_max_sessions",
                "Sessions of dropped clients kept for recovery; past it the oldest are forgotten.",
            ),
        ],
    },
    Section {
        name: "log",
        doc: "What the hub logs, on standard error.",
        form: Form::Table,
        keys: &[
            key("format", "`text` or `json` (one object per line)."),
            key(
                "level",
                "A tracing filter (`info`, `switchboard=debug`, …); `RUST_LOG` wins.",
            ),
        ],
    },
    Section {
        name: "auth",
        doc: "How clients prove who they are: a JWT, checked with the keys below. With no key at all, a development secret is generated in `data_dir` (with a warning).",
        form: Form::Table,
        keys: &[
            key("hs256_secret", "HS256 shared secret."),
            key("rs256_public_key_file", "RS256 public key, PEM file."),
            key(
                "jwks_file",
                "RS256 keys, JWKS file (chosen by the token's `kid`).",
            ),
            key(
                "issuer",
                "The `iss` every token must carry; empty = not checked.",
            ),
            key(
                "audience",
                "This hub's audience: a token's `aud` must name one of these (a string or a list); empty = any `aud` is accepted.",
            ),
            key(
                "leeway_secs",
                "Seconds of clock skew allowed on `exp` and `nbf`.",
            ),
            key(
                "jwks_url",
                "RS256 keys fetched from the identity provider's JWKS URL (`http://…` or `https://…`, the certificate verified) at start (start fails if it cannot be fetched), then kept fresh.",
            ),
            key(
                "jwks_refresh_secs",
                "How often the JWKS URL is fetched again.",
            ),
            key(
                "jwks_min_refresh_secs",
                "A token naming an unknown key fetches the JWKS again at most once per this many seconds.",
            ),
            key("jwks_max_bytes", "Largest JWKS document read, in bytes."),
            key("jwks_timeout_ms", "How long one JWKS fetch may take."),
            key(
                "jwks_ca_file",
                "A PEM file of root certificates trusted for an https `jwks_url` besides the system's (an internal CA); empty = the system's only.",
            ),
        ],
    },
    Section {
        name: "api",
        doc: "The publish API for backend services (`/api/v1/…`).",
        form: Form::Table,
        keys: &[
            key(
                "keys",
                "API keys (`Authorization: Bearer KEY`); none = every request is refused. A plain string may do everything; `{ key = \"…\", scopes = [\"publish\", …] }` only what its scopes (`publish`, `disconnect`, `read`) allow.",
            ),
            key("max_body_bytes", "Largest request body, in bytes."),
            key(
                "cors_origins",
                "Origins allowed by CORS on the API: empty = same origin only, `*` = any.",
            ),
            key(
                "recipients_per_sec",
                "Recipients one API key may address per second on `POST /api/v1/notifications` and `POST /api/v1/publish`, each key on its own (in a cluster, its requests to every node together): every user or room a request names counts one (a notification stored per user, an emit per room; a request naming none, a broadcast, counts one). Past it the request is refused 429 `rate_limited` with `Retry-After`, and nothing is stored or sent. The cost, not the requests, is counted so that one key's store writes stay bounded whatever the size of its requests. 0 = no limit.",
            ),
            key(
                "recipient_burst",
                "Recipients one key may address at once after a quiet spell; at least 1. The default lets a notification for `notifications.max_users_per_request` (10,000) users through at once. A request naming more than the burst waits for a full bucket and leaves the key in debt, paid back at `recipients_per_sec`.",
            ),
        ],
    },
    Section {
        name: "store",
        doc: "The SQL store.",
        form: Form::Table,
        keys: &[
            key(
                "url",
                "`sqlite:PATH` or `postgres://user:password@host:port/db`; empty = the SQLite file `switchboard.db` in `data_dir`.",
            ),
            key("max_connections", "Connections in the pool."),
            key(
                "timeout_ms",
                "How long a store query (and `/readyz`'s check) may take.",
            ),
        ],
    },
    Section {
        name: "cluster",
        doc: "Cluster mode: N nodes behind any load balancer, sharing a Redis (the bus: broadcasts reach every node's sockets, in the wire format of Node's `@socket.io/redis-adapter` 8.x, so a Node service with `@socket.io/redis-emitter` emits through the hub) and a PostgreSQL store (`store.url`; a cluster refuses to start on SQLite). Off, one embedded node, while `redis_url` is empty. See docs/DEPLOY.md.",
        form: Form::Table,
        keys: &[
            key(
                "redis_url",
                "`redis://[user:password@]host[:port][/db]` (Redis 6 or later: the bus uses RESP3), or `rediss://…` for TLS (managed Redis with in-transit encryption), every connection of the node then verifying the server's certificate and name; empty = one node, no cluster. redis-rs's `#insecure` fragment (no verification) is refused: use `redis_ca_file`.",
            ),
            key(
                "redis_ca_file",
                "With a `rediss://` URL: a PEM file of the CA certificates to trust instead of the system's roots (a private CA, a self-signed Redis); empty = the system's roots. Checked at start (readable, at least one certificate); read again at each reconnection, so a renewed file is picked up. A certificate Redis presents that it does not verify keeps the node unready (`/readyz` 503 `bus_unreachable`, with the TLS error).",
            ),
            key(
                "key_prefix",
                "The channels' prefix: the `key` option of the Node adapter and emitter that share the bus.",
            ),
            key(
                "publish_queue",
                "Broadcasts waiting to be published to Redis, at most. One more (Redis down or slower than the node) is delivered on this node only, counted in `switchboard_cluster_publish_dropped_total` and logged.",
            ),
            key(
                "publish_queue_bytes",
                "Bytes (event, arguments, rooms) of the broadcasts waiting to be published, at most; past it, as past `publish_queue`.",
            ),
            key(
                "publish_batch",
                "Broadcasts sent to Redis in one pipeline (one round trip), at most.",
            ),
            key(
                "max_message_bytes",
                "Largest bus message published or read, in bytes; a larger one is not published (or not delivered), counted and logged.",
            ),
            key(
                "connect_timeout_ms",
                "How long opening a connection to Redis may take.",
            ),
            key(
                "command_timeout_ms",
                "How long Redis may take to answer a command (a PUBLISH pipeline, a PING, a PSUBSCRIBE); past it the connection is opened again.",
            ),
            key(
                "rate_timeout_ms",
                "How long a write (a status change, a chat write or typing start, an invitation, an API publish) waits for Redis to take it from its sender's bucket, which every node shares so that the per-sender limits hold across the cluster. Past it, or when Redis fails, the write is admitted on the node's own bucket (the limit then holds per node), and Redis is not asked again for a second: a Redis that hangs delays at most one write a second by this much. Short on purpose: Redis answers in well under a millisecond when it is well.",
            ),
            key(
                "health_interval_ms",
                "How often an idle connection to Redis is checked with a PING (a connection that dropped silently is found this way; `/readyz` says so).",
            ),
            key(
                "request_timeout_ms",
                "How long a request to the other nodes (the sockets of a room on every node, every room, a server-side emit with acks) waits for their answers; past it the answer is partial and says how many nodes did not answer.",
            ),
            key(
                "heartbeat_interval_ms",
                "How often this node tells the others it is alive (on `<key_prefix>-heartbeat#`, a channel Node nodes do not read).",
            ),
            key(
                "heartbeat_timeout_ms",
                "How long a node may stay silent before the others take it for dead: a request then names it as missing and, if it is frozen (still subscribed), stops waiting for it. A node that finds itself silent that long (frozen, or cut off from Redis) rejoins: it closes its clients' connections, which reconnect and recover. More than `heartbeat_interval_ms`; the default is two intervals, as socket.io's cluster adapter.",
            ),
            key(
                "reconnect_min_ms",
                "The first wait before reconnecting to Redis, doubled after each failure.",
            ),
            key(
                "reconnect_max_ms",
                "The longest wait between reconnection attempts (at least `reconnect_min_ms`).",
            ),
            key(
                "pubsub",
                "The Redis pub/sub the bus uses. \"classic\": PUBLISH/PSUBSCRIBE in the \
                 format of Node's `createAdapter` (what `@socket.io/redis-emitter` speaks). \
                 \"sharded\": Redis 7's SPUBLISH/SSUBSCRIBE in the format of Node's \
                 `createShardedAdapter`; needs Redis 7.0 or later (checked at start), and \
                 turns connection state recovery off. Every node of a cluster, Node ones \
                 included, must use the same (see docs/DEPLOY.md for the trade-off).",
            ),
            key(
                "sharded_subscription_mode",
                "With pubsub = \"sharded\": \"dynamic\" gives every room a channel, which \
                 a node subscribes to while one of its sockets is in the room, so a \
                 broadcast to one room reaches only the nodes that have it (Node's \
                 default); \"static\" keeps one channel per namespace. Must match the \
                 Node nodes' `subscriptionMode` (\"dynamic-private\" is not offered).",
            ),
        ],
    },
    Section {
        name: "limits",
        doc: "What each socket of a component namespace may ask.",
        form: Form::Table,
        keys: &[
            key(
                "events_per_sec",
                "Sustained events per second per socket; over it, an event is answered `rate_limited`. 0 = no limit.",
            ),
            key(
                "event_burst",
                "Events a socket may send at once after a quiet spell; at least 1.",
            ),
            key(
                "max_rooms_per_socket",
                "Rooms a socket may be in; `subscribe` beyond is `too_many_rooms`.",
            ),
            key(
                "max_room_len",
                "Longest room id a client may subscribe to, in bytes.",
            ),
        ],
    },
    Section {
        name: "web",
        doc: "The web client (the built `web/dist`) served at `/`.",
        form: Form::Table,
        keys: &[key(
            "dir",
            "Its directory (relative to the working directory); empty = found beside the binary: `<exe dir>/../../web/dist` (a build in the repository's `target/`), then `<exe dir>/web` (an installed layout).",
        )],
    },
    Section {
        name: "notifications",
        doc: "The `notifications` component.",
        form: Form::Table,
        keys: &[
            key(
                "max_per_user",
                "Notifications kept per user: the newest; older ones are pruned.",
            ),
            key(
                "max_age_days",
                "Notifications older than this are pruned, in days.",
            ),
            key(
                "prune_interval_ms",
                "How often the prune runs (10 ms at least).",
            ),
            key(
                "max_data_bytes",
                "Largest `data` of one notification, in bytes of JSON.",
            ),
            key("max_type_chars", "Longest `type`, in characters."),
            key("max_title_chars", "Longest `title`, in characters."),
            key("max_body_chars", "Longest `body`, in characters."),
            key(
                "max_user_id_bytes",
                "Longest user id a notification may be for, in bytes.",
            ),
            key(
                "max_users_per_request",
                "Users one creation may address (the publish API's `users`).",
            ),
            key("max_read_ids", "Ids one `read` may name."),
            key("max_list_limit", "Largest `limit` of one `list`."),
        ],
    },
    Section {
        name: "chat",
        doc: "The `chat` component.",
        form: Form::Table,
        keys: &[
            key("max_members", "Members a group conversation may have."),
            key("max_text_chars", "Longest message text, in characters."),
            key("max_name_chars", "Longest group name, in characters."),
            key("max_client_id_bytes", "Longest `client_id`, in bytes."),
            key(
                "max_user_id_bytes",
                "Longest user id a client may name (`to`, members), in bytes.",
            ),
            key(
                "max_page",
                "Most items one `history` or `conversations` page returns (1 to 500: a `conversations` page is one SQL statement of a part per conversation, and SQLite takes 500 parts at most).",
            ),
            key(
                "messages_per_sec",
                "Messages per second per user (all devices together; in a cluster, on every node together); 0 = no limit.",
            ),
            key(
                "message_burst",
                "Messages a user may send at once after a quiet spell; at least 1.",
            ),
            key(
                "typing_ttl_ms",
                "A typing start not renewed within this expires.",
            ),
            key(
                "typing_relay_ms",
                "At most one typing relay per user and conversation this often.",
            ),
            key(
                "typing_relays_per_sec",
                "Typing events (starts and the stops that follow them) one user's typing may send each other member per second, whatever the conversation, all devices (and, in a cluster, nodes) together: `typing_relay_ms` holds per conversation only, and a user in many groups with the same member would reach them once per group. A start is charged 2 (itself and its stop, which is never refused, so that an indicator does not stick); a start past the limit is not relayed (acked `relayed: false`). 0 = no limit.",
            ),
            key(
                "typing_relay_burst",
                "Typing events a user's typing may send at once after a quiet spell; at least 2 (one start and its stop).",
            ),
            key(
                "typing_sweep_ms",
                "How often expired typing starts are looked for (10 ms at least).",
            ),
            key(
                "max_batch",
                "Writes committed in one transaction at most (group commit).",
            ),
            key(
                "write_queue",
                "Writes waiting for the writer at most; more wait to be queued.",
            ),
            key(
                "max_listed_members",
                "Members listed per conversation in a `conversations` page (the first, by user id; `member_count` says how many there are, and `conversation:members` lists them all).",
            ),
            key(
                "max_conversations_per_user",
                "Conversations (direct and groups) a user may be in; creating, being added to or starting a direct conversation beyond it is refused (`too_many_conversations`).",
            ),
            key(
                "max_sends_in_flight",
                "Sends of one socket queued for the writer and not yet acked; the socket's next events wait while it has this many.",
            ),
            key(
                "members_added_per_min",
                "Other users a user may put into groups (by creating them or adding members), per minute, all devices (and, in a cluster, nodes) together; 0 = no limit. Being in a group counts against the added user's `max_conversations_per_user`, so without this one user could fill other users' conversation cap quickly (a full group per write).",
            ),
            key(
                "members_added_burst",
                "Other users a user may put into groups at once after a quiet spell. A value below `max_members - 1` counts as `max_members - 1`, so that a full group can always be created.",
            ),
            key(
                "retry_window_ms",
                "In a cluster, how long after a change was stored its retry still publishes it if no node did (its node was killed with it queued, or Redis did not take it in time), in ms: a send again with the same `client_id`, a membership change repeated. The cluster keeps a marker this long per message published (149 bytes of Redis memory each, measured) and per membership announcement; a later retry publishes nothing. (A read asking for its mark again always announces it: a receipt carries the mark itself, so a second copy is harmless, and reads keep no marker.)",
            ),
        ],
    },
    Section {
        name: "presence",
        doc: "The `presence` component.",
        form: Form::Table,
        keys: &[
            key(
                "grace_ms",
                "How long a user stays online after their last socket left (absorbs a page reload). Every departing device lingers this long; a new socket of the user takes its place.",
            ),
            key("max_watch", "Users one socket may watch."),
            key(
                "max_user_bytes",
                "Longest user id `watch` / `unwatch` accept, in bytes.",
            ),
            key(
                "max_lingering",
                "Devices of one user lingering in their grace period at most; past that a departing device is gone at once.",
            ),
            key(
                "status_changes_per_sec",
                "`status` events per second per user, all devices (and, in a cluster, nodes) together (each change is a store write and an event to every watcher); past it, `status` is refused `rate_limited` and nothing changes. 0 = no limit.",
            ),
            key(
                "status_change_burst",
                "`status` events a user may send at once after a quiet spell; at least 1.",
            ),
        ],
    },
    Section {
        name: "calls",
        doc: "The `calls` component (WebRTC signalling).",
        form: Form::Table,
        keys: &[
            key(
                "max_participants",
                "Participants of one call, caller included (a mesh); at least 2.",
            ),
            key(
                "ring_timeout_ms",
                "How long an invitation rings before it is a missed call.",
            ),
            key(
                "max_calls_per_user",
                "Calls one user may be busy in at once (placed, or answered and still live; a call that only rings them does not count: call waiting); an invitation past it is refused `busy`.",
            ),
            key(
                "max_user_id_bytes",
                "Longest user id an invitation may name, in bytes.",
            ),
            key(
                "max_signal_bytes",
                "Largest `signal` payload, in bytes of JSON.",
            ),
            key(
                "signals_per_sec",
                "Signals one device may send per second (sustained); 0 = no limit.",
            ),
            key(
                "signal_burst",
                "Signals one device may send at once (ICE candidates come in bursts); at least 1.",
            ),
            key(
                "invites_per_minute",
                "Invitations one user may send per minute (all their devices together, on every node of a cluster), all at once at most (each may ring several users and leave them a missed-call notification); 0 = no limit.",
            ),
            key(
                "stun_urls",
                "STUN URLs handed out by `ice_servers` (`stun:host:3478`).",
            ),
            key(
                "turn_urls",
                "TURN URLs handed out by `ice_servers`, with credentials (`turn:host:3478?transport=udp`, `turns:host:443?transport=tcp`).",
            ),
            key(
                "turn_secret",
                "The secret shared with the TURN server (coturn's `static-auth-secret`); without it no TURN URL is handed out.",
            ),
            key(
                "turn_ttl_secs",
                "How long issued TURN credentials are valid, in seconds.",
            ),
        ],
    },
    Section {
        name: "raw_engine",
        doc: "A raw Engine.IO echo server (no Socket.IO) beside the hub, for the Engine.IO test suite. Absent by default.",
        form: Form::Optional,
        keys: &[Key {
            name: "path",
            doc: "The path it is served at.",
            example: "\"/engine.io/\"",
        }],
    },
    Section {
        name: "namespaces",
        doc: "The namespaces and the component that owns each; a file's list replaces this one. Each `[[namespaces]]` has:",
        form: Form::List,
        keys: &[
            key("name", "The namespace, starting with `/`."),
            key(
                "handler",
                "The component owning it: `notifications`, `chat`, `presence`, `calls`, `pubsub`, `proxy` (see `backend`), or `echo`, `testkit`, `bench` (protocol-level, for tests and benchmarks).",
            ),
            key(
                "auth",
                "Whether clients must present a token (see `[auth]`); false when left out.",
            ),
            key(
                "backend",
                "For `handler = \"proxy\"`: the backend's URL (`http://…`).",
            ),
            key(
                "backend_timeout_ms",
                "For `handler = \"proxy\"`: how long a backend request may take.",
            ),
            key(
                "backend_secret",
                "For `handler = \"proxy\"`: the secret every request to the backend is signed with (HMAC-SHA256); empty = unsigned, with a warning at start.",
            ),
        ],
    },
];

/// The width the comments are wrapped to.
const WIDTH: usize = 78;

/// The annotated TOML file of every key at its default value.
pub fn default_toml() -> String {
    let defaults = Config::default().to_toml();
    let mut out = String::from(PREAMBLE);
    for section in SECTIONS {
        out.push('\n');
        render(&mut out, section, &defaults);
    }
    out
}

fn render(out: &mut String, section: &Section, defaults: &toml::Value) {
    if !section.doc.is_empty() {
        comment(out, section.doc);
    }
    match section.form {
        Form::Top | Form::Table => {
            let table = match section.form {
                Form::Top => defaults.as_table(),
                _ => defaults.get(section.name).and_then(toml::Value::as_table),
            };
            if section.form == Form::Table {
                out.push_str(&format!("[{}]\n", section.name));
            }
            for (i, key) in section.keys.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                comment(out, key.doc);
                let path = match section.form {
                    Form::Top => key.name.to_owned(),
                    _ => format!("{}.{}", section.name, key.name),
                };
                comment(out, &format!("Environment: {}", env::variable_of(&path)));
                let value = table.and_then(|t| t.get(key.name));
                match value {
                    Some(value) => out.push_str(&format!("{} = {value}\n", key.name)),
                    None => comment(out, &format!("{} = (no default)", key.name)),
                }
            }
        }
        Form::Optional => {
            out.push_str(&format!("# [{}]\n", section.name));
            for key in section.keys {
                comment(out, key.doc);
                let path = format!("{}.{}", section.name, key.name);
                comment(out, &format!("Environment: {}", env::variable_of(&path)));
                out.push_str(&format!("# {} = {}\n", key.name, key.example));
            }
        }
        Form::List => {
            for key in section.keys {
                comment(out, &format!("- `{}`: {}", key.name, key.doc));
            }
            comment(
                out,
                &format!(
                    "Environment: {} (the whole list, as a TOML array of inline tables)",
                    env::variable_of(section.name)
                ),
            );
            let empty = Vec::new();
            let entries = defaults
                .get(section.name)
                .and_then(toml::Value::as_array)
                .unwrap_or(&empty);
            let fresh = fresh_entry(section);
            for entry in entries {
                out.push_str(&format!("\n[[{}]]\n", section.name));
                let Some(entry) = entry.as_table() else {
                    continue;
                };
                // The keys said every time, then those not at their default.
                for key in section.keys {
                    let Some(value) = entry.get(key.name) else {
                        continue;
                    };
                    let always = ["name", "handler", "auth"].contains(&key.name);
                    if always || fresh.get(key.name) != Some(value) {
                        out.push_str(&format!("{} = {value}\n", key.name));
                    }
                }
            }
        }
    }
}

/// An entry of a [`Form::List`] section with only its required keys, as
/// it deserializes: the defaults of the others.
fn fresh_entry(section: &Section) -> toml::Table {
    debug_assert_eq!(section.name, "namespaces");
    let entry: super::NamespaceSection = toml::from_str("name = \"/\"\nhandler = \"echo\"\n")
        .expect("a namespace needs only its name and handler");
    match toml::Value::try_from(entry) {
        Ok(toml::Value::Table(table)) => table,
        _ => toml::Table::new(),
    }
}

/// Appends `text` as `#` comment lines wrapped to [`WIDTH`]. A list item (`- …`) goes on indented under its dash.
fn comment(out: &mut String, text: &str) {
    let next = if text.starts_with("- ") { "#  " } else { "#" };
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > WIDTH && line.len() > next.len() {
            out.push_str(&line);
            out.push('\n');
            line = String::from(next);
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::super::tests::TempFile;
    use super::*;

    /// The dotted path of every key of `value`'s tables; a list is one
    /// key (its entries are not walked).
    fn leaves(prefix: &str, value: &toml::Value, into: &mut BTreeSet<String>) {
        match value.as_table() {
            Some(table) => {
                for (key, child) in table {
                    let path = match prefix {
                        "" => key.clone(),
                        _ => format!("{prefix}.{key}"),
                    };
                    leaves(&path, child, into);
                }
            }
            None => {
                into.insert(prefix.to_owned());
            }
        }
    }

    #[test]
    fn every_key_is_documented_and_every_entry_is_a_key() {
        // The optional section set, to have its keys among the defaults'.
        let config = Config {
            raw_engine: Some(super::super::RawEngineSection {
                path: "/engine.io/".into(),
            }),
            ..Config::default()
        };
        let mut keys = BTreeSet::new();
        leaves("", &config.to_toml(), &mut keys);
        // A namespace's keys: those of one entry.
        keys.remove("namespaces");
        let fresh = fresh_entry(SECTIONS.iter().find(|s| s.form == Form::List).unwrap());
        keys.extend(fresh.keys().map(|k| format!("namespaces.{k}")));

        let documented: BTreeSet<String> = SECTIONS
            .iter()
            .flat_map(|s| {
                s.keys.iter().map(|k| match s.form {
                    Form::Top => k.name.to_owned(),
                    _ => format!("{}.{}", s.name, k.name),
                })
            })
            .collect();
        let undocumented: Vec<_> = keys.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&keys).collect();
        assert!(
            undocumented.is_empty(),
            "keys without an entry in config/reference.rs: {undocumented:?}"
        );
        assert!(
            unknown.is_empty(),
            "entries of config/reference.rs that name no key: {unknown:?}"
        );
    }

    #[test]
    fn the_reference_file_loads_as_the_defaults() {
        let file = TempFile::new(&default_toml());
        let loaded = Config::check(&file.path).unwrap();
        assert_eq!(loaded.to_toml(), Config::default().to_toml());
    }

    #[test]
    fn every_documented_variable_is_accepted() {
        let text = default_toml();
        for line in text.lines() {
            let Some(variable) = line
                .strip_prefix("# Environment: ")
                .and_then(|rest| rest.split_whitespace().next())
            else {
                continue;
            };
            let raw = match variable {
                "SWITCHBOARD_NAMESPACES" => "[{ name = \"/\", handler = \"echo\" }]",
                "SWITCHBOARD_LISTEN" => "127.0.0.1:0",
                "SWITCHBOARD_RAW_ENGINE_PATH" => "/engine.io/",
                _ => {
                    // The key's default, as the variable would carry it.
                    let next = text[text.find(line).unwrap() + line.len()..]
                        .lines()
                        .nth(1)
                        .unwrap();
                    let value = next.split_once(" = ").unwrap().1;
                    if value.starts_with('"') {
                        // A string is taken as it is, without quotes.
                        ""
                    } else {
                        value
                    }
                }
            };
            let raw = match raw {
                "[]" => "",
                raw => raw,
            };
            if let Err(err) = Config::load(None, vec![(variable.to_owned(), raw.to_owned())]) {
                // An empty string may be refused by the key's rule (an
                // engine path must start with `/`), never as unknown.
                assert!(
                    !matches!(err, super::super::ConfigError::UnknownVariable(_)),
                    "{variable}: {err}"
                );
            }
        }
    }

    /// The line after which `docs/CONFIGURATION.md` is generated.
    const MARKER: &str = "<!-- Generated by `switchboard config --default`: edit \
                          switchboard/src/config/reference.rs, not below. -->";

    #[test]
    fn docs_configuration_md_matches_the_reference() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CONFIGURATION.md");
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        let intro = current
            .split_once(MARKER)
            .map_or(current.as_str(), |(intro, _)| intro);
        let expected = format!("{intro}{MARKER}\n\n```toml\n{}```\n", default_toml());
        if current == expected {
            return;
        }
        if std::env::var_os("UPDATE_CONFIGURATION_MD").is_some() {
            std::fs::write(&path, expected).unwrap();
            return;
        }
        panic!(
            "docs/CONFIGURATION.md does not match `switchboard config --default`: \
             regenerate it with\n  UPDATE_CONFIGURATION_MD=1 cargo test -p switchboard \
             --lib config::reference\n(the text above the marker line is kept)"
        );
    }
}
