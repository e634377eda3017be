//! A user's device as the component tests drive it: one connection whose
//! sockets joined some namespaces with the user's token, emitting events
//! and reading what the server sends, in order.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{Client, WAIT, Ws, token};

type Sink = futures_util::stream::SplitSink<Ws, Message>;

/// An event the server sent: its namespace, name and first argument.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub nsp: String,
    pub name: String,
    pub data: Value,
}

/// One device: a reader task answers the server's pings and queues the
/// frames. Emits go to its first namespace; frames that
/// arrive while something else is awaited are kept, in order, for later.
/// An ack for an id this device did not emit fails the test. Dropping it
/// closes the connection, as a device going away does.
pub struct Device {
    /// Its socket id in its first namespace.
    pub id: String,
    nsp: String,
    /// Shared with the reader, which answers pings.
    tx: Arc<tokio::sync::Mutex<Sink>>,
    frames: mpsc::UnboundedReceiver<String>,
    /// The reader, which holds the connection's read half.
    reader: tokio::task::JoinHandle<()>,
    /// Frames read while something else was awaited, oldest first.
    kept: VecDeque<String>,
    /// Every event received, in arrival order.
    history: Vec<Event>,
    /// Ack ids emitted and not answered yet.
    waiting: HashSet<u64>,
    next_id: u64,
    /// How long to wait for one frame.
    wait: Duration,
}

impl Device {
    /// A device of `user` in `nsp`; the server's first frame must be the
    /// CONNECT reply.
    pub async fn connect(addr: SocketAddr, user: &str, nsp: &str) -> Device {
        Device::open(addr, user, &[nsp], false).await
    }

    /// A device of `user` in each of `namespaces` (emits go to the first);
    /// events that arrive before a CONNECT reply are kept (a component
    /// may emit to the user's room before the client is told it is
    /// connected: clients buffer them).
    pub async fn connect_buffering(addr: SocketAddr, user: &str, namespaces: &[&str]) -> Device {
        Device::open(addr, user, namespaces, true).await
    }

