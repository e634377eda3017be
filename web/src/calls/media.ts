// This page's side of a call's media: the microphone, the camera and a
// shared screen as tracks, muting (the track disabled: the same sender goes
// on sending silence), the camera turned off (its track stopped: the light
// goes off) and on, screen sharing (getDisplayMedia, back to the camera when
// it stops, also when the browser's own "Stop sharing" ends it), and the
// choice of devices. It knows nothing of peers: `onTrack` tells the caller
// which track each kind now sends, and the caller replaces it on every
// peer's sender (no renegotiation).

/** What this page sends, as its peers are told (the `{media}` signal). */
export interface MediaState {
  audio: boolean;
  video: boolean;
  screen: boolean;
}

export type TrackKind = "audio" | "video";

export class LocalMedia {
  /** The stream the senders are associated with (its id is the remote side's stream id). */
  readonly stream = new MediaStream();
  private mic: MediaStreamTrack | null = null;
  private camera: MediaStreamTrack | null = null;
  private screen: MediaStreamTrack | null = null;
  private audioOn = true;
  private cameraOn = true;
  /** The devices chosen (empty: the default). */
  private micId = "";
  private cameraId = "";

  /** The track a kind now sends changed (null: nothing sent). */
  onTrack: (kind: TrackKind, track: MediaStreamTrack | null) => void = () => {};
  /** The state changed (mute, camera, screen). */
  onState: () => void = () => {};

  /**
   * Opens the camera and microphone (or the microphone alone, or nothing:
   * then this side only receives). Resolves with whether anything opened.
   */
  async open(): Promise<boolean> {
    const media = navigator.mediaDevices;
    if (!media) return false; // not a secure context
    let stream: MediaStream | null = null;
    try {
      stream = await media.getUserMedia({ video: true, audio: true });
    } catch {
      stream = await media.getUserMedia({ audio: true }).catch(() => null);
    }
    if (!stream) {
      this.cameraOn = false;
      return false;
    }
    this.mic = stream.getAudioTracks()[0] ?? null;
    this.camera = stream.getVideoTracks()[0] ?? null;
    this.cameraOn = this.camera !== null;
    this.audioOn = true;
    this.micId = this.mic?.getSettings().deviceId ?? "";
    this.cameraId = this.camera?.getSettings().deviceId ?? "";
    this.rebuildStream();
    return true;
  }

  /** Whether open() was called and not released since. */
  get opened(): boolean {
    return this.mic !== null || this.camera !== null;
  }

  state(): MediaState {
    return { audio: this.mic !== null && this.audioOn, video: this.outgoingVideo() !== null, screen: this.screen !== null };
  }

  /** The track each kind sends now. */
  track(kind: TrackKind): MediaStreamTrack | null {
    return kind === "audio" ? this.mic : this.outgoingVideo();
  }

  /** What the self view shows: the shared screen, else the camera while on. */
  outgoingVideo(): MediaStreamTrack | null {
    return this.screen ?? (this.cameraOn ? this.camera : null);
  }

  get muted(): boolean {
    return !this.audioOn;
  }

  get cameraIsOn(): boolean {
    return this.cameraOn && this.camera !== null;
  }

  get sharing(): boolean {
    return this.screen !== null;
  }

  get hasMic(): boolean {
    return this.mic !== null;
  }

  /** Mutes or unmutes: the same track, disabled (the peers' senders keep it; no renegotiation). */
  setMuted(muted: boolean): void {
    this.audioOn = !muted;
    if (this.mic) this.mic.enabled = !muted;
    this.onState();
  }

  /** Turns the camera off (its track stopped) or on again (a new track from the chosen camera). */
  async setCamera(on: boolean): Promise<void> {
    if (on === this.cameraIsOn) return;
    if (!on) {
      this.cameraOn = false;
      this.camera?.stop();
      this.camera = null;
    } else {
      const track = await this.capture("video", this.cameraId);
      this.camera = track;
      this.cameraOn = true;
    }
    this.rebuildStream();
    if (!this.screen) this.onTrack("video", this.outgoingVideo());
    this.onState();
  }

  /** Shares a screen in place of the camera; back to the camera when it ends (here, or by the browser). */
  async startSharing(): Promise<void> {
    if (this.screen) return;
    const display = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const track = display.getVideoTracks()[0];
    if (!track) return;
    // The browser's own "Stop sharing" ends the track without our stop().
    track.addEventListener("ended", () => {
      if (this.screen === track) this.stopSharing();
    });
    this.screen = track;
    this.rebuildStream();
    this.onTrack("video", track);
    this.onState();
  }

  stopSharing(): void {
    const track = this.screen;
    if (!track) return;
    this.screen = null;
    track.stop();
    this.rebuildStream();
    this.onTrack("video", this.outgoingVideo());
    this.onState();
  }

  /** The microphone or camera in use, by device id ("" when none). */
  deviceId(kind: "audioinput" | "videoinput"): string {
    return kind === "audioinput" ? this.micId : this.cameraId;
  }

  /** Switches to another microphone or camera: a new track, replaced on the senders. */
  async useDevice(kind: "audioinput" | "videoinput", deviceId: string): Promise<void> {
    if (kind === "audioinput") {
      this.micId = deviceId;
      if (!this.mic) return;
      const track = await this.capture("audio", deviceId);
      track.enabled = this.audioOn;
      this.mic.stop();
      this.mic = track;
      this.rebuildStream();
      this.onTrack("audio", track);
    } else {
      this.cameraId = deviceId;
      if (!this.cameraIsOn) return; // used when the camera is turned on
      const track = await this.capture("video", deviceId);
      this.camera?.stop();
      this.camera = track;
      this.rebuildStream();
      if (!this.screen) this.onTrack("video", track);
    }
    this.onState();
  }

  /** Everything off (the call ended). */
  release(): void {
    for (const track of [this.mic, this.camera, this.screen]) track?.stop();
    this.mic = this.camera = this.screen = null;
    this.audioOn = true;
    this.cameraOn = true;
    this.rebuildStream();
  }

  private async capture(kind: TrackKind, deviceId: string): Promise<MediaStreamTrack> {
    const constraint = deviceId ? { deviceId: { exact: deviceId } } : true;
    const stream = await navigator.mediaDevices.getUserMedia(kind === "audio" ? { audio: constraint } : { video: constraint });
    const track = kind === "audio" ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
    if (!track) throw new Error(`no ${kind} track`);
    const id = track.getSettings().deviceId;
    if (id) {
      if (kind === "audio") this.micId = id;
      else this.cameraId = id;
    }
    return track;
  }

  /** The stream holds exactly what is sent now. */
  private rebuildStream(): void {
    const want = [this.mic, this.outgoingVideo()].filter((t): t is MediaStreamTrack => t !== null);
    for (const t of this.stream.getTracks()) if (!want.includes(t)) this.stream.removeTrack(t);
    for (const t of want) if (!this.stream.getTracks().includes(t)) this.stream.addTrack(t);
  }
}
