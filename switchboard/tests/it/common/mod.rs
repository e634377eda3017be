//! What the integration tests share, each piece once: real servers on
//! `127.0.0.1:0` configured per test, alone or as the nodes of a cluster
//! sharing the test Redis and PostgreSQL ([`server`]), a PostgreSQL server
//! a test may stop and start again ([`postgres`]), the real binary
//! ([`binary`]), raw HTTP requests ([`http`]), a raw Socket.IO client
//! ([`client`]) and a user's device on the components' namespaces
//! ([`device`]), stand-in HTTP servers for the hub's backends and identity
//! providers ([`fake_http`], [`idp`]), what a test's servers log ([`logs`])
//! and figures from `/metrics` ([`metrics`]).

use std::time::Duration;

pub mod binary;
mod client;
mod device;
pub mod fake_http;
mod http;
pub mod idp;
mod logs;
mod metrics;
mod postgres;
mod server;

pub use client::{
    Client, Ws, closed_by_server, connect_pubsub, connect_secure, news_subscriber, next_text,
    publish_until_slow_consumer, token, without_offset,
};
pub use device::Device;
pub use http::{HttpResponse, KeepAlive, RawResponse, api, error_code, http, http_raw};
pub use logs::Logs;
pub use metrics::{inbox_overflows, sample};
pub use postgres::OwnPostgres;
pub use server::{
    RawServer, RemoveOnDrop, TestServer, cluster_sections, cluster_sections_on, postgres_database,
    rand_suffix, redis_url, start, start_cluster, start_cluster_on, start_cluster_with,
    start_nodes, start_raw, start_raw_with, temp_dir, try_start_raw, until_readyz,
};

/// How long a test waits for what should come at once.
pub const WAIT: Duration = Duration::from_secs(5);
