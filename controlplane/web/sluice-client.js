// sluice-client.js: Sluice's signaling and WebRTC logic as a small ES module, with no UI and no dependencies.
// Protocol: docs/signaling.md. Usage:
//
//   import { SluiceClient } from '/assets/sluice-client.js';
//   const client = new SluiceClient({ signalingUrl, meetingId, token });
//   client.addEventListener('track', (e) => attach(e.detail.participantId, e.detail.source, e.detail.track));
//   await client.join({ microphone: micTrack, camera: camTrack });
//
// Events (CustomEvent, payload in `detail`): welcome, participant-joined, participant-left, track, track-added,
// track-removed, track-muted, connection, reconnecting, reconnected, meeting-ended, error, closed; waiting (this
// client waits for a host to admit it; `join()` resolves once admitted) and waiting-list (hosts: who waits);
// muted-by-host, unmute-requested, role-changed, hands, reaction, meeting-locked; chat-history, chat, chat-updated,
// chat-mode, poll (docs/chat.md); breakouts, room-changed, breakout-timer, breakouts-closing, broadcast,
// help-requested (docs/breakouts.md).

export const PROTOCOL_VERSION = 1;

/** Close codes after which reconnecting cannot help (docs/signaling.md, "Close codes"). */
const FINAL_CLOSE_CODES = new Set([1000, 4000, 4001, 4003, 4004, 4009, 4010, 4011, 4013, 4014, 4015, 4016]);
const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
const PING_INTERVAL_MS = 5000;
/** Media connections in a row that fail before ever connecting, after which the client stops retrying. */
const MEDIA_FAILURES_MAX = 3;

export class SluiceClient extends EventTarget {
  /**
   * @param {{signalingUrl: string, meetingId: string, token: string, iceServers?: RTCIceServer[],
   *          iceTransportPolicy?: 'all'|'relay', videoCodec?: string}} options  videoCodec: 'VP8', 'VP9' or 'H264':
   *          the server offers it first, so we publish in it. The server's TURN servers (from `welcome`) are
   *          added to iceServers.
   */
  constructor({ signalingUrl, meetingId, token, iceServers = [], iceTransportPolicy = 'all', videoCodec = null }) {
    super();
    this.videoCodec = videoCodec;
    this.signalingUrl = signalingUrl;
    this.meetingId = meetingId;
    this.token = token;
    this.iceServers = iceServers;
    this.configuredIceServers = iceServers;
    this.iceTransportPolicy = iceTransportPolicy;
    /** @type {Record<string, MediaStreamTrack|null>} local tracks by source */
    this.local = { microphone: null, camera: null, screen: null };
    this.muted = { microphone: false, camera: false, screen: false };
    this.participantId = null;
    this.participants = new Map(); // participant_id -> {participant_id, name, role, tracks}
    this.sections = new Map(); // mid -> section info from the last offer
    this.pc = null;
    this.ws = null;
    this.left = false;
    this.attempt = 0;
    this.queue = Promise.resolve();
    this.pinger = null;
    this.reconnecting = false;
    this.mutesToResend = false;
    this.mediaFailures = 0;
    /** performance.now() when the last `join` was sent (stats.js times the first frame from it) */
    this.joinSentAt = null;
    /** @type {Map<string, number>} simulcast layer asked for, by track id; sent again on a new connection */
    this.layers = new Map();
    /** @type {Set<string>} track ids whose layer this connection has been told */
    this.layersSent = new Set();
    /** @type {Map<string, {layer: number|null, reason: string}>} the layer each received track comes in, and
     * why, as the server last said (`layer_changed`; absent: the one asked for) */
    this.receivedLayers = new Map();
    /** @type {Set<(m: object|null) => void>} transport()'s request waiting for its answer */
    this.transportWaiters = new Set();
    this.transportPending = null;
    this.lastTransport = null;
  }

  /** Joins with the given local tracks (any may be null). Resolves on `welcome`, rejects if refused. */
  join({ microphone = null, camera = null } = {}) {
    this.local.microphone = microphone;
    this.local.camera = camera;
    return this.#connect();
  }

  /** Publishes a screen track (from getDisplayMedia). */
  startScreenshare(track) {
    this.local.screen = track;
    track.addEventListener('ended', () => this.stopScreenshare());
    this.#send({ type: 'publish', source: 'screen' });
  }

