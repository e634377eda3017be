//! Switchboard's integration tests, one binary (one link step instead of
//! one per file): black-box tests over the wire, each starting real servers
//! on `127.0.0.1:0` through [`common`], one module per area. `process`
//! (and the tests that measure the real binary) run the `switchboard`
//! binary itself.
//!
//! Run one area with `cargo test -p switchboard --test it <module>::`.

mod common;

mod admission;
mod api;
mod api_reserved;
mod api_scopes;
mod backend_trust;
mod calls;
mod calls_turn;
mod chat;
mod chat_conversations;
mod chat_writes;
mod cluster;
mod cluster_chat;
mod cluster_hub;
mod cluster_limits;
mod cluster_store_outage;
mod cluster_tls;
mod components;
mod eio3;
mod engine;
mod http_routes;
mod identity;
mod identity_idp;
mod identity_tls;
mod jsonp;
mod lifecycle;
mod notifications;
mod operations;
mod operator_endpoints;
mod presence;
mod process;
mod recovery;
mod sender_bounds;
mod web;
mod ws_limits;
