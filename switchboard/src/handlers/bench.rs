//! The benchmark behaviour, the same as the Node peer in
//! `bench/peers/node/server.js`: every socket joins room `all`; `pub`
//! broadcasts `msg` with the same arguments to `all` (and acks, empty, when
//! asked); `echo` acks its arguments.

use std::sync::Arc;

use socketio::{Args, BoxFuture, Event, NamespaceHandler, Socket};

/// The benchmark namespace handler.
pub struct Bench;

impl NamespaceHandler for Bench {
    /// Joins `all` before the client is told it is connected.
    fn on_connect(&self, socket: &Arc<Socket>) -> Option<BoxFuture<()>> {
        socket.join("all");
        None
    }

    fn on_event(&self, socket: &Arc<Socket>, mut event: Event) -> Option<BoxFuture<()>> {
        match event.name.as_str() {
            "pub" => {
                socket.namespace().to("all").emit("msg", &event.args);
                if let Some(ack) = event.take_ack() {
                    ack.send(&Args::new());
                }
            }
            "echo" => {
                if let Some(ack) = event.take_ack() {
                    ack.send(&event.args);
                }
            }
            _ => {}
        }
        None
    }
}