  stopScreenshare() {
    const track = this.local.screen;
    if (!track) return;
    this.local.screen = null;
    track.stop();
    this.#send({ type: 'unpublish', source: 'screen' });
  }

  /** Mutes or unmutes a source: the track sends silence or black, and the others are told. */
  setMuted(source, muted) {
    this.muted[source] = muted;
    const track = this.local[source];
    if (track) track.enabled = !muted;
    this.#send({ type: 'mute', source, muted });
  }

  /**
   * Chooses the simulcast layer received of a track (0: lowest quality, up to the track's `layers` - 1): a
   * thumbnail needs only the lowest. The server forwards the best layer being sent up to it.
   */
  setLayer(trackId, layer) {
    if (this.layers.get(trackId) === layer && this.layersSent.has(trackId)) return;
    this.layers.set(trackId, layer);
    this.layersSent.add(trackId);
    this.#send({ type: 'set_layer', track_id: trackId, layer });
  }

  /** Swaps the device behind a source without renegotiating. */
  async replaceTrack(source, track) {
    const old = this.local[source];
    this.local[source] = track;
    track.enabled = !this.muted[source];
    const transceiver = this.#transceiverFor(source);
    if (transceiver) await transceiver.sender.replaceTrack(track);
    if (old && old !== track) old.stop();
  }

  /** The host ends the meeting for everyone. */
  endMeeting() {
    this.#send({ type: 'end_meeting' });
  }

  // --- host controls (the server checks the host grant; a participant's attempt gets an error) -------------

  /** Hosts: stop someone's source; they cannot unmute it until a host asks and they accept. */
  muteParticipant(participantId, source) {
    this.#send({ type: 'mute_participant', participant_id: participantId, source });
  }

  /** Hosts: ask someone to unmute a source a host stopped. */
  askUnmute(participantId, source) {
    this.#send({ type: 'ask_unmute', participant_id: participantId, source });
  }

  muteAll() {
    this.#send({ type: 'mute_all' });
  }

  removeParticipant(participantId) {
    this.#send({ type: 'remove_participant', participant_id: participantId });
  }

  /** Hosts: 'host' (hand over), 'co_host', 'participant' or 'viewer'. */
  setRole(participantId, role) {
    this.#send({ type: 'set_role', participant_id: participantId, role });
  }

  /** Hosts: change what someone may publish or whether they may chat ({microphone, camera, screen, chat}). */
  setGrants(participantId, grants) {
    this.#send({ type: 'set_grants', participant_id: participantId, grants });
  }

  sendToWaitingRoom(participantId) {
    this.#send({ type: 'send_to_waiting_room', participant_id: participantId });
  }

  lock(locked) {
    this.#send({ type: 'lock', locked });
  }

  /** Hosts: lower one person's hand, or everyone's without an id. */
  lowerHands(participantId = null) {
    this.#send(participantId ? { type: 'lower_hands', participant_id: participantId } : { type: 'lower_hands' });
  }

  // --- everyone --------------------------------------------------------------------------------------------

  raiseHand(raised) {
    this.#send({ type: 'raise_hand', raised });
  }

  /** One of 👍 👏 😂 😮 ❤️ 🎉 🤔 👋. */
  react(emoji) {
    this.#send({ type: 'react', emoji });
  }

  /** Hosts: let one person in from the waiting room. */
  admit(participantId) {
    this.#send({ type: 'admit', participant_id: participantId });
  }

  /** Hosts: let everyone waiting in. */
  admitAll() {
    this.#send({ type: 'admit_all' });
  }

  /** Hosts: turn one waiting person away. */
  deny(participantId) {
    this.#send({ type: 'deny', participant_id: participantId });
  }

  // --- chat and polls (docs/chat.md; the server checks the chat grant, the chat mode and the host grant) -----

  /** A message to everyone (`to` null), to the hosts (`'hosts'`) or to one participant (their id). */
  sendChat(body, to = null) {
    this.#send(to ? { type: 'chat_send', body, to } : { type: 'chat_send', body });
  }

  /** One's own message, while it is not deleted. */
  editChat(messageId, body) {
    this.#send({ type: 'chat_edit', message_id: messageId, body });
  }

  /** One's own message, or any message for a host. */
  deleteChat(messageId) {
    this.#send({ type: 'chat_delete', message_id: messageId });
  }

  /** Hosts: 'everyone', 'hosts_only' or 'off'. */
  setChatMode(mode) {
    this.#send({ type: 'chat_mode', mode });
  }

