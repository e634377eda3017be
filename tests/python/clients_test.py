"""python-socketio against a running server (issue 19): run once by each
venv of tests/python/run.sh — python-socketio 5.18.1 (Engine.IO v4) and
4.6.1 with python-engineio 3.14.2 (Engine.IO v3) — against one server on
tests/interop/eio3-esn.toml:

    SERVER_URL=http://127.0.0.1:PORT python -m unittest -v clients_test

Over WebSocket and over polling: an emit with an ack (several arguments,
non-ASCII text), bytes both ways (in an ack, reversed by the server, and in
an event from the server), a broadcast to a room received by another
client, and /chat: signed in with a token (5.x: the CONNECT `auth`; 4.x:
`?token=` in the URL, its only way), a direct message to another signed-in
client, who receives it from the right sender.

Every wait is bounded (WAIT seconds). SKIP_CHAT=1 leaves /chat out (the
reference Node.js server of reference-eio3.mjs has none).
"""

import base64
import hashlib
import hmac
import json
import os
import threading
import time
import unittest
import uuid

import socketio

URL = os.environ.get("SERVER_URL", "http://127.0.0.1:8080")
SECRET = b"esn-interop-secret"  # tests/interop/eio3-esn.toml's hs256_secret
WAIT = 5.0
SKIP_CHAT = bool(os.environ.get("SKIP_CHAT"))
TRANSPORTS = ["websocket", "polling"]


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(user, ttl=3600):
    """An HS256 token for `user` (as tests/interop/esn.mjs mints them)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    claims = _b64url(json.dumps({"sub": user, "iat": now, "exp": now + ttl}).encode())
    signature = hmac.new(SECRET, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64url(signature)}"


def engine_io_version():
    """4 for python-socketio 5.x (python-engineio 4), 3 for 4.x."""
    import engineio

    return 3 if hasattr(engineio, "__version__") and engineio.__version__.startswith("3.") else 4


class Inbox:
    """Records the events a handler receives; `wait(pred)` awaits one."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def __call__(self, *args):
        with self.cond:
            self.items.append(args)
            self.cond.notify_all()

    def wait(self, pred=lambda args: True, what="an event"):
        deadline = time.monotonic() + WAIT
        with self.cond:
            while True:
                for args in self.items:
                    if pred(args):
                        return args
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {WAIT} s waiting for {what}; got {self.items}")
                self.cond.wait(left)


def connect(transport, namespaces=("/",), user=None, inboxes=()):
    """A connected client; `inboxes`: (event, namespace, Inbox) to record."""
    sio = socketio.Client(reconnection=False)
    connected = {ns: threading.Event() for ns in namespaces}
    for ns in namespaces:
        sio.on("connect", (lambda e: lambda *a: e.set())(connected[ns]), namespace=ns)
    for event, ns, inbox in inboxes:
        sio.on(event, inbox, namespace=ns)
    url = URL
    kwargs = {"transports": [transport], "namespaces": list(namespaces)}
    if user is not None:
        if engine_io_version() == 3:
            # v3 has no CONNECT payload: the token travels in the URL.
            url = f"{URL}?token={token(user)}"
        else:
            kwargs["auth"] = {"token": token(user)}
    sio.connect(url, **kwargs)
    for ns, event in connected.items():
        if not event.wait(WAIT):
            sio.disconnect()
            raise AssertionError(f"{ns} did not connect within {WAIT} s")
    return sio


