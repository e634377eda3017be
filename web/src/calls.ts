// Video calls (/calls): inviting one person or a group, ringing (accept /
// decline), one RTCPeerConnection per other device in the call (a mesh, up
// to the hub's calls.max_participants) with MDN's perfect negotiation (the
// polite flag is the hub's, from the accept ack, `call:accepted` and each
// `signal`), ICE servers from the hub, an ICE restart when the network
// changes or a peer stays disconnected, the controls (mute, camera, screen,
// devices: calls/media.ts) with each side's state told to the others in a
// `{media}` signal, the timer, and the call overlay (#call[data-state]) with
// a tile per participant.

import type { Connection } from "./connection";
import type { Signal } from "./contract";
import { byId, el, reconcile, show } from "./dom";
import { LocalMedia, type MediaState, type TrackKind } from "./calls/media";

export type CallState = "idle" | "ringing" | "outgoing" | "connecting" | "connected" | "ended";

interface Ringing {
  call: string;
  from: string;
  kind: "audio" | "video";
  invitees?: string[];
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
  /** What it receives from this device (its tracks, in the stream its sender names). */
  stream: MediaStream;
  /** What the device says it sends (its `{media}` signal). */
  media: MediaState;
  /** The timer that restarts ICE after a disconnection that lasts. */
  iceTimer: number;
}

type SignalData = {
  type?: RTCSdpType;
  sdp?: string;
  candidate?: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
  media?: Partial<MediaState>;
};

/** The open conversation, as chat.current() gives it. */
export type OpenConversation = { id: number; members: string[]; direct: boolean } | null;

const ENDED_SHOWN_MS = 3000;
/** How long a peer may stay ICE-"disconnected" (it often recovers by itself) before its ICE restarts. */
const DISCONNECTED_RESTART_MS = 3000;
/** Avatar colours (white text on each is at least 4.5:1). */
const AVATAR_COLOURS = 8;

const REASONS: Record<string, string> = {
  cancelled: "The caller hung up.",
  declined: "The call was declined.",
  no_answer: "No answer.",
  hangup: "The call ended.",
  disconnected: "The other side was disconnected.",
};