  /** Hosts: {question, options, anonymous, results: 'live'|'hosts'}. */
  createPoll({ question, options, anonymous = false, results = 'live' }) {
    this.#send({ type: 'poll_create', question, options, anonymous, results });
  }

  /** The index of the option chosen; changes one's vote while the poll is open. */
  votePoll(pollId, option) {
    this.#send({ type: 'poll_vote', poll_id: pollId, option });
  }

  /** Hosts: ends the voting; everyone sees the results. */
  closePoll(pollId) {
    this.#send({ type: 'poll_close', poll_id: pollId });
  }

  // --- breakout rooms (docs/breakouts.md; the server checks the host grant, allow_return and self_select) ----

  /** Hosts: rooms named `rooms` (an array of names) or that many numbered rooms (a number); replaces closed ones. */
  createBreakouts(rooms) {
    this.#send(Array.isArray(rooms) ? { type: 'breakout_create', rooms } : { type: 'breakout_create', count: rooms });
  }

  /** Hosts: puts someone present in a room (`roomId` null: the main room); at once while rooms are open. */
  assignBreakout(participantId, roomId) {
    this.#send({ type: 'breakout_assign', participant_id: participantId, room_id: roomId ?? null });
  }

  /** Hosts: everyone present but hosts and the recorder, shuffled evenly into the rooms. */
  assignBreakoutsRandomly() {
    this.#send({ type: 'breakout_assign_random' });
  }

  /** Hosts: opens every room, moving everyone assigned. Options left out take the server's defaults. */
  openBreakouts({ durationSecs = null, allowReturn, selfSelect, countdownSecs = null } = {}) {
    const message = { type: 'breakout_open' };
    if (durationSecs) message.duration_secs = durationSecs;
    if (allowReturn !== undefined) message.allow_return = !!allowReturn;
    if (selfSelect !== undefined) message.self_select = !!selfSelect;
    if (countdownSecs !== null) message.countdown_secs = countdownSecs;
    this.#send(message);
  }

  /** Hosts: adds `secs` to the rooms' timer. */
  extendBreakouts(secs) {
    this.#send({ type: 'breakout_extend', secs });
  }

  /** Hosts: closes every room; after the countdown everyone is back in the main room. */
  closeBreakouts() {
    this.#send({ type: 'breakout_close' });
  }

  /** Hosts: a message to everyone in every room (at most 1000 characters). */
  broadcastToBreakouts(text) {
    this.#send({ type: 'breakout_broadcast', text });
  }

  /** Goes to a room (`'main'`: back to the main room). Hosts go anywhere; others as allow_return and self_select say. */
  joinBreakout(roomId) {
    this.#send({ type: 'breakout_join', room_id: roomId });
  }

  /** In a breakout room: every host is told that this participant asks for help. */
  askHelp() {
    this.#send({ type: 'ask_help' });
  }

  /**
   * A quality summary for analytics (docs/analytics.md; stats.js builds one every 10 s): the server takes at most
   * one per 5 s on average and refuses one over 16 KiB or 64 tracks.
   */
  sendStats(summary) {
    this.#send({ ...summary, type: 'stats' });
  }

  /**
   * The server's view of this participant's downlink (`get_transport`): resolves to {estimate_bps, acked_bps,
   * limited}, or null without an answer within 2 s. The server answers at most 4 a second: callers at once share
   * one request, and an answer under 300 ms old is given again.
   */
  transport() {
    if (this.lastTransport && performance.now() - this.lastTransport.at < 300) return Promise.resolve(this.lastTransport.answer);
    if (this.transportPending) return this.transportPending;
    this.transportPending = new Promise((resolve) => {
      const done = (m) => {
        clearTimeout(timer);
        this.transportWaiters.delete(done);
        this.transportPending = null;
        if (m) this.lastTransport = { at: performance.now(), answer: m };
        resolve(m);
      };
      const timer = setTimeout(() => done(null), 2000);
      this.transportWaiters.add(done);
      this.#send({ type: 'get_transport' });
    });
    return this.transportPending;
  }

  leave() {
    this.left = true;
    this.#send({ type: 'leave' });
    this.#teardown();
    this.#emit('closed', { code: 1000, reason: 'left' });
  }

