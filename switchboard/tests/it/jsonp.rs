//! JSONP polling, as engine.io-client's JSONP transport speaks it (for
//! pages without `XMLHttpRequest`, or `forceJSONP`): every GET answered with
//! a script calling `___eio[j]`, every POST a form whose `d` field holds
//! the payload with its newlines escaped. Both protocol revisions, as the
//! reference serves them; real browsers running socket.io-client 2.x and
//! 3.x this way are in `tests/browser/jsonp.test.mjs`.

use crate::common::*;

const EIO3: &str = "[engine]\nallow_eio3 = true";

/// A JSONP polling client with callback number `index`.
struct Jsonp {
    addr: std::net::SocketAddr,
    eio: u8,
    index: &'static str,
    sid: String,
}

impl Jsonp {
    /// The handshake: returns the client and the `open` packet's JSON.
    async fn open(
        addr: std::net::SocketAddr,
        eio: u8,
        index: &'static str,
    ) -> (Jsonp, serde_json::Value) {
        let mut client = Jsonp {
            addr,
            eio,
            index,
            sid: String::new(),
        };
        let payload = client.get().await;
        let open = match eio {
            3 => payload.split_once(':').expect("a v3 payload").1.to_owned(),
            _ => payload,
        };
        let json: serde_json::Value =
            serde_json::from_str(open.strip_prefix('0').expect("the open packet")).unwrap();
        client.sid = json["sid"].as_str().unwrap().to_owned();
        (client, json)
    }

    fn path(&self) -> String {
        let mut path = format!(
            "/socket.io/?EIO={}&transport=polling&j={}",
            self.eio, self.index
        );
        if !self.sid.is_empty() {
            path.push_str("&sid=");
            path.push_str(&self.sid);
        }
        path
    }

    /// A GET: checks the answer is a script calling this client's
    /// callback with one JSON string, and returns that string.
    async fn get(&self) -> String {
        let response = http_raw(self.addr, "GET", &self.path(), &[], b"").await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(
            response.header("content-type"),
            Some("text/javascript; charset=UTF-8")
        );
        let script = response.text();
        // JSON allows U+2028 and U+2029 raw; a script may not.
        assert!(!script.contains(['\u{2028}', '\u{2029}']), "{script}");
        let head = format!("___eio[{}](", self.index);
        let json = script
            .strip_prefix(&head)
            .and_then(|s| s.strip_suffix(");"))
            .unwrap_or_else(|| panic!("not a callback: {script}"));
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }

    /// A POST of the form engine.io-client submits, `payload` in `d`.
    async fn post_form(&self, body: &str) -> RawResponse {
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        http_raw(self.addr, "POST", &self.path(), &headers, body.as_bytes()).await
    }

    async fn post(&self, payload: &str) {
        // The client's escaping: a `\n` already there doubles its
        // backslash, a newline becomes `\n`.
        let escaped = payload.replace("\\n", "\\\n").replace('\n', "\\n");
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("d", &escaped)
            .finish();
        let response = self.post_form(&body).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.text(), "ok");
    }
}

/// A v4 JSONP session (socket.io-client 3.x): handshake, CONNECT, an event
/// with newlines both raw and escaped in its text and an ack back, and
/// binary as base64 text.
#[tokio::test]
async fn jsonp_v4_session_connects_and_carries_events_and_binary() {
    let server = start("").await;
    let (client, open) = Jsonp::open(server.addr, 4, "1").await;
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    client.post("40").await;
    let connect = client.get().await;
    assert!(connect.starts_with("40{\"sid\":"), "{connect}");
    // The text holds a newline, a backslash and an n, and a line
    // separator (raw: JSON allows it).
    let text = "two\nlines and a \\n and \u{2028}";
    let packet = format!(r#"421["echo",{}]"#, serde_json::Value::from(text));
    client.post(&packet).await;
    let ack = client.get().await;
    let echoed: serde_json::Value =
        serde_json::from_str(ack.strip_prefix("431").expect(&ack)).unwrap();
    assert_eq!(echoed[0], text);
    // Two packets in one POST (the v4 separator), binary as `b<base64>`.
    client
        .post("451-2[\"echo\",{\"_placeholder\":true,\"num\":0}]\u{1e}bAQID")
        .await;
    assert_eq!(
        client.get().await,
        "461-2[{\"_placeholder\":true,\"num\":0}]\u{1e}bAQID"
    );
}

/// A v3 JSONP session (socket.io-client 2.x): the implicit CONNECT, the
/// client's ping, and binary as `b4` text even without `b64`, since a
/// script carries strings only.
#[tokio::test]
async fn jsonp_v3_session_gets_text_payloads_with_base64_binary() {
    let server = start(EIO3).await;
    let (client, _) = Jsonp::open(server.addr, 3, "0").await;
    assert_eq!(client.get().await, "2:40");
    client.post("1:2").await;
    assert_eq!(client.get().await, "1:3");
    let header = r#"451-1["echo",{"_placeholder":true,"num":0}]"#;
    client
        .post(&format!("{}:{header}6:b4AQID", header.len()))
        .await;
    let reply = r#"461-1[{"_placeholder":true,"num":0}]"#;
    assert_eq!(
        client.get().await,
        format!("{}:{reply}6:b4AQID", reply.len())
    );
}

/// A `j` that is not a number cannot make the script call anything but
/// `___eio[<its digits>]`.
#[tokio::test]
async fn jsonp_callback_is_digits_only() {
    let server = start("").await;
    let path = "/socket.io/?EIO=4&transport=polling&j=1%5D(alert(1))//2";
    let response = http_raw(server.addr, "GET", path, &[], b"").await;
    assert_eq!(response.status, 200);
    let script = response.text();
    assert!(script.starts_with("___eio[112](\"0{"), "{script}");
}

/// A form without one `d` field is a bad request that ends the session,
/// as a payload that breaks its framing does; a session not opened by
/// JSONP does not read forms.
#[tokio::test]
async fn jsonp_bad_forms_are_refused() {
    let server = start("").await;
    for body in ["x=1", "d=40&d=40", "d=9%3A4ab"] {
        let (client, _) = Jsonp::open(server.addr, 4, "0").await;
        let response = client.post_form(body).await;
        assert_eq!(response.status, 400, "{body}: {}", response.text());
        let after = http_raw(server.addr, "GET", &client.path(), &[], b"").await;
        assert_eq!(after.status, 400, "{body}: the session is over");
    }
}

/// With `allow_jsonp` off, a JSONP request gets error 3; other polling is
/// unaffected.
#[tokio::test]
async fn jsonp_can_be_turned_off() {
    let server = start("[engine]\nallow_jsonp = false").await;
    for (query, status, code) in [("&j=0", 400, Some(3)), ("", 200, None)] {
        let path = format!("/socket.io/?EIO=4&transport=polling{query}");
        let response = http(server.addr, "GET", &path, &[], "").await;
        assert_eq!(response.status, status, "{path}");
        if let Some(code) = code {
            assert_eq!(error_code(&response), code, "{path}");
        }
    }
}
