//! `/calls` over the wire: invitations ring every device of each invitee,
//! the first device to answer wins, signals reach exactly the named
//! participant device in order, the ring timeout becomes a missed-call
//! notification, a device that disconnects leaves, and `ice_servers` hands
//! out TURN REST API credentials.

use crate::common::{Device, start_raw};
use serde_json::{Value, json};

fn config(extra: &str) -> String {
    format!("[auth]\nhs256_secret = \"test-secret\"\n\n[calls]\n{extra}\n")
}

fn code(ack: &Value) -> &str {
    ack["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{ack}"))
}

/// alice (two devices) calls bob (two devices) and carol; bob answers on
/// his first device.
struct Scene {
    alice: Device,
    alice2: Device,
    bob: Device,
    bob2: Device,
    carol: Device,
    call: String,
}

async fn ring(addr: std::net::SocketAddr) -> Scene {
    let mut alice = Device::connect(addr, "alice", "/calls").await;
    let mut alice2 = Device::connect(addr, "alice", "/calls").await;
    let mut bob = Device::connect(addr, "bob", "/calls").await;
    let mut bob2 = Device::connect(addr, "bob", "/calls").await;
    let mut carol = Device::connect(addr, "carol", "/calls").await;
    let ack = alice
        .ask(
            "call:invite",
            json!({"users": ["bob", "carol"], "kind": "video"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let call = ack["call"].as_str().unwrap().to_owned();
    assert_eq!(ack["invitees"], json!(["bob", "carol"]));
    for device in [&mut bob, &mut bob2, &mut carol] {
        let ringing = device.next_event("call:ringing").await;
        assert_eq!(ringing["call"], call.as_str());
        assert_eq!(ringing["from"], "alice");
        assert_eq!(ringing["kind"], "video");
    }
    let outgoing = alice2.next_event("call:outgoing").await;
    assert_eq!(outgoing["call"], call.as_str());
    assert_eq!(outgoing["device"], alice.id.as_str());
    alice.quiet().await;
    Scene {
        alice,
        alice2,
        bob,
        bob2,
        carol,
        call,
    }
}

#[tokio::test]
async fn the_first_device_to_answer_wins_and_the_others_stop_ringing() {
    let server = start_raw(&config("")).await;
    let mut s = ring(server.addr).await;
    let ack = s.bob.ask("call:accept", json!({"call": s.call})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(
        ack["participants"],
        json!([{"user": "alice", "device": s.alice.id, "polite": true}]),
        "the one who joined later is polite"
    );
    let accepted = s.alice.next_event("call:accepted").await;
    assert_eq!(
        accepted,
        json!({"call": s.call, "user": "bob", "device": s.bob.id, "polite": false})
    );
    let elsewhere = s.bob2.next_event("call:answered_elsewhere").await;
    assert_eq!(elsewhere, json!({"call": s.call, "device": s.bob.id}));
    let late = s.bob2.ask("call:accept", json!({"call": s.call})).await;
    assert_eq!(code(&late), "already_answered");
    let stranger = Device::connect(server.addr, "mallory", "/calls").await;
    let mut stranger = stranger;
    let refused = stranger.ask("call:accept", json!({"call": s.call})).await;
    assert_eq!(code(&refused), "forbidden");
    let unknown = stranger.ask("call:accept", json!({"call": "nope"})).await;
    assert_eq!(code(&unknown), "not_found");
    // Carol still rings, and nobody else was told anything.
    s.carol.quiet().await;
    s.alice2.quiet().await;
}

#[tokio::test]
async fn signals_reach_the_named_participant_device_in_order_and_nobody_else() {
    let server = start_raw(&config("")).await;
    let mut s = ring(server.addr).await;
    s.bob.ask("call:accept", json!({"call": s.call})).await;
    s.alice.next_event("call:accepted").await;
    s.bob2.next_event("call:answered_elsewhere").await;

    for n in 0..20 {
        let data = json!({"candidate": format!("candidate:{n}"), "sdpMid": "0"});
        let ack = s
            .alice
            .ask(
                "signal",
                json!({"call": s.call, "to": s.bob.id, "data": data}),
            )
            .await;
        assert_eq!(ack, json!({"ok": true}));
    }
    for n in 0..20 {
        let signal = s.bob.next_event("signal").await;
        assert_eq!(
            signal,
            json!({
                "call": s.call,
                "from": s.alice.id,
                "user": "alice",
                "data": {"candidate": format!("candidate:{n}"), "sdpMid": "0"},
                "polite": true,
            })
        );
    }
    let answer = json!({"type": "answer", "sdp": "v=0\r\n"});
    s.bob
        .ask(
            "signal",
            json!({"call": s.call, "to": s.alice.id, "data": answer}),
        )
        .await;
    let signal = s.alice.next_event("signal").await;
    assert_eq!(signal["data"], answer);
    assert_eq!(signal["polite"], false, "alice's device joined first");

    // Bob's other device, and carol who only rings, are not participants.
    for outsider in [&mut s.bob2, &mut s.carol] {
        let ack = outsider
            .ask(
                "signal",
                json!({"call": s.call, "to": s.alice.id, "data": {}}),
            )
            .await;
        assert_eq!(code(&ack), "forbidden");
    }
    let ack = s
        .alice
        .ask(
            "signal",
            json!({"call": s.call, "to": s.bob2.id, "data": {}}),
        )
        .await;
    assert_eq!(code(&ack), "forbidden", "to a device not in the call");
    let ack = s
        .alice
        .ask("signal", json!({"call": s.call, "to": s.bob.id}))
        .await;
    assert_eq!(code(&ack), "bad_request");
    for device in [&mut s.bob, &mut s.bob2, &mut s.carol, &mut s.alice2] {
        device.quiet().await;
    }
}

#[tokio::test]
async fn hangups_end_the_call_when_fewer_than_two_remain() {
    let server = start_raw(&config("")).await;
    let mut s = ring(server.addr).await;
    let ack = s.carol.ask("call:decline", json!({"call": s.call})).await;
    assert_eq!(ack, json!({"ok": true, "call": s.call, "ended": null}));
    for device in [&mut s.alice, &mut s.alice2, &mut s.bob, &mut s.bob2] {
        let declined = device.next_event("call:declined").await;
        assert_eq!(declined, json!({"call": s.call, "user": "carol"}));
    }
    s.bob.ask("call:accept", json!({"call": s.call})).await;
    s.alice.next_event("call:accepted").await;
    s.bob2.next_event("call:answered_elsewhere").await;
    let ack = s.bob2.ask("call:hangup", json!({"call": s.call})).await;
    assert_eq!(code(&ack), "forbidden", "bob's other device is not in it");
    let ack = s.bob.ask("call:hangup", json!({"call": s.call})).await;
    assert_eq!(ack, json!({"ok": true, "call": s.call, "ended": "hangup"}));
    for device in [&mut s.alice, &mut s.alice2, &mut s.bob2, &mut s.carol] {
        let ended = device.next_event("call:ended").await;
        assert_eq!(ended, json!({"call": s.call, "reason": "hangup"}));
    }
    let ack = s.alice.ask("call:hangup", json!({"call": s.call})).await;
    assert_eq!(code(&ack), "not_found");
}

#[tokio::test]
async fn an_unanswered_call_ends_with_a_missed_call_notification() {
    let server = start_raw(&config("ring_timeout_ms = 300")).await;
    let mut bob_inbox = Device::connect(server.addr, "bob", "/notifications").await;
    // /notifications greets each device with its unread count.
    let greeting = bob_inbox.next_event_on("/notifications", "unread").await;
    assert_eq!(greeting, json!({"count": 0}));
    let mut alice = Device::connect(server.addr, "alice", "/calls").await;
    let mut bob = Device::connect(server.addr, "bob", "/calls").await;
    let ack = alice
        .ask("call:invite", json!({"users": ["bob"], "kind": "audio"}))
        .await;
    let call = ack["call"].as_str().unwrap().to_owned();
    bob.next_event("call:ringing").await;
    for device in [&mut alice, &mut bob] {
        let ended = device.next_event("call:ended").await;
        assert_eq!(ended, json!({"call": call, "reason": "no_answer"}));
    }
    let notification = bob_inbox
        .next_event_on("/notifications", "notification")
        .await;
    assert_eq!(notification["unread"], 1);
    assert_eq!(notification["notification"]["type"], "call:missed");
    assert_eq!(notification["notification"]["data"]["call"], call.as_str());
    assert_eq!(notification["notification"]["data"]["from"], "alice");
    let late = bob.ask("call:accept", json!({"call": call})).await;
    assert_eq!(code(&late), "not_found");
    assert_eq!(
        server
            .app
            .hub
            .ctx
            .notifications
            .unread("alice")
            .await
            .unwrap(),
        0,
        "the caller missed nothing"
    );
}

#[tokio::test]
async fn a_device_that_disconnects_leaves_its_calls() {
    let server = start_raw(&config("")).await;
    let mut s = ring(server.addr).await;
    s.bob.ask("call:accept", json!({"call": s.call})).await;
    s.alice.next_event("call:accepted").await;
    s.bob2.next_event("call:answered_elsewhere").await;
    let carol_ack = s.carol.ask("call:accept", json!({"call": s.call})).await;
    let peers = &carol_ack["participants"];
    assert_eq!(peers.as_array().unwrap().len(), 2, "{carol_ack}");
    assert!(
        peers
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["polite"] == true)
    );
    for device in [&mut s.alice, &mut s.bob] {
        let accepted = device.next_event("call:accepted").await;
        assert_eq!(accepted["device"], s.carol.id.as_str());
        assert_eq!(accepted["polite"], false);
    }
    drop(s.carol);
    for device in [&mut s.alice, &mut s.alice2, &mut s.bob, &mut s.bob2] {
        let left = device.next_event("call:left").await;
        assert_eq!(left["user"], "carol");
        assert_eq!(left["reason"], "disconnected");
    }
    drop(s.bob);
    for device in [&mut s.alice, &mut s.alice2, &mut s.bob2] {
        let ended = device.next_event("call:ended").await;
        assert_eq!(ended, json!({"call": s.call, "reason": "disconnected"}));
    }
}

#[tokio::test]
async fn invitations_and_signals_are_bounded() {
    let server = start_raw(&config(
        "max_participants = 3\nmax_calls_per_user = 1\nmax_signal_bytes = 300\n\
         signals_per_sec = 1\nsignal_burst = 3",
    ))
    .await;
    let mut alice = Device::connect(server.addr, "alice", "/calls").await;
    let mut bob = Device::connect(server.addr, "bob", "/calls").await;
    // A page learns the bound before it offers a group call.
    let ack = alice.ask("ice_servers", json!({})).await;
    assert_eq!(ack["max_participants"], 3, "{ack}");
    let ack = alice
        .ask(
            "call:invite",
            json!({"users": ["bob", "carol", "dave"], "kind": "audio"}),
        )
        .await;
    assert_eq!(code(&ack), "too_many_participants");
    for bad in [
        json!({"users": [], "kind": "audio"}),
        json!({"users": ["bob"], "kind": "hologram"}),
        json!({"users": ["alice"], "kind": "audio"}),
        json!({"users": ["bob"], "kind": "audio", "extra": 1}),
        json!("bob"),
    ] {
        let ack = alice.ask("call:invite", bad.clone()).await;
        assert_eq!(code(&ack), "bad_request", "{bad}");
    }
    let ack = alice
        .ask("call:invite", json!({"users": ["bob"], "kind": "audio"}))
        .await;
    let call = ack["call"].as_str().unwrap().to_owned();
    bob.next_event("call:ringing").await;
    let ack = alice
        .ask("call:invite", json!({"users": ["carol"], "kind": "audio"}))
        .await;
    assert_eq!(code(&ack), "busy", "alice is in one call");
    // A call that only rings does not make bob busy (call waiting): a
    // second one rings too, so nobody can keep him unreachable by ringing.
    let mut erin = Device::connect(server.addr, "erin", "/calls").await;
    let ack = erin
        .ask("call:invite", json!({"users": ["bob"], "kind": "audio"}))
        .await;
    assert_eq!(ack["ok"], true, "bob only rings: {ack}");
    let second = bob.next_event("call:ringing").await;
    assert_eq!(second["from"], "erin");

    bob.ask("call:accept", json!({"call": call})).await;
    alice.next_event("call:accepted").await;
    // In a call he has answered, he is busy.
    let mut frank = Device::connect(server.addr, "frank", "/calls").await;
    let ack = frank
        .ask("call:invite", json!({"users": ["bob"], "kind": "audio"}))
        .await;
    assert_eq!(code(&ack), "busy", "bob is in one call");
    assert!(
        !ack["error"]["message"].as_str().unwrap().contains("bob"),
        "whose phone is busy is not said: {ack}"
    );
    let big = "x".repeat(400);
    let ack = alice
        .ask(
            "signal",
            json!({"call": call, "to": bob.id, "data": {"sdp": big}}),
        )
        .await;
    assert_eq!(code(&ack), "payload_too_large");
    let mut codes = Vec::new();
    for _ in 0..4 {
        let ack = alice
            .ask("signal", json!({"call": call, "to": bob.id, "data": {}}))
            .await;
        codes.push(ack["error"]["code"].as_str().unwrap_or("ok").to_owned());
    }
    // A burst of three, then one a second (the oversize one was refused
    // before it took a token).
    assert_eq!(codes, ["ok", "ok", "ok", "rate_limited"]);
}

#[tokio::test]
async fn ice_servers_come_with_turn_rest_api_credentials() {
    let server = start_raw(&config(
        "stun_urls = [\"stun:stun.example.org:3478\"]\n\
         turn_urls = [\"turn:turn.example.org:3478?transport=udp\"]\n\
         turn_secret = \"north\"\nturn_ttl_secs = 600",
    ))
    .await;
    let mut bob = Device::connect(server.addr, "bob", "/calls").await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ack = bob.ask("ice_servers", json!({})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let servers = ack["ice_servers"].as_array().unwrap();
    assert_eq!(servers[0], json!({"urls": ["stun:stun.example.org:3478"]}));
    assert_eq!(
        servers[1]["urls"],
        json!(["turn:turn.example.org:3478?transport=udp"])
    );
    let username = servers[1]["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "bob");
    let expiry: u64 = expiry.parse().unwrap();
    assert!((before + 600..=before + 602).contains(&expiry), "{expiry}");
    assert_eq!(ack["expires_at"], expiry);
    let (_, password) = hub::components::calls::credentials("north", "bob", expiry);
    assert_eq!(servers[1]["credential"], password.as_str());
    let ack = bob.ask("ice_servers", json!({"for": "x"})).await;
    assert_eq!(code(&ack), "bad_request");
}

#[tokio::test]
async fn two_devices_answering_at_once_make_one_participant() {
    let server = start_raw(&config("")).await;
    for _ in 0..10 {
        let mut s = ring(server.addr).await;
        // Both answers are on the wire before either is handled.
        let accept = json!({"call": s.call});
        s.bob.emit_with_id(90, "call:accept", &accept).await;
        s.bob2.emit_with_id(90, "call:accept", &accept).await;
        let mut winners = Vec::new();
        for device in [&mut s.bob, &mut s.bob2] {
            // Its ack, and for the loser the winner's news, in either order.
            let (mut won, mut told) = (None, false);
            while won.is_none() || (won == Some(false) && !told) {
                let packet = device.next_frame().await;
                match packet.strip_prefix("43/calls,90") {
                    Some(ack) => {
                        let ack: Value = serde_json::from_str(ack).unwrap();
                        if ack[0]["ok"] != true {
                            assert_eq!(code(&ack[0]), "already_answered");
                        }
                        won = Some(ack[0]["ok"] == true);
                    }
                    None => {
                        assert!(packet.contains("call:answered_elsewhere"), "{packet}");
                        told = true;
                    }
                }
            }
            if won == Some(true) {
                winners.push(device.id.clone());
            }
        }
        assert_eq!(winners.len(), 1, "exactly one device answers");
        let accepted = s.alice.next_event("call:accepted").await;
        assert_eq!(accepted["device"], winners[0].as_str());
        s.alice.quiet().await;
        s.alice.ask("call:hangup", json!({"call": s.call})).await;
    }
}

#[tokio::test]
async fn a_user_may_send_only_so_many_invitations_a_minute_whatever_the_devices() {
    let server = start_raw(&config("invites_per_minute = 2")).await;
    let mut alice = Device::connect(server.addr, "alice", "/calls").await;
    for _ in 0..2 {
        let ack = alice
            .ask("call:invite", json!({"users": ["bob"], "kind": "audio"}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        let hangup = alice.ask("call:hangup", json!({"call": ack["call"]})).await;
        assert_eq!(hangup["ended"], "cancelled");
    }
    let ack = alice
        .ask("call:invite", json!({"users": ["bob"], "kind": "audio"}))
        .await;
    assert_eq!(code(&ack), "rate_limited");
    // Another device of hers shares her allowance: more connections do
    // not ring more phones.
    let mut other = Device::connect(server.addr, "alice", "/calls").await;
    let ack = other
        .ask("call:invite", json!({"users": ["bob"], "kind": "audio"}))
        .await;
    assert_eq!(code(&ack), "rate_limited", "{ack}");
    // Another user has his own.
    let mut carol = Device::connect(server.addr, "carol", "/calls").await;
    let ack = carol
        .ask("call:invite", json!({"users": ["bob"], "kind": "audio"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test]
async fn a_device_that_connects_while_a_call_rings_for_its_user_rings_too() {
    let server = start_raw(&config("")).await;
    let mut s = ring(server.addr).await;
    s.bob.ask("call:accept", json!({"call": s.call})).await;
    s.alice.next_event("call:accepted").await;
    s.bob2.next_event("call:answered_elsewhere").await;

    // Carol reloads her page (or opens another tab): the call still rings
    // for her there.
    let mut carol_tab = Device::connect(server.addr, "carol", "/calls").await;
    let ringing = carol_tab.next_event("call:ringing").await;
    assert_eq!(ringing["call"], s.call.as_str());
    assert_eq!(ringing["from"], "alice");
    assert_eq!(ringing["invitees"], json!(["bob", "carol"]));
    // Bob answered already, and mallory is not invited: neither rings.
    let mut bob_tab = Device::connect(server.addr, "bob", "/calls").await;
    bob_tab.quiet().await;
    let mut mallory = Device::connect(server.addr, "mallory", "/calls").await;
    mallory.quiet().await;
    s.carol.quiet().await;
}