  /**
   * A summary of the connection for a quality indicator: round-trip time, receive loss, and a level. The server's
   * word counts too: a video it paused for this connection's bandwidth makes it poor, a layer it lowered fair.
   * @returns {Promise<{rttMs: number|null, lossPercent: number, level: 'good'|'fair'|'poor'|'down'}>}
   */
  async quality() {
    if (!this.pc || this.pc.connectionState !== 'connected') {
      return { rttMs: null, lossPercent: 0, level: 'down' };
    }
    const stats = await this.pc.getStats();
    let rtt = null;
    let lost = 0;
    let received = 0;
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined) {
        rtt = s.currentRoundTripTime * 1000;
      }
      if (s.type === 'inbound-rtp') {
        lost += s.packetsLost || 0;
        received += s.packetsReceived || 0;
      }
    });
    const lossPercent = received + lost > 0 ? (100 * lost) / (received + lost) : 0;
    const limited = [...this.receivedLayers.values()].filter((l) => l.reason === 'bandwidth');
    const paused = limited.some((l) => l.layer === null);
    const level = paused || lossPercent > 10 || (rtt ?? 0) > 500 ? 'poor'
      : limited.length > 0 || lossPercent > 2 || (rtt ?? 0) > 200 ? 'fair' : 'good';
    return { rttMs: rtt, lossPercent, level };
  }

  // --- connection ------------------------------------------------------------------------------------------

  #connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.signalingUrl);
      this.ws = ws;
      let welcomed = false;
      ws.onopen = () => {
        const publish = Object.entries(this.local)
          .filter(([source, track]) => track && source !== 'screen')
          .map(([source]) => source);
        if (this.local.screen) publish.push('screen');
        const join = { type: 'join', v: PROTOCOL_VERSION, meeting_id: this.meetingId, token: this.token, publish };
        if (this.videoCodec) join.video_codec = this.videoCodec.toLowerCase();
        this.joinSentAt = performance.now();
        ws.send(JSON.stringify(join));
      };
      ws.onmessage = (e) => {
        let message;
        try {
          message = JSON.parse(e.data);
        } catch {
          return;
        }
        if (message.type === 'welcome') {
          welcomed = true;
          this.attempt = 0;
          resolve(message);
        }
        this.#onMessage(message);
      };
      ws.onclose = (e) => {
        if (this.ws !== ws) return;
        clearInterval(this.pinger);
        if (!welcomed) reject(Object.assign(new Error(e.reason || `signaling closed (${e.code})`), { code: e.code }));
        // While reconnecting, the retry loop decides what a failed attempt means.
        if (!this.reconnecting) this.#onClose(e.code, e.reason, welcomed);
      };
    });
  }

  #onClose(code, reason, welcomed) {
    if (this.left) return;
    if (FINAL_CLOSE_CODES.has(code) || !welcomed) {
      this.#teardown();
      this.#emit('closed', { code, reason });
      return;
    }
    this.#reconnect();
  }

  /** A network blip: a new socket and peer connection with the same token and tracks. */
  async #reconnect() {
    this.#closePeer();
    this.reconnecting = true;
    while (!this.left && this.attempt < RECONNECT_DELAYS_MS.length) {
      this.#emit('reconnecting', { attempt: this.attempt + 1 });
      await new Promise((r) => setTimeout(r, RECONNECT_DELAYS_MS[this.attempt]));
      this.attempt += 1;
      try {
        await this.#connect();
        this.reconnecting = false;
        this.#emit('reconnected', {});
        return;
      } catch (e) {
        if (FINAL_CLOSE_CODES.has(e.code)) break;
      }
    }
    this.reconnecting = false;
    this.#teardown();
    this.#emit('closed', { code: 4008, reason: 'could not reconnect' });
  }

  #teardown() {
    clearInterval(this.pinger);
    this.#closePeer();
    if (this.ws && this.ws.readyState <= 1) this.ws.close(1000);
    this.ws = null;
  }

  #closePeer() {
    if (this.pc) {
      this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    this.pc = null;
    this.sections.clear();
  }

  #send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // --- messages --------------------------------------------------------------------------------------------

  #onMessage(m) {
    switch (m.type) {
      case 'welcome':
        this.participantId = m.participant_id;
        this.grants = m.grants;
        this.hands = m.meeting?.hands || [];
        this.participants = new Map(m.participants.map((p) => [p.participant_id, p]));
        // The server's TURN servers (short-lived credentials) join any the page configured.
        if (m.ice_servers?.length) this.iceServers = [...this.configuredIceServers, ...m.ice_servers];
        this.#newPeer();
        this.pinger = setInterval(() => this.#send({ type: 'ping' }), PING_INTERVAL_MS);
        // Mute states go again once the first answer has published the tracks (see #onOffer).
        this.mutesToResend = true;
        this.#emit('welcome', m);
        break;
      case 'offer':
        this.#serially(() => this.#onOffer(m));
        break;
      case 'candidate':
        this.#serially(() => this.pc?.addIceCandidate(m.candidate ? { candidate: m.candidate, sdpMid: m.sdp_mid } : null));
        break;
      case 'participant_joined':
        this.participants.set(m.participant.participant_id, m.participant);
        this.#emit('participant-joined', m.participant);
        break;
      case 'participant_left':
        this.participants.delete(m.participant_id);
        this.#emit('participant-left', m);
        break;
      case 'track_added': {
        const p = this.participants.get(m.participant_id);
        if (p) p.tracks.push(m.track);
        this.#emit('track-added', m);
        break;
      }
      case 'track_removed': {
        const p = this.participants.get(m.participant_id);
        if (p) p.tracks = p.tracks.filter((t) => t.track_id !== m.track_id);
        this.layers.delete(m.track_id);
        this.layersSent.delete(m.track_id);
        this.receivedLayers.delete(m.track_id);
        this.#emit('track-removed', m);
        break;
      }
      case 'track_muted': {
        const track = this.participants.get(m.participant_id)?.tracks.find((t) => t.track_id === m.track_id);
        if (track) track.muted = m.muted;
        this.#emit('track-muted', m);
        break;
      }
      case 'layer_changed':
        this.receivedLayers.set(m.track_id, { layer: m.layer, reason: m.reason });
        this.#emit('layer-changed', m);
        break;
      case 'connection':
        this.#emit('connection', m);
        break;
      case 'transport': {
        const { estimate_bps = null, acked_bps = null, limited = false } = m;
        for (const done of [...this.transportWaiters]) done({ estimate_bps, acked_bps, limited });
        break;
      }
      case 'meeting_ended':
        this.left = true;
        this.#teardown();
        this.#emit('meeting-ended', m);
        break;
      case 'error':
        this.#emit('error', m);
        break;
      case 'waiting':
        // Also when a host sends a participant back: the media connection goes until they are let in again.
        this.participantId = m.participant_id;
        clearInterval(this.pinger);
        this.#closePeer();
        this.#emit('waiting', m);
        break;
      case 'muted_by_host': {
        // The server stopped forwarding already; stop sending too, and show it.
        this.muted[m.source] = true;
        const track = this.local[m.source];
        if (m.source === 'screen') this.stopScreenshare();
        else if (track) track.enabled = false;
        this.#emit('muted-by-host', m);
        break;
      }
      case 'unmute_requested':
        this.#emit('unmute-requested', m);
        break;
      case 'role_changed':
        if (m.participant_id === this.participantId) this.grants = m.grants;
        { const p = this.participants.get(m.participant_id); if (p) p.role = m.role; }
        this.#emit('role-changed', m);
        break;
      case 'hands':
        this.hands = m.raised;
        this.#emit('hands', m);
        break;
      case 'reaction':
        this.#emit('reaction', m);
        break;
      case 'meeting_locked':
        this.#emit('meeting-locked', m);
        break;
      case 'waiting_list':
        this.waiting = m.waiting;
        this.#emit('waiting-list', m);
        break;
      case 'chat_history':
        this.#emit('chat-history', m);
        break;
      case 'chat':
        this.#emit('chat', m.message);
        break;
      case 'chat_updated':
        this.#emit('chat-updated', m.message);
        break;
      case 'chat_mode':
        this.#emit('chat-mode', m);
        break;
      case 'poll':
        this.#emit('poll', m.poll);
        break;
      case 'breakouts':
        this.breakouts = m;
        this.#emit('breakouts', m);
        break;
      case 'room_changed': {
        // The other participants are those of the new room now; their media follows in the next offer.
        this.participants = new Map((m.participants || []).filter((p) => p.participant_id !== this.participantId).map((p) => [p.participant_id, p]));
        const kept = new Set([...this.participants.values()].flatMap((p) => (p.tracks || []).map((t) => t.track_id)));
        for (const trackId of [...this.layers.keys()]) if (!kept.has(trackId)) this.layers.delete(trackId);
        for (const trackId of [...this.layersSent]) if (!kept.has(trackId)) this.layersSent.delete(trackId);
        this.#emit('room-changed', m);
        break;
      }
      case 'breakout_timer':
        this.#emit('breakout-timer', m);
        break;
      case 'breakouts_closing':
        this.#emit('breakouts-closing', m);
        break;
      case 'broadcast':
        this.#emit('broadcast', m);
        break;
      case 'help_requested':
        this.#emit('help-requested', m);
        break;
      default:
        break;
    }
  }

  #serially(step) {
    this.queue = this.queue.then(step).catch((e) => this.#emit('error', { code: 'client', message: String(e) }));
  }

  #newPeer() {
    this.#closePeer();
    this.layersSent.clear();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    pc.onicecandidate = (e) => {
      this.#send({ type: 'candidate', candidate: e.candidate ? e.candidate.candidate : null, sdp_mid: e.candidate?.sdpMid ?? null });
    };
    pc.ontrack = (e) => {
      const info = this.sections.get(e.transceiver.mid);
      if (!info || info.role !== 'subscribe') return;
      this.#emit('track', {
        participantId: info.participant_id,
        source: info.source,
        trackId: info.track_id,
        track: e.track,
        mid: e.transceiver.mid,
      });
    };
    let connected = false;
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected') {
        connected = true;
        this.mediaFailures = 0;
      }
      if (pc.connectionState === 'failed' && !this.left) {
        // A media path that never came up, again and again (no usable network path, a firewall): starting over
        // would loop for ever, so say so and stop.
        if (!connected && ++this.mediaFailures >= MEDIA_FAILURES_MAX) {
          this.left = true;
          this.#teardown();
          this.#emit('closed', { code: 4008, reason: 'the media connection could not be set up (no network path to the server)' });
          return;
        }
        // The media path is gone though signaling is up: start over on a new connection.
        this.ws?.close(4000 + 8);
      }
    };
  }

  async #onOffer(m) {
    const pc = this.pc;
    if (!pc) return;
    for (const s of m.sections) this.sections.set(s.mid, s);
    await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
    for (const t of pc.getTransceivers()) {
      const info = this.sections.get(t.mid);
      if (!info || t.stopped || t.currentDirection === 'stopped') continue;
      if (info.role === 'publish') {
        const track = this.local[info.source];
        if (track) {
          t.direction = 'sendonly';
          await t.sender.replaceTrack(track);
        } else {
          t.direction = 'inactive';
        }
      } else if (info.role === 'subscribe') {
        t.direction = 'recvonly';
      }
    }
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    // An offer of a connection that was replaced meanwhile must not be answered on the new one.
    if (this.pc !== pc) return;
    this.#send({ type: 'answer', revision: m.revision, sdp: pc.localDescription.sdp });
    for (const t of pc.getTransceivers()) {
      const info = this.sections.get(t.mid);
      if (info && info.role === 'publish' && info.scalability_mode && this.local[info.source]) {
        await this.#sendScalable(t.sender, info.scalability_mode);
      }
    }
    for (const s of m.sections) {
      const layer = this.layers.get(s.track_id);
      if (s.role === 'subscribe' && layer !== undefined && !this.layersSent.has(s.track_id)) {
        this.layersSent.add(s.track_id);
        this.#send({ type: 'set_layer', track_id: s.track_id, layer });
      }
    }
    if (this.mutesToResend) {
      this.mutesToResend = false;
      for (const [source, muted] of Object.entries(this.muted)) {
        if (muted && this.local[source]) this.#send({ type: 'mute', source, muted });
      }
    }
  }

  /**
   * Sends a camera in `mode` (WebRTC-SVC, e.g. L3T3_KEY), as the server asked: one VP9 stream with spatial layers
   * it forwards to each subscriber as far as they ask and their network carries. A browser that cannot (no VP9
   * SVC) keeps sending one layer, which subscribers all receive.
   */
  async #sendScalable(sender, mode) {
    const params = sender.getParameters();
    const encoding = params.encodings && params.encodings.length === 1 ? params.encodings[0] : null;
    if (!encoding || encoding.scalabilityMode === mode) return;
    encoding.scalabilityMode = mode;
    try {
      await sender.setParameters(params);
    } catch (e) {
      console.warn(`sluice: this browser cannot send ${mode}, sending one layer:`, e);
    }
  }

  #transceiverFor(source) {
    if (!this.pc) return null;
    for (const t of this.pc.getTransceivers()) {
      const info = this.sections.get(t.mid);
      if (info && info.role === 'publish' && info.source === source) return t;
    }
    return null;
  }
}
