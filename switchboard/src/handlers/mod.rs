//! The namespace handlers this binary can run, by configured name.
//!
//! These are the protocol-level handlers (conformance echo, interop test
//! kit, benchmark); the ESN components live in the hub.

pub mod bench;
pub mod echo;
pub mod testkit;

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use hub::auth::Auth;
use hub::component::{ComponentHandler, PubSub};
use hub::limits::{Limits, RateLimited};
use socketio::{Namespace, NamespaceHandler, SocketIo};

use crate::config::NamespaceSection;

/// Installs the handler a namespace section names; with `auth`, its
/// clients must present a valid token and join their `user:<id>` room.
pub fn install(
    io: &SocketIo,
    section: &NamespaceSection,
    auth: Option<&Auth>,
    limits: Limits,
) -> anyhow::Result<Arc<Namespace>> {
    let (name, kind) = (section.name.as_str(), section.handler.as_str());
    let handler: Arc<dyn NamespaceHandler> = match kind {
        "proxy" => {
            let timeout = Duration::from_millis(section.backend_timeout_ms);
            let proxy = hub::proxy::Proxy::new(&section.backend, timeout)
                .map_err(|e| anyhow::anyhow!("namespace {name}: {e}"))?;
            Arc::new(ComponentHandler::new(proxy).with_limits(limits.rooms))
        }
        "echo" => Arc::new(echo::Echo),
        "testkit" => Arc::new(testkit::TestKit),
        "bench" => Arc::new(bench::Bench),
        "pubsub" => Arc::new(ComponentHandler::new(PubSub).with_limits(limits.rooms)),
        other => {
            bail!("unknown handler {other:?} for namespace {name} (echo, testkit, bench, pubsub)")
        }
    };
    let handler = match auth {
        Some(auth) => auth.wrap(handler),
        None => handler,
    };
    // Outermost, so that no event over the rate gets any work done.
    let handler = match kind {
        "proxy" | "pubsub" => RateLimited::wrap(handler, limits.rate),
        _ => handler,
    };
    let ns = io.add_namespace_arc(name, handler);
    if let Some(auth) = auth {
        auth.protect(&ns);
    }
    if kind == "testkit" {
        testkit::add_middleware(&ns);
    }
    Ok(ns)
}