    async fn open(addr: SocketAddr, user: &str, namespaces: &[&str], buffering: bool) -> Device {
        let client = Client::open(addr).await;
        let (tx, mut rx) = client.ws.split();
        let tx = Arc::new(tokio::sync::Mutex::new(tx));
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let pong = tx.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(frame)) = rx.next().await {
                if let Message::Text(text) = frame {
                    if text.as_str() == "2" {
                        let _ = pong.lock().await.send(Message::text("3")).await;
                        continue;
                    }
                    if frames_tx.send(text.to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        let mut device = Device {
            id: String::new(),
            nsp: namespaces[0].to_owned(),
            tx,
            frames,
            reader,
            kept: VecDeque::new(),
            history: Vec::new(),
            waiting: HashSet::new(),
            next_id: 1,
            wait: WAIT,
        };
        let token = token(user, 600);
        for (i, nsp) in namespaces.iter().enumerate() {
            device
                .send(&format!(r#"40{nsp},{{"token":"{token}"}}"#))
                .await;
            let head = format!("40{nsp},");
            let reply = loop {
                let frame = device.read().await;
                if let Some(reply) = frame.strip_prefix(&head) {
                    break reply.to_owned();
                }
                assert!(buffering && parse_event(&frame).is_some(), "{nsp}: {frame}");
                device.kept.push_back(frame);
            };
            let reply: Value = serde_json::from_str(&reply).unwrap();
            let sid = reply["sid"].as_str().unwrap_or_else(|| panic!("{reply}"));
            if i == 0 {
                device.id = sid.to_owned();
            }
        }
        device
    }

    /// Waits this long for each frame from now on (5 s by default).
    pub fn with_wait(mut self, wait: Duration) -> Device {
        self.wait = wait;
        self
    }

    /// Sends a raw Socket.IO packet.
    pub async fn send(&mut self, frame: &str) {
        self.tx
            .lock()
            .await
            .send(Message::text(frame))
            .await
            .unwrap();
    }

    /// Emits `event` with `payload` (none when null) and ack id `id`.
    pub async fn emit_with_id(&mut self, id: u64, event: &str, payload: &Value) {
        let args = if payload.is_null() {
            String::new()
        } else {
            payload.to_string()
        };
        self.emit_text_with_id(id, event, &args).await;
    }

    /// Emits `event` with `args`, JSON text sent as it is (none when
    /// empty), and ack id `id`.
    pub async fn emit_text_with_id(&mut self, id: u64, event: &str, args: &str) {
        self.waiting.insert(id);
        let event = Value::from(event);
        let sep = if args.is_empty() { "" } else { "," };
        let frame = format!("42{},{id}[{event}{sep}{args}]", self.nsp);
        self.send(&frame).await;
    }

    /// Emits `event` with the next ack id, which it returns.
    pub async fn emit(&mut self, event: &str, payload: &Value) -> u64 {
        let id = self.take_id();
        self.emit_with_id(id, event, payload).await;
        id
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The ack of `id`; what arrives before it is kept.
    pub async fn ack(&mut self, id: u64) -> Value {
        if let Some(at) = self
            .kept
            .iter()
            .position(|f| self.parse_ack(f).is_some_and(|(got, _)| got == id))
        {
            let frame = self.kept.remove(at).unwrap();
            return self.take_ack(&frame).1;
        }
        loop {
            let frame = self.read().await;
            if let Some((got, _)) = self.parse_ack(&frame) {
                if got == id {
                    return self.take_ack(&frame).1;
                }
                assert!(
                    self.waiting.contains(&got),
                    "an ack nobody asked for: {frame}"
                );
            }
            self.kept.push_back(frame);
        }
    }

    /// The next ack, whatever its id; what arrives before it is kept.
    pub async fn next_ack(&mut self) -> (u64, Value) {
        if let Some(at) = self.kept.iter().position(|f| self.parse_ack(f).is_some()) {
            let frame = self.kept.remove(at).unwrap();
            return self.take_ack(&frame);
        }
        loop {
            let frame = self.read().await;
            if self.parse_ack(&frame).is_some() {
                return self.take_ack(&frame);
            }
            self.kept.push_back(frame);
        }
    }

    /// Emits `event` and returns its ack; events before it are kept.
    pub async fn call(&mut self, event: &str, payload: Value) -> Value {
        let id = self.emit(event, &payload).await;
        self.ack(id).await
    }

    /// [`Device::call`] with `args` as JSON text, sent as it is.
    pub async fn call_text(&mut self, event: &str, args: &str) -> Value {
        let id = self.take_id();
        self.emit_text_with_id(id, event, args).await;
        self.ack(id).await
    }

    /// Emits `event` and returns its ack, which must be the next frame
    /// (an event in between fails the test: the test expects each one).
    pub async fn ask(&mut self, event: &str, payload: Value) -> Value {
        let id = self.emit(event, &payload).await;
        self.next_ack_is(event, id).await
    }

    /// [`Device::ask`] with `args` as JSON text, sent as it is.
    pub async fn ask_text(&mut self, event: &str, args: &str) -> Value {
        let id = self.take_id();
        self.emit_text_with_id(id, event, args).await;
        self.next_ack_is(event, id).await
    }

    async fn next_ack_is(&mut self, event: &str, id: u64) -> Value {
        let frame = self.next_frame().await;
        match self.parse_ack(&frame) {
            Some((got, _)) if got == id => self.take_ack(&frame).1,
            _ => panic!("{event}: expected its ack, got {frame}"),
        }
    }

    /// Nothing arrived so far: a round trip to the server comes back before
    /// anything else (an `unknown_event` ack is the probe).
    pub async fn quiet(&mut self) {
        let ack = self.ask("nothing", json!({})).await;
        assert_eq!(ack["error"]["code"], "unknown_event", "{ack}");
    }

    /// The oldest event `name` of its namespace not taken yet (waiting for
    /// it if need be); other frames stay kept.
    pub async fn event(&mut self, name: &str) -> Value {
        let nsp = self.nsp.clone();
        self.event_on(&nsp, name).await
    }

    /// [`Device::event`] in namespace `nsp`.
    pub async fn event_on(&mut self, nsp: &str, name: &str) -> Value {
        let is_it = |e: &Event| e.nsp == nsp && e.name == name;
        if let Some(at) = self
            .kept
            .iter()
            .position(|f| parse_event(f).is_some_and(|e| is_it(&e)))
        {
            let frame = self.kept.remove(at).unwrap();
            return parse_event(&frame).unwrap().data;
        }
        loop {
            let frame = self.read().await;
            if let Some(event) = parse_event(&frame)
                && is_it(&event)
            {
                return event.data;
            }
            self.check_ack(&frame);
            self.kept.push_back(frame);
        }
    }

    /// The next frame, which must be event `name` of its namespace.
    pub async fn next_event(&mut self, name: &str) -> Value {
        let nsp = self.nsp.clone();
        self.next_event_on(&nsp, name).await
    }

    /// [`Device::next_event`] in namespace `nsp`.
    pub async fn next_event_on(&mut self, nsp: &str, name: &str) -> Value {
        let frame = self.next_frame().await;
        match parse_event(&frame) {
            Some(event) if event.nsp == nsp && event.name == name => event.data,
            _ => panic!("expected {nsp} {name}, got {frame}"),
        }
    }

    /// Every event of its namespace up to and including the first `name`
    /// whose data satisfies `last`, kept ones first (other frames stay
    /// kept).
    pub async fn until(
        &mut self,
        name: &str,
        last: impl Fn(&Value) -> bool,
    ) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        let mut set_aside = VecDeque::new();
        let mut earlier = std::mem::take(&mut self.kept).into_iter();
        loop {
            let frame = match earlier.next() {
                Some(frame) => frame,
                None => self.read().await,
            };
            let Some(event) = parse_event(&frame).filter(|e| e.nsp == self.nsp) else {
                self.check_ack(&frame);
                set_aside.push_back(frame);
                continue;
            };
            let done = event.name == name && last(&event.data);
            seen.push((event.name, event.data));
            if done {
                set_aside.extend(earlier);
                self.kept = set_aside;
                return seen;
            }
        }
    }

    /// The events received and not taken yet, oldest first.
    pub fn pending(&self) -> Vec<Event> {
        self.kept.iter().filter_map(|f| parse_event(f)).collect()
    }

    /// Every event received so far, taken or not, in arrival order.
    pub fn history(&self) -> &[Event] {
        &self.history
    }

    /// The next frame (kept ones first), whatever it is.
    pub async fn next_frame(&mut self) -> String {
        match self.kept.pop_front() {
            Some(frame) => frame,
            None => self.read().await,
        }
    }

    /// A frame that has arrived already, if any (kept ones first).
    pub fn try_frame(&mut self) -> Option<String> {
        if let Some(frame) = self.kept.pop_front() {
            return Some(frame);
        }
        let frame = self.frames.try_recv().ok()?;
        self.record(&frame);
        Some(frame)
    }

    /// The frames the server sends until it closes the connection (kept
    /// ones first); fails the test if it stays open.
    pub async fn until_closed(mut self) -> Vec<String> {
        let mut frames: Vec<String> = self.kept.drain(..).collect();
        loop {
            match tokio::time::timeout(self.wait, self.frames.recv())
                .await
                .expect("the server did not close the connection")
            {
                Some(frame) => frames.push(frame),
                None => return frames,
            }
        }
    }

    /// Closes the connection (a WebSocket close, then the drop).
    pub async fn close(self) {
        let _ = self.tx.lock().await.close().await;
    }

    /// Reads the next frame off the connection (kept frames aside).
    async fn read(&mut self) -> String {
        let frame = tokio::time::timeout(self.wait, self.frames.recv())
            .await
            .expect("timed out waiting for a frame")
            .expect("connection ended");
        self.record(&frame);
        frame
    }

    fn record(&mut self, frame: &str) {
        if let Some(event) = parse_event(frame) {
            self.history.push(event);
        }
    }

    /// `(id, first argument)` if `frame` is an ack in its namespace.
    fn parse_ack(&self, frame: &str) -> Option<(u64, Value)> {
        let rest = frame.strip_prefix("43")?.strip_prefix(self.nsp.as_str())?;
        let rest = rest.strip_prefix(',')?;
        let open = rest.find('[')?;
        let id = rest[..open].parse().ok()?;
        let args: Value = serde_json::from_str(&rest[open..]).ok()?;
        Some((id, args[0].clone()))
    }

    /// Takes the ack in `frame` off the ids waiting for one.
    fn take_ack(&mut self, frame: &str) -> (u64, Value) {
        let (id, value) = self.parse_ack(frame).unwrap();
        assert!(self.waiting.remove(&id), "an ack nobody asked for: {frame}");
        (id, value)
    }

    /// Fails on an ack that answers no emit of this device.
    fn check_ack(&self, frame: &str) {
        if let Some((id, _)) = self.parse_ack(frame) {
            assert!(
                self.waiting.contains(&id),
                "an ack nobody asked for: {frame}"
            );
        }
    }
}

impl Drop for Device {
    /// Ends the reader, which drops the connection's last halves.
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The event in `frame`, if it is one (`42<nsp>,[name, data]`).
pub fn parse_event(frame: &str) -> Option<Event> {
    let rest = frame.strip_prefix("42")?;
    let (nsp, json) = match rest.strip_prefix('/') {
        Some(_) => rest.split_once(',')?,
        None => ("/", rest),
    };
    let args: Value = serde_json::from_str(json).ok()?;
    Some(Event {
        nsp: nsp.to_owned(),
        name: args[0].as_str()?.to_owned(),
        data: args[1].clone(),
    })
}
