// Video calls (/calls): inviting, ringing (accept / decline), one
// RTCPeerConnection per other device in the call with MDN's perfect
// negotiation (the polite flag is the hub's, from the accept ack,
// `call:accepted` and each `signal`), ICE servers from the hub, hanging up,
// and the call overlay (#call[data-state]).

import type { Connection } from "./connection";
import type { Signal } from "./contract";
import { byId, show } from "./dom";

export type CallState = "idle" | "ringing" | "outgoing" | "connecting" | "connected" | "ended";

interface Ringing {
  call: string;
  from: string;
  kind: "audio" | "video";
}

/** One other device in the call. */
interface Peer {
  device: string;
  user: string;
  pc: RTCPeerConnection;
  polite: boolean;
  makingOffer: boolean;
  ignoreOffer: boolean;
  settingRemoteAnswer: boolean;
  tracksAdded: boolean;
  /** Signals are applied one after the other (a candidate must wait for its description). */
  queue: Promise<void>;
}

type SignalData = { type?: RTCSdpType; sdp?: string; candidate?: string; sdpMid?: string | null; sdpMLineIndex?: number | null };

const ENDED_SHOWN_MS = 3000;

const REASONS: Record<string, string> = {
  cancelled: "The caller hung up.",
  declined: "The call was declined.",
  no_answer: "No answer.",
  hangup: "The call ended.",
  disconnected: "The other side was disconnected.",
};

export class Calls {
  state: CallState = "idle";
  private call: string | null = null;
  private ringing: Ringing | null = null;
  private readonly peers = new Map<string, Peer>();
  private local: MediaStream | null = null;
  private iceServers: RTCIceServer[] = [];
  private endedTimer = 0;

  private readonly root = byId("call");
  private readonly info = byId("call-info");
  private readonly localVideo = byId<HTMLVideoElement>("local-video");
  private readonly remoteVideo = byId<HTMLVideoElement>("remote-video");

  constructor(private readonly conn: Connection) {
    const socket = conn.calls;
    socket.on("call:ringing", (e: Ringing) => this.onRinging(e));
    socket.on("call:accepted", (e: { call: string; user: string; device: string; polite: boolean }) => {
      if (e.call !== this.call) return;
      this.peer(e.device, e.user, e.polite, false);
      if (this.state === "outgoing") this.setState("connecting", `${e.user} answered. Connecting…`);
    });
    socket.on("signal", (e: Signal) => {
      if (e.call !== this.call) return;
      const peer = this.peer(e.from, e.user, e.polite, false);
      // The hub relays any JSON; what a peer sends is what send() below sends.
      peer.queue = peer.queue.then(() => this.onSignal(peer, e.data as SignalData)).catch(() => {});
    });
    socket.on("call:ended", (e: { call: string; reason: string }) => {
      if (e.call === this.call || e.call === this.ringing?.call) this.teardown(REASONS[e.reason] ?? "The call ended.", false);
    });
    socket.on("call:left", (e: { call: string; user: string; device: string }) => {
      if (e.call !== this.call) return;
      this.closePeer(e.device);
      this.info.textContent = `${e.user} left the call.`;
    });
    socket.on("call:declined", (e: { call: string; user: string }) => {
      if (e.call === this.call) this.info.textContent = `${e.user} declined.`;
    });
    socket.on("call:answered_elsewhere", (e: { call: string }) => {
      if (e.call === this.ringing?.call) this.reset();
    });
    // The hub ends a device's calls when it disconnects: a page that lost its
    // connection is out of its call.
    socket.on("disconnect", () => {
      if (this.call || this.ringing) this.teardown("Connection lost: the call ended.");
    });

    byId("call-accept").addEventListener("click", () => void this.accept());
    byId("call-decline").addEventListener("click", () => void this.decline());
    byId("call-hangup").addEventListener("click", () => void this.hangup());
    byId("call-close").addEventListener("click", () => this.reset());
    this.render();
  }

  /** Each peer connection's state, for the browser tests (window.__switchboard.peerStates). */
  peerStates(): RTCPeerConnectionState[] {
    return [...this.peers.values()].map((p) => p.pc.connectionState);
  }

  /** Calls `user` (the people list's "Video call"). */
  async start(user: string): Promise<void> {
    if (this.state !== "idle" && this.state !== "ended") return;
    this.setState("outgoing", `Calling ${user}…`);
    byId("call-hangup").focus();
    try {
      await this.prepare();
      // Hung up (or the connection dropped) while the camera was being opened:
      // nothing was sent yet, so only the camera is to be turned off again.
      if (this.now() !== "outgoing") return this.releaseMedia();
      const ack = await this.conn.request(this.conn.calls, "call:invite", { users: [user], kind: "video" });
      const now = this.now();
      if (now !== "outgoing" && now !== "connecting") {
        // Hung up while the invitation was on its way.
        this.conn.request(this.conn.calls, "call:hangup", { call: ack.call }).catch(() => {});
        return;
      }
      this.call = ack.call;
    } catch (err) {
      this.teardown(`Could not call ${user}: ${(err as Error).message}`);
    }
  }

