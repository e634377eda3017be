//! The namespace handlers this binary can run, by configured name.
//!
//! These are the protocol-level handlers (conformance echo, interop test
//! kit, benchmark); the ESN components live in the hub.

pub mod bench;
pub mod echo;
pub mod testkit;

use anyhow::bail;
use socketio::SocketIo;

/// Installs the handler named `kind` on namespace `name`.
pub fn install(io: &SocketIo, name: &str, kind: &str) -> anyhow::Result<()> {
    match kind {
        "echo" => {
            io.add_namespace(name, echo::Echo);
        }
        "testkit" => testkit::install(io, name),
        "bench" => {
            io.add_namespace(name, bench::Bench);
        }
        other => bail!("unknown handler {other:?} for namespace {name} (echo, testkit, bench)"),
    }
    Ok(())
}
