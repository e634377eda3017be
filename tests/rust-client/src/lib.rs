//! Nothing but the tests: tests/clients.rs drives rust_socketio against a
//! running server (see run.sh).
