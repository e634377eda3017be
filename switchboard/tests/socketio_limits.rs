//! Socket.IO bounds over the wire: the bytes of the events a socket has
//! waiting behind a busy handler (`socketio.max_pending_bytes`).

mod common;

use common::*;

#[tokio::test]
async fn big_events_waiting_behind_a_handler_close_that_connection_at_the_byte_bound() {
    // The count bound (1024 by default) is far away: only bytes can trip.
    let server = start("[socketio]\nmax_pending_bytes = 200000\n").await;
    let (mut flooder, _) = Client::connect(server.addr).await;
    let (mut other, _) = Client::connect(server.addr).await;
    flooder.emit(1, "sleep", "3000").await;
    let big = format!(r#""{}""#, "x".repeat(50_000));
    // 5 events of 50 KB pass 200 KB; 20 are far past it and far below 1024.
    for id in 2..=20 {
        flooder.emit(id, "echo", &big).await;
    }
    assert!(closed_by_server(&mut flooder.ws).await);
    other.emit(7, "echo", r#""still here""#).await;
    assert_eq!(other.recv().await, r#"437["still here"]"#);
    assert_eq!(inbox_overflows(server.addr).await, 1.0);
}

#[tokio::test]
async fn events_under_the_byte_bound_and_one_bigger_event_alone_still_wait_their_turn() {
    let server = start("[socketio]\nmax_pending_bytes = 200000\n").await;
    let (mut client, _) = Client::connect(server.addr).await;
    // Many big events in turn, well past the bound in total: none waits.
    let big = format!(r#""{}""#, "x".repeat(50_000));
    for id in 1..=10 {
        client.emit(id, "echo", &big).await;
        assert_eq!(client.recv().await, format!("43{id}[{big}]"));
    }
    // One event bigger than the bound, alone behind a busy handler, waits
    // its turn (it is within max_payload): the bound never refuses the
    // first event in the queue.
    let huge = format!(r#""{}""#, "y".repeat(300_000));
    client.emit(20, "sleep", "200").await;
    client.emit(21, "echo", &huge).await;
    assert_eq!(client.recv().await, r#"4320[{"ok":true,"slept_ms":200}]"#);
    assert_eq!(client.recv().await, format!("4321[{huge}]"));
    client.emit(22, "echo", r#""after""#).await;
    assert_eq!(client.recv().await, r#"4322["after"]"#);
    assert_eq!(inbox_overflows(server.addr).await, 0.0);
}
