//! The two transports of Engine.IO (and JSONP, a way of polling).

pub(crate) mod jsonp;
pub(crate) mod polling;
pub(crate) mod websocket;
pub(crate) mod ws;