  /** The state now (not as narrowed before an await). */
  private now(): CallState {
    return this.state;
  }

  private onRinging(e: Ringing): void {
    // Already in a call: this one rings on unanswered (it becomes a missed call).
    if (this.state !== "idle" && this.state !== "ended") return;
    this.ringing = e;
    this.setState("ringing", `${e.from} is calling you (${e.kind}).`);
    byId("call-accept").focus();
  }

  private async accept(): Promise<void> {
    const ringing = this.ringing;
    if (!ringing || this.state !== "ringing") return;
    this.setState("connecting", `Connecting to ${ringing.from}…`);
    byId("call-hangup").focus();
    try {
      await this.prepare();
      // Hung up, or the call ended (caller hung up, answered elsewhere, the
      // connection dropped), while getUserMedia was pending: do not answer a
      // call the user left; the camera goes off, and the hub hears a decline
      // (a no-op for a call already over).
      if (this.now() !== "connecting" || this.ringing !== ringing) {
        this.releaseMedia();
        this.conn.request(this.conn.calls, "call:decline", { call: ringing.call }).catch(() => {});
        return;
      }
      const ack = await this.conn.request(this.conn.calls, "call:accept", { call: ringing.call });
      if (this.now() !== "connecting" || this.ringing !== ringing) {
        // Hung up while the accept was on its way: the hub has us in the call now.
        this.releaseMedia();
        this.conn.request(this.conn.calls, "call:hangup", { call: ringing.call }).catch(() => {});
        return;
      }
      this.call = ringing.call;
      this.ringing = null;
      // The answering device offers to every device already in the call.
      for (const p of ack.participants) {
        this.peer(p.device, p.user, p.polite, true);
      }
    } catch (err) {
      this.teardown(`Could not answer: ${(err as Error).message}`);
    }
  }

  private async decline(): Promise<void> {
    const ringing = this.ringing;
    if (!ringing) return;
    this.reset();
    await this.conn.request(this.conn.calls, "call:decline", { call: ringing.call }).catch(() => {});
  }

  /**
   * Hang up: the call is left (teardown tells the hub). Pressed while an
   * accept is still opening the camera (not in the call yet), it declines.
   */
  private async hangup(): Promise<void> {
    const ringing = this.ringing;
    this.teardown("You hung up.");
    if (ringing) await this.conn.request(this.conn.calls, "call:decline", { call: ringing.call }).catch(() => {});
  }

  /**
   * The camera and microphone (or the microphone alone, or nothing: then
   * this side only receives — a desk without a camera can still answer),
   * and the hub's ICE servers.
   */
  private async prepare(): Promise<void> {
    const media = navigator.mediaDevices;
    const capture = async (): Promise<MediaStream | null> => {
      if (!media) return null; // not a secure context
      try {
        return await media.getUserMedia({ video: true, audio: true });
      } catch {
        return media.getUserMedia({ audio: true }).catch(() => null);
      }
    };
    const [stream, ack] = await Promise.all([
      this.local ? Promise.resolve(this.local) : capture(),
      this.conn.request(this.conn.calls, "ice_servers"),
    ]);
    this.local = stream;
    this.iceServers = ack.ice_servers;
    if (!stream) this.info.textContent += " No camera or microphone: you will see and hear the other side only.";
    this.localVideo.srcObject = stream;
    if (stream) void this.localVideo.play().catch(() => {});
  }

  /** The peer connection to `device`, created the first time it is met. */
  private peer(device: string, user: string, polite: boolean, addTracksNow: boolean): Peer {
    const existing = this.peers.get(device);
    if (existing) {
      existing.polite = polite;
      return existing;
    }
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    const peer: Peer = {
      device,
      user,
      pc,
      polite,
      makingOffer: false,
      ignoreOffer: false,
      settingRemoteAnswer: false,
      tracksAdded: false,
      queue: Promise.resolve(),
    };
    this.peers.set(device, peer);
    const call = this.call;
    const send = (data: SignalData) => {
      if (call && this.call === call) {
        this.conn.request(this.conn.calls, "signal", { call, to: device, data }).catch(() => {});
      }
    };
    pc.onnegotiationneeded = async () => {
      try {
        peer.makingOffer = true;
        await pc.setLocalDescription();
        const d = pc.localDescription;
        if (d) send({ type: d.type, sdp: d.sdp });
      } catch {
        // A later negotiationneeded (or the other side's offer) takes over.
      } finally {
        peer.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) send(candidate.toJSON() as SignalData);
    };
    pc.ontrack = ({ track, streams }) => {
      const stream = streams[0] ?? new MediaStream([track]);
      if (this.remoteVideo.srcObject !== stream) {
        this.remoteVideo.srcObject = stream;
        // Autoplay with sound may be refused without a gesture; muted it always plays.
        this.remoteVideo.play().catch(() => {
          this.remoteVideo.muted = true;
          void this.remoteVideo.play().catch(() => {});
        });
      }
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") this.setState("connected", `In a call with ${this.participants()}.`);
      else if (pc.connectionState === "failed") pc.restartIce();
    };
    // The answering side offers (adding its tracks fires negotiationneeded);
    // the caller's tracks go into its answer to that offer.
    if (addTracksNow) this.addTracks(peer);
    return peer;
  }