/** "bob", "bob and carol", "bob, carol and dave". */
function listNames(names: string[]): string {
  if (names.length <= 1) return names[0] ?? "";
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

/** Up to two initials of a user id ("alice.smith" → "AS"). */
function initials(user: string): string {
  const parts = user.split(/[._-]+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : user.slice(0, 2);
  return letters.toUpperCase();
}

/** A colour index derived from the user id: the same person has the same colour everywhere. */
function colourOf(user: string): number {
  let h = 0;
  for (const c of user) h = (h * 31 + (c.codePointAt(0) ?? 0)) >>> 0;
  return h % AVATAR_COLOURS;
}

function mmss(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/** The ICE username fragment of a description (changes with each ICE restart). */
function ufrag(d: RTCSessionDescription | null): string | null {
  return d?.sdp.match(/a=ice-ufrag:(\S+)/)?.[1] ?? null;
}

export class Calls {
  state: CallState = "idle";
  private call: string | null = null;
  private ringing: Ringing | null = null;
  private readonly peers = new Map<string, Peer>();
  private readonly media = new LocalMedia();
  private iceServers: RTCIceServer[] = [];
  /** The hub's calls.max_participants (devices, the caller's included), once known. */
  private maxParticipants: number | null = null;
  private endedTimer = 0;
  private connectedAt = 0;
  private clock = 0;
  /** The chosen speaker (setSinkId), "" for the default. */
  private sinkId = "";
  private readonly tileNodes = new Map<string, HTMLElement>();

  private readonly root = byId("call");
  private readonly info = byId("call-info");
  private readonly localVideo = byId<HTMLVideoElement>("local-video");
  private readonly tiles = byId("call-tiles");
  private readonly timer = byId("call-timer");

  constructor(
    private readonly conn: Connection,
    private readonly me: string,
    private readonly openConversation: () => OpenConversation = () => null,
  ) {
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
      this.renderTiles();
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
    // The group call button needs the hub's bound on participants.
    socket.on("connect", () => void this.learnLimits());

    // A network change (another Wi-Fi, a cable, a VPN) leaves the candidates
    // the peers agreed on dead: an ICE restart finds new ones while the call goes on.
    window.addEventListener("online", () => this.restartIce());
    const connection = (navigator as Navigator & { connection?: EventTarget }).connection;
    connection?.addEventListener?.("change", () => this.restartIce());

    this.media.onTrack = (kind, track) => this.replaceTrack(kind, track);
    this.media.onState = () => this.onMediaState();

    byId("call-accept").addEventListener("click", () => void this.accept());
    byId("call-decline").addEventListener("click", () => void this.decline());
    byId("call-hangup").addEventListener("click", () => void this.hangup());
    byId("call-close").addEventListener("click", () => this.reset());
    byId("call-mute").addEventListener("click", () => this.media.setMuted(!this.media.muted));
    byId("call-camera").addEventListener("click", () => {
      this.media.setCamera(!this.media.cameraIsOn).catch((err) => this.problem(`The camera could not be turned on: ${(err as Error).message}`));
    });
    byId("call-screen").addEventListener("click", () => {
      if (this.media.sharing) return this.media.stopSharing();
      this.media.startSharing().catch((err) => this.problem(`The screen could not be shared: ${(err as Error).message}`));
    });
    byId("call-settings").addEventListener("click", () => {
      const panel = byId("call-devices");
      show(panel, panel.hidden);
      byId("call-settings").setAttribute("aria-expanded", String(!panel.hidden));
      if (!panel.hidden) void this.renderDevices();
    });
    for (const [id, kind] of [
      ["call-mic", "audioinput"],
      ["call-cam", "videoinput"],
    ] as const) {
      byId<HTMLSelectElement>(id).addEventListener("change", (e) => {
        const value = (e.target as HTMLSelectElement).value;
        this.media.useDevice(kind, value).catch((err) => this.problem(`That device could not be used: ${(err as Error).message}`));
      });
    }
    byId<HTMLSelectElement>("call-speaker").addEventListener("change", (e) => {
      this.sinkId = (e.target as HTMLSelectElement).value;
      this.applySink();
    });
    navigator.mediaDevices?.addEventListener?.("devicechange", () => {
      if (!byId("call-devices").hidden) void this.renderDevices();
    });

    byId("conversation-call").addEventListener("click", () => void this.callConversation());
    // Chat shows the open conversation in #conversation[data-id]: the Call button follows it.
    new MutationObserver(() => this.renderConversationCall()).observe(byId("conversation"), {
      attributes: true,
      attributeFilter: ["data-id"],
    });
    this.render();
  }

  /** Each peer connection's state, for the browser tests (window.__switchboard.peerStates). */
  peerStates(): RTCPeerConnectionState[] {
    return [...this.peers.values()].map((p) => p.pc.connectionState);
  }

  /**
   * What each peer connection negotiated and receives, for the browser tests
   * (window.__switchboard.callProbe): ICE credentials, the tracks sent, the
   * bytes received.
   */
  async probe(): Promise<
    {
      user: string;
      state: RTCPeerConnectionState;
      ice: RTCIceConnectionState;
      localUfrag: string | null;
      remoteUfrag: string | null;
      senders: { kind: string; id: string | null; label: string | null; enabled: boolean | null; readyState: string | null }[];
      bytesReceived: number;
    }[]
  > {
    return Promise.all(
      [...this.peers.values()].map(async (p) => {
        let bytesReceived = 0;
        const stats = await p.pc.getStats();
        stats.forEach((s: { type: string; bytesReceived?: number }) => {
          if (s.type === "inbound-rtp") bytesReceived += s.bytesReceived ?? 0;
        });
        return {
          user: p.user,
          state: p.pc.connectionState,
          ice: p.pc.iceConnectionState,
          localUfrag: ufrag(p.pc.localDescription),
          remoteUfrag: ufrag(p.pc.remoteDescription),
          senders: p.pc.getTransceivers().map((t) => ({
            kind: t.receiver.track.kind,
            id: t.sender.track?.id ?? null,
            label: t.sender.track?.label ?? null,
            enabled: t.sender.track?.enabled ?? null,
            readyState: t.sender.track?.readyState ?? null,
          })),
          bytesReceived,
        };
      }),
    );
  }

  /** Calls `user` (the people list's "Video call"). */
  async start(user: string): Promise<void> {
    return this.invite([user], user);
  }

  /** Calls every other member of the open group (its header's "Call"). */
  private async callConversation(): Promise<void> {
    const conv = this.openConversation();
    if (!conv) return;
    const others = conv.members.filter((m) => m !== this.me);
    if (others.length === 0) return;
    const title = byId("conversation-title").textContent ?? "";
    await this.invite(others, conv.direct ? others[0] : `${title} (${listNames(others)})`);
  }

  private async invite(users: string[], label: string): Promise<void> {
    if (this.state !== "idle" && this.state !== "ended") return;
    this.setState("outgoing", `Calling ${label}…`);
    byId("call-hangup").focus();
    try {
      await this.prepare();
      // Hung up (or the connection dropped) while the camera was being opened:
      // nothing was sent yet, so only the camera is to be turned off again.
      if (this.now() !== "outgoing") return this.releaseMedia();
      const ack = await this.conn.request(this.conn.calls, "call:invite", { users, kind: "video" });
      const now = this.now();
      if (now !== "outgoing" && now !== "connecting") {
        // Hung up while the invitation was on its way.
        this.conn.request(this.conn.calls, "call:hangup", { call: ack.call }).catch(() => {});
        return;
      }
      this.call = ack.call;
    } catch (err) {
      this.teardown(`Could not call ${label}: ${(err as Error).message}`);
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
    const others = (e.invitees ?? []).filter((u) => u !== this.me);
    const what = e.kind === "video" ? "video call" : "call";
    this.setState(
      "ringing",
      others.length ? `${e.from} is calling you and ${listNames(others)} (group ${what}).` : `${e.from} is calling you (${what}).`,
    );
    byId("call-accept").focus();
    if (others.length) void this.nameGroup(e, others);
  }

  /** Names the group a group call rings for: the group whose members are exactly the call's people. */
  private async nameGroup(e: Ringing, others: string[]): Promise<void> {
    const people = new Set([e.from, this.me, ...others]);
    try {
      const ack = await this.conn.request(this.conn.chat, "conversations", { limit: 100 });
      const group = ack.conversations.find(
        (c) => c.kind === "group" && c.member_count === people.size && c.members.every((m) => people.has(m)),
      );
      if (group?.name && this.ringing === e && this.state === "ringing") {
        this.info.textContent = `${e.from} is calling ${group.name}: you and ${listNames(others)}.`;
      }
    } catch {
      // The names already shown are enough.
    }
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
    const [opened, ack] = await Promise.all([
      this.media.opened ? Promise.resolve(true) : this.media.open(),
      this.conn.request(this.conn.calls, "ice_servers"),
    ]);
    this.iceServers = ack.ice_servers;
    this.maxParticipants = ack.max_participants ?? this.maxParticipants;
    if (!opened) this.info.textContent += " No camera or microphone: you will see and hear the other side only.";
    this.onMediaState();
  }

  /** Asks the hub for calls.max_participants (in the `ice_servers` ack). */
  private async learnLimits(): Promise<void> {
    try {
      const ack = await this.conn.request(this.conn.calls, "ice_servers");
      this.maxParticipants = ack.max_participants ?? null;
    } catch {
      // Unknown: the hub says `too_many_participants` if a group is too large.
    }
    this.renderConversationCall();
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
      stream: new MediaStream(),
      media: { audio: true, video: true, screen: false },
      iceTimer: 0,
    };
    this.peers.set(device, peer);
    const send = (data: SignalData) => this.send(peer, data);
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
    pc.ontrack = ({ track }) => {
      // One stream per peer, whatever ids its sender names: a replaced track
      // (screen, another camera) arrives on the same receiver, no new track.
      if (!peer.stream.getTracks().includes(track)) peer.stream.addTrack(track);
      this.renderTiles();
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") {
        if (this.state !== "connected") this.connectedAt = Date.now();
        this.setState("connected", `In a call with ${this.participants()}.`);
      } else if (pc.connectionState === "failed") pc.restartIce();
      this.renderTiles();
    };
    pc.oniceconnectionstatechange = () => {
      window.clearTimeout(peer.iceTimer);
      if (pc.iceConnectionState === "disconnected") {
        // Often back by itself within a second or two; if not, new candidates.
        peer.iceTimer = window.setTimeout(() => {
          if (pc.iceConnectionState === "disconnected" && this.peers.get(device) === peer) pc.restartIce();
        }, DISCONNECTED_RESTART_MS);
      } else if (pc.iceConnectionState === "failed") {
        pc.restartIce();
      }
    };
    // The answering side offers (adding its tracks fires negotiationneeded);
    // the caller's tracks go into its answer to that offer.
    if (addTracksNow) this.addTracks(peer);
    // Whether this side is muted, camera off, sharing: shown on its tile there.
    send({ media: this.media.state() });
    this.renderTiles();
    return peer;
  }

  private send(peer: Peer, data: SignalData): void {
    const call = this.call;
    if (call && this.peers.get(peer.device) === peer) {
      this.conn.request(this.conn.calls, "signal", { call, to: peer.device, data }).catch(() => {});
    }
  }

  /**
   * One audio and one video transceiver that send (a track, or nothing yet
   * while muted or the camera is off), so that any later change is a
   * replaceTrack, never a renegotiation. On the answering side the offer's
   * transceivers are reused.
   */
  private addTracks(peer: Peer): void {
    if (peer.tracksAdded) return;
    peer.tracksAdded = true;
    const pc = peer.pc;
    for (const kind of ["audio", "video"] as const) {
      const track = this.media.track(kind);
      const offered = pc.getTransceivers().find((t) => t.receiver.track.kind === kind && !t.sender.track && t.direction !== "stopped");
      if (offered) {
        offered.direction = "sendrecv";
        offered.sender.setStreams(this.media.stream);
        void offered.sender.replaceTrack(track);
      } else {
        pc.addTransceiver(track ?? kind, { direction: "sendrecv", streams: [this.media.stream] });
      }
    }
  }

  /** What a kind sends changed (mute aside): the new track on every peer's sender. */
  private replaceTrack(kind: TrackKind, track: MediaStreamTrack | null): void {
    for (const peer of this.peers.values()) {
      if (!peer.tracksAdded) continue;
      for (const t of peer.pc.getTransceivers()) {
        if (t.receiver.track.kind === kind && t.direction !== "stopped") void t.sender.replaceTrack(track).catch(() => {});
      }
    }
  }

  /** Mute, camera or screen changed: the peers are told, the controls and the self view follow. */
  private onMediaState(): void {
    const state = this.media.state();
    for (const peer of this.peers.values()) this.send(peer, { media: state });
    const video = this.media.outgoingVideo();
    const current = this.localVideo.srcObject as MediaStream | null;
    if ((current?.getVideoTracks()[0] ?? null) !== video) {
      this.localVideo.srcObject = video ? new MediaStream([video]) : null;
      if (video) void this.localVideo.play().catch(() => {});
    }
    const local = byId("local-tile");
    local.dataset.audio = String(state.audio);
    local.dataset.video = String(state.video);
    local.dataset.screen = String(state.screen);
    show(local.querySelector<HTMLElement>(".tile-muted")!, !state.audio);
    this.renderControls();
  }

  /** MDN's perfect negotiation: the impolite side ignores a colliding offer, the polite one rolls back. */
  private async onSignal(peer: Peer, data: SignalData): Promise<void> {
    const pc = peer.pc;
    if (data.media && typeof data.media === "object") {
      const m = data.media;
      peer.media = { audio: m.audio !== false, video: m.video !== false, screen: m.screen === true };
      this.renderTiles();
    } else if (data.type && typeof data.sdp === "string") {
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
        if (d) this.send(peer, { type: d.type, sdp: d.sdp });
      }
    } else if (data.candidate !== undefined) {
      try {
        await pc.addIceCandidate(data as RTCIceCandidateInit);
      } catch (err) {
        if (!peer.ignoreOffer) throw err;
      }
    }
  }

  /** New ICE candidates for every peer (the network changed); perfect negotiation sends the offer. */
  private restartIce(): void {
    if (!this.call) return;
    for (const peer of this.peers.values()) {
      if (peer.pc.connectionState !== "closed") peer.pc.restartIce();
    }
  }

  private participants(): string {
    return listNames([...new Set([...this.peers.values()].map((p) => p.user))]) || "nobody";
  }

  private closePeer(device: string): void {
    const peer = this.peers.get(device);
    if (!peer) return;
    window.clearTimeout(peer.iceTimer);
    peer.pc.close();
    this.peers.delete(device);
  }

  /** A control failed (a device refused): said in the call, the call goes on. */
  private problem(message: string): void {
    this.info.textContent = message;
    this.renderControls();
  }

  /** Ends the call on this page: peer connections closed, camera off, "ended" shown for a moment. */
  private teardown(message: string, tellHub = true): void {
    for (const device of [...this.peers.keys()]) this.closePeer(device);
    this.releaseMedia();
    this.renderTiles();
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
    this.media.release();
    this.localVideo.srcObject = null;
    show(byId("call-devices"), false);
    byId("call-settings").setAttribute("aria-expanded", "false");
  }

  private reset(): void {
    if (this.call || this.media.opened) return this.teardown("The call ended.");
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
    // Who calls, as a face would show: their initials on their colour.
    const caller = byId("call-caller");
    show(caller, s === "ringing" && this.ringing !== null);
    if (this.ringing) {
      caller.textContent = initials(this.ringing.from);
      caller.className = `call-caller avatar-${colourOf(this.ringing.from)}`;
    }
    const live = s === "outgoing" || s === "connecting" || s === "connected";
    show(byId("call-media"), live);
    show(byId("call-controls"), live);
    show(byId("call-hangup"), live);
    show(byId("call-close"), s === "ended");
    this.renderClock();
    this.renderControls();
  }

  /** mm:ss since the call connected, while it is connected. */
  private renderClock(): void {
    const running = this.state === "connected";
    show(this.timer, running);
    window.clearInterval(this.clock);
    this.clock = 0;
    if (!running) return;
    const tick = () => {
      this.timer.textContent = mmss(Date.now() - this.connectedAt);
    };
    tick();
    this.clock = window.setInterval(tick, 1000);
  }

  private renderControls(): void {
    const m = this.media;
    const mute = byId<HTMLButtonElement>("call-mute");
    mute.textContent = m.muted ? "Unmute" : "Mute";
    mute.setAttribute("aria-pressed", String(m.muted));
    mute.disabled = !m.hasMic;
    const camera = byId<HTMLButtonElement>("call-camera");
    camera.textContent = m.cameraIsOn ? "Camera off" : "Camera on";
    camera.setAttribute("aria-pressed", String(!m.cameraIsOn));
    camera.disabled = !navigator.mediaDevices; // not a secure context: no camera to turn on
    const screen = byId<HTMLButtonElement>("call-screen");
    screen.textContent = m.sharing ? "Stop sharing" : "Share screen";
    screen.setAttribute("aria-pressed", String(m.sharing));
    screen.disabled = typeof navigator.mediaDevices?.getDisplayMedia !== "function";
  }

  /** A tile per other device in the call: video, or initials while its camera is off; a mute mark. */
  private renderTiles(): void {
    const peers = [...this.peers.values()];
    reconcile(
      this.tiles,
      this.tileNodes,
      peers,
      (p) => p.device,
      (p) => {
        const video = el("video", { autoplay: true, playsinline: true, "aria-label": `${p.user}'s video` });
        const node = el("div", { class: `call-tile remote`, role: "group", "aria-label": p.user, "data-device": p.device, "data-user": p.user }, [
          video,
          el("span", { class: `tile-avatar avatar-${colourOf(p.user)}`, "aria-hidden": "true", text: initials(p.user) }),
          el("div", { class: "tile-caption" }, [
            el("span", { class: "tile-name", text: p.user }),
            el("span", { class: "tile-muted", text: "Muted", hidden: true }),
            el("span", { class: "tile-sharing", text: "Sharing screen", hidden: true }),
          ]),
        ]);
        return node;
      },
      (node, p) => {
        node.dataset.audio = String(p.media.audio);
        node.dataset.video = String(p.media.video);
        node.dataset.state = p.pc.connectionState;
        show(node.querySelector<HTMLElement>(".tile-muted")!, !p.media.audio);
        show(node.querySelector<HTMLElement>(".tile-sharing")!, p.media.screen);
        const video = node.querySelector("video")!;
        if (video.srcObject !== p.stream && p.stream.getTracks().length > 0) {
          video.srcObject = p.stream;
          if (this.sinkId) void video.setSinkId?.(this.sinkId).catch(() => {});
          // Autoplay with sound may be refused without a gesture; muted it always plays.
          video.play().catch(() => {
            video.muted = true;
            void video.play().catch(() => {});
          });
        }
      },
    );
    byId("call-media").dataset.count = String(peers.length + 1);
  }

  /** The device lists, with the ones in use selected. */
  private async renderDevices(): Promise<void> {
    const devices = (await navigator.mediaDevices?.enumerateDevices().catch(() => [])) ?? [];
    const fill = (id: string, kind: MediaDeviceKind, selected: string) => {
      const select = byId<HTMLSelectElement>(id);
      const list = devices.filter((d) => d.kind === kind && d.deviceId);
      select.replaceChildren(
        ...list.map((d, i) => el("option", { value: d.deviceId, text: d.label || `${kind} ${i + 1}`, selected: d.deviceId === selected })),
      );
      if (selected) select.value = selected;
      return list.length;
    };
    fill("call-mic", "audioinput", this.media.deviceId("audioinput"));
    fill("call-cam", "videoinput", this.media.deviceId("videoinput"));
    // Only where the browser can route audio to a chosen output.
    const canRoute = "setSinkId" in HTMLMediaElement.prototype;
    const outputs = canRoute ? fill("call-speaker", "audiooutput", this.sinkId) : 0;
    show(byId("call-speaker"), outputs > 0);
    show(byId("call-speaker-label"), outputs > 0);
  }

  private applySink(): void {
    for (const node of this.tileNodes.values()) {
      const video = node.querySelector("video");
      void video?.setSinkId?.(this.sinkId).catch(() => {});
    }
  }

  /** The open conversation's "Call": shown for a group, disabled when it has more people than a call takes. */
  private renderConversationCall(): void {
    const bar = byId("conversation-call-bar");
    const button = byId<HTMLButtonElement>("conversation-call");
    const note = byId("conversation-call-note");
    const conv = byId("conversation").dataset.id ? this.openConversation() : null;
    if (!conv || conv.direct) {
      show(bar, false);
      return;
    }
    show(bar, true);
    const others = conv.members.filter((m) => m !== this.me).length;
    const max = this.maxParticipants;
    const tooMany = max !== null && others + 1 > max;
    button.disabled = tooMany || others === 0;
    button.setAttribute("aria-label", `Call the group (${others} ${others === 1 ? "person" : "people"})`);
    note.textContent = tooMany
      ? `A call takes up to ${max} people; this group has ${others + 1}.`
      : others === 0
        ? "Nobody else is in this group."
        : "";
    show(note, note.textContent !== "");
  }
}