class Clients(unittest.TestCase):
    def setUp(self):
        self.clients = []

    def tearDown(self):
        for sio in self.clients:
            sio.disconnect()

    def client(self, *args, **kwargs):
        sio = connect(*args, **kwargs)
        self.clients.append(sio)
        return sio

    def test_stays_on_its_transport(self):
        for transport in TRANSPORTS:
            with self.subTest(transport=transport):
                sio = self.client(transport)
                self.assertEqual(sio.call("echo", "x", timeout=WAIT), "x")
                self.assertEqual(sio.transport(), transport)

    def test_acks(self):
        for transport in TRANSPORTS:
            with self.subTest(transport=transport):
                sio = self.client(transport)
                reply = sio.call("echo", (1, "two", {"three": [3, None, True]}, "héllo € ✓"), timeout=WAIT)
                self.assertEqual(reply, (1, "two", {"three": [3, None, True]}, "héllo € ✓"))
                self.assertEqual(sio.call("echo", "one", timeout=WAIT), "one")

    def test_bytes_both_ways(self):
        for transport in TRANSPORTS:
            with self.subTest(transport=transport):
                echo = Inbox()
                sio = self.client(transport, inboxes=[("echo", "/", echo)])
                data = bytes([0, 1, 2, 0xFE, 0xFF])
                self.assertEqual(sio.call("echo", data, timeout=WAIT), data)
                self.assertEqual(sio.call("binary-reverse", b"\x01\x02\x03\x04", timeout=WAIT), b"\x04\x03\x02\x01")
                nested = sio.call("echo", {"label": "x", "data": b"abc"}, timeout=WAIT)
                self.assertEqual(nested, {"label": "x", "data": b"abc"})
                # An event from the server with bytes (echo without an ack).
                sio.emit("echo", b"\x09\x08\x07")
                # (With recovery on, as by default, the offset follows as a last argument.)
                self.assertEqual(echo.wait(what="the echoed bytes")[0], b"\x09\x08\x07")

    def test_broadcast_to_a_room(self):
        for transport in TRANSPORTS:
            with self.subTest(transport=transport):
                room = f"room-{uuid.uuid4().hex}"
                news = Inbox()
                member = self.client(transport, inboxes=[("news", "/", news)])
                sender = self.client(transport)
                self.assertEqual(member.call("join", room, timeout=WAIT), {"ok": True})
                data = {"text": "à tous", "n": [1, 2.5, None]}
                reply = sender.call("broadcast", {"event": "news", "data": data, "rooms": [room]}, timeout=WAIT)
                self.assertTrue(reply["ok"], reply)
                self.assertEqual(news.wait(what="the broadcast")[0], data)

    @unittest.skipIf(SKIP_CHAT, "SKIP_CHAT: no /chat on this server")
    def test_chat_sign_in_and_message(self):
        for transport in TRANSPORTS:
            with self.subTest(transport=transport):
                suffix = f"{engine_io_version()}-{transport}-{uuid.uuid4().hex[:8]}"
                alice, bob = f"py-alice-{suffix}", f"py-bob-{suffix}"
                got = Inbox()
                a = self.client(transport, namespaces=("/", "/chat"), user=alice)
                self.client(transport, namespaces=("/", "/chat"), user=bob, inboxes=[("message", "/chat", got)])
                sent = a.call(
                    "message",
                    {"to": bob, "client_id": uuid.uuid4().hex, "text": "bonjour, ça va ?"},
                    namespace="/chat",
                    timeout=WAIT,
                )
                self.assertTrue(sent["ok"], sent)
                message = got.wait(lambda args: args[0].get("id") == sent["id"], "alice's message")[0]
                self.assertEqual(message["sender"], alice)
                self.assertEqual(message["text"], "bonjour, ça va ?")

    @unittest.skipIf(SKIP_CHAT, "SKIP_CHAT: no /chat on this server")
    def test_chat_refuses_a_bad_token(self):
        sio = socketio.Client(reconnection=False)
        refused = Inbox()
        sio.on("connect_error", refused, namespace="/chat")
        connected = threading.Event()
        sio.on("connect", lambda *a: connected.set(), namespace="/chat")
        self.clients.append(sio)
        if engine_io_version() == 3:
            sio.connect(f"{URL}?token=not-a-token", namespaces=["/", "/chat"], transports=["websocket"])
        else:
            try:
                sio.connect(URL, auth={"token": "not-a-token"}, namespaces=["/chat"], transports=["websocket"])
            except socketio.exceptions.ConnectionError:
                pass
        (data,) = refused.wait(what="the refusal")[:1]
        self.assertFalse(connected.is_set())
        # 4.x gets the ERROR packet's data; 5.x the CONNECT_ERROR's {message, data}.
        refusal = data.get("data", data) if isinstance(data, dict) else data
        self.assertIsInstance(refusal, dict, data)
        self.assertIn("code", refusal, data)


if __name__ == "__main__":
    unittest.main(verbosity=2)