  private addTracks(peer: Peer): void {
    if (peer.tracksAdded) return;
    peer.tracksAdded = true;
    if (this.local && this.local.getTracks().length > 0) {
      for (const track of this.local.getTracks()) peer.pc.addTrack(track, this.local);
    } else if (peer.pc.getTransceivers().length === 0) {
      // Nothing to send, and no offer yet to answer: ask to receive both.
      peer.pc.addTransceiver("audio", { direction: "recvonly" });
      peer.pc.addTransceiver("video", { direction: "recvonly" });
    }
  }

  /** MDN's perfect negotiation: the impolite side ignores a colliding offer, the polite one rolls back. */
  private async onSignal(peer: Peer, data: SignalData): Promise<void> {
    const pc = peer.pc;
    if (data.type && typeof data.sdp === "string") {
      const description: RTCSessionDescriptionInit = { type: data.type, sdp: data.sdp };
      const readyForOffer = !peer.makingOffer && (pc.signalingState === "stable" || peer.settingRemoteAnswer);
      const collision = description.type === "offer" && !readyForOffer;
      peer.ignoreOffer = !peer.polite && collision;
      if (peer.ignoreOffer) return;
      peer.settingRemoteAnswer = description.type === "answer";
      try {
        await pc.setRemoteDescription(description);
      } finally {
        // A description refused (bad SDP) must not leave every later offer taken as "ready".
        peer.settingRemoteAnswer = false;
      }
      if (description.type === "offer") {
        this.addTracks(peer);
        await pc.setLocalDescription();
        const d = pc.localDescription;
        if (d && this.call) {
          await this.conn
            .request(this.conn.calls, "signal", { call: this.call, to: peer.device, data: { type: d.type, sdp: d.sdp } })
            .catch(() => {});
        }
      }
    } else if (data.candidate !== undefined) {
      try {
        await pc.addIceCandidate(data as RTCIceCandidateInit);
      } catch (err) {
        if (!peer.ignoreOffer) throw err;
      }
    }
  }

  private participants(): string {
    return [...new Set([...this.peers.values()].map((p) => p.user))].join(", ") || "nobody";
  }

  private closePeer(device: string): void {
    const peer = this.peers.get(device);
    if (!peer) return;
    peer.pc.close();
    this.peers.delete(device);
  }

  /** Ends the call on this page: peer connections closed, camera off, "ended" shown for a moment. */
  private teardown(message: string, tellHub = true): void {
    for (const device of [...this.peers.keys()]) this.closePeer(device);
    this.releaseMedia();
    this.remoteVideo.srcObject = null;
    // However the call ends on this page (Hang up, Close, an error), the hub
    // hears it, once; not when the hub itself ended it.
    const call = this.call;
    this.call = null;
    if (call && tellHub && this.conn.calls.connected) this.conn.request(this.conn.calls, "call:hangup", { call }).catch(() => {});
    this.ringing = null;
    this.setState("ended", message);
    window.clearTimeout(this.endedTimer);
    this.endedTimer = window.setTimeout(() => {
      if (this.state === "ended") this.reset();
    }, ENDED_SHOWN_MS);
  }

  /** The camera and microphone off. */
  private releaseMedia(): void {
    for (const track of this.local?.getTracks() ?? []) track.stop();
    this.local = null;
    this.localVideo.srcObject = null;
  }

  private reset(): void {
    if (this.call || this.local) return this.teardown("The call ended.");
    this.ringing = null;
    this.setState("idle", "");
  }

  private setState(state: CallState, info: string): void {
    this.state = state;
    this.info.textContent = info;
    this.render();
  }

  private render(): void {
    const s = this.state;
    this.root.dataset.state = s;
    const title = { idle: "Call", ringing: "Incoming call", outgoing: "Calling", connecting: "Connecting", connected: "In a call", ended: "Call ended" }[s];
    byId("call-title").textContent = title;
    show(byId("incoming-call"), s === "ringing");
    const live = s === "outgoing" || s === "connecting" || s === "connected";
    show(byId("call-media"), live);
    show(byId("call-hangup"), live);
    show(byId("call-close"), s === "ended");
  }
}
