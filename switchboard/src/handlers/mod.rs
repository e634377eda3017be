//! The namespace handlers this binary can run, by configured name.
//!
//! These are the protocol-level handlers (conformance echo, interop test
//! kit, benchmark); the ESN components live in the hub.

pub mod bench;
pub mod echo;
pub mod testkit;

use std::sync::Arc;

use anyhow::bail;
use hub::auth::Auth;
use socketio::{Namespace, NamespaceHandler, SocketIo};

/// Installs the handler named `kind` on namespace `name`; with `auth`, its
/// clients must present a valid token and join their `user:<id>` room.
pub fn install(
    io: &SocketIo,
    name: &str,
    kind: &str,
    auth: Option<&Auth>,
) -> anyhow::Result<Arc<Namespace>> {
    let handler: Arc<dyn NamespaceHandler> = match kind {
        "echo" => Arc::new(echo::Echo),
        "testkit" => Arc::new(testkit::TestKit),
        "bench" => Arc::new(bench::Bench),
        "pubsub" => Arc::new(hub::component::ComponentHandler::new(
            hub::component::PubSub,
        )),
        other => {
            bail!("unknown handler {other:?} for namespace {name} (echo, testkit, bench, pubsub)")
        }
    };
    let handler = match auth {
        Some(auth) => auth.wrap(handler),
        None => handler,
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
