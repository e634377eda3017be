//! The namespace handlers this binary provides to the hub, by configured
//! name.
//!
//! These are the protocol-level handlers (conformance echo, interop test
//! kit, benchmark); the ESN components live in the hub, which installs
//! these like its own (`hub::assembly`).

pub mod bench;
pub mod echo;
pub mod testkit;

use std::sync::Arc;

/// The handlers a namespace's `handler` may name besides the hub's own
/// components.
pub fn provided() -> hub::Handlers {
    hub::Handlers::new()
        .with("echo", || Arc::new(echo::Echo))
        .with_middleware(
            "testkit",
            || {
                // The configuration refuses it outside a test setup.
                tracing::warn!("testkit handler: any client may join any room (test setup only)");
                Arc::new(testkit::TestKit)
            },
            testkit::add_middleware,
        )
        .with("bench", || Arc::new(bench::Bench))
}
