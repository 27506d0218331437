// stats.js: the browser's quality summary (docs/analytics.md, "Where the figures come from"). Every 10 seconds a
// summary of `RTCPeerConnection.getStats()` goes to the server as a `stats` signaling message: per media section
// sent or received, its cumulative counters, loss, jitter, RTT and bitrate over the interval, the selected
// candidate pair's type and protocol, and once the time from `join` to the first decoded video frame. No address,
// port or SDP is read into it. Unknown figures are left out, never sent as null.
//
//   import { startStatsReports } from '/assets/stats.js';
//   const reports = startStatsReports(client);   // after `join()` resolved; stops by itself on `closed`
//   reports.stop();
//
// `readReport` is shared with the connection-details overlay (connection.js).

/** How often a summary goes: the server takes at most one per 5 s on average (a burst of 2). */
export const STATS_INTERVAL_MS = 10_000;
/** The server refuses a summary over 16 KiB or with more than 64 tracks. */
export const STATS_BYTES_MAX = 16 * 1024;
export const STATS_TRACKS_MAX = 64;
/** While a video is received but no frame decoded yet, the stats are read this often to time the first frame. */
const FIRST_FRAME_POLL_MS = 100;
/** Opus, the only audio codec the server offers, runs at 48 kHz. */
const AUDIO_CLOCK_RATE = 48_000;
const CANDIDATE_TYPES = new Set(['host', 'srflx', 'prflx', 'relay']);
const CANDIDATE_PROTOCOLS = new Set(['udp', 'tcp', 'tls']);
const LIMITATIONS = new Set(['none', 'cpu', 'bandwidth', 'other']);

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const int = (v) => Math.max(0, Math.round(v));
const tenth = (v) => Math.round(v * 10) / 10;

/**
 * One getStats() report, grouped by media section: `tracks` maps `${direction}:${mid}` to an entry with the
 * section's cumulative figures (simulcast layers of one outbound section are summed; resolution and frame rate
 * are the largest layer's), `candidate` is the selected pair. `timestamp`s are the report's (ms).
 */
export function readReport(report, pc = null) {
  const byTrack = new Map(); // `in:${trackId}` / `out:${trackId}` -> mid, when a stat has no mid of its own
  for (const t of pc?.getTransceivers?.() || []) {
    if (t.mid === null || t.mid === undefined) continue;
    if (t.receiver?.track) byTrack.set(`in:${t.receiver.track.id}`, t.mid);
    if (t.sender?.track) byTrack.set(`out:${t.sender.track.id}`, t.mid);
  }
  const remoteInbound = new Map(); // outbound-rtp id -> remote-inbound-rtp
  report.forEach((s) => { if (s.type === 'remote-inbound-rtp' && s.localId) remoteInbound.set(s.localId, s); });
  const tracks = new Map();
  report.forEach((s) => {
    if (s.type !== 'inbound-rtp' && s.type !== 'outbound-rtp') return;
    const inbound = s.type === 'inbound-rtp';
    const kind = s.kind || s.mediaType;
    let mid = s.mid;
    if (mid === undefined || mid === null || mid === '') {
      const trackId = inbound ? s.trackIdentifier : report.get(s.mediaSourceId)?.trackIdentifier;
      mid = trackId ? byTrack.get(`${inbound ? 'in' : 'out'}:${trackId}`) : undefined;
    }
    if (mid === undefined || mid === null || mid === '' || (kind !== 'audio' && kind !== 'video')) return;
    const direction = inbound ? 'inbound' : 'outbound';
    const key = `${direction}:${mid}`;
    const e = tracks.get(key) || { key, mid: String(mid), direction, kind, packets: 0, bytes: 0, timestamp: s.timestamp, layers: 0 };
    tracks.set(key, e);
    e.timestamp = Math.max(e.timestamp || 0, s.timestamp || 0);
    e.layers += 1;
    if (inbound) {
      e.packets += s.packetsReceived || 0;
      e.bytes += s.bytesReceived || 0;
      if (isNum(s.packetsLost)) e.lost = (e.lost || 0) + Math.max(0, s.packetsLost);
      if (isNum(s.jitter)) e.jitter_ms = Math.max(e.jitter_ms || 0, s.jitter * 1000);
      if (kind === 'video') {
        if (isNum(s.framesDecoded)) e.frames_decoded = (e.frames_decoded || 0) + s.framesDecoded;
        if (isNum(s.framesDropped)) e.frames_dropped = (e.frames_dropped || 0) + s.framesDropped;
        if (isNum(s.freezeCount)) e.freezes = (e.freezes || 0) + s.freezeCount;
        if (isNum(s.totalFreezesDuration)) e.freeze_ms = (e.freeze_ms || 0) + s.totalFreezesDuration * 1000;
        takeLargestFrame(e, s);
      } else if (isNum(s.concealedSamples)) {
        const clockRate = report.get(s.codecId)?.clockRate || AUDIO_CLOCK_RATE;
        e.concealed_ms = (e.concealed_ms || 0) + (s.concealedSamples / clockRate) * 1000;
      }
    } else {
      e.packets += s.packetsSent || 0;
      e.bytes += s.bytesSent || 0;
      const remote = remoteInbound.get(s.id) || (s.remoteId ? report.get(s.remoteId) : null);
      if (remote) {
        if (isNum(remote.packetsLost)) e.lost = (e.lost || 0) + Math.max(0, remote.packetsLost);
        if (isNum(remote.jitter)) e.jitter_ms = Math.max(e.jitter_ms || 0, remote.jitter * 1000);
        if (isNum(remote.roundTripTime)) e.rtt_ms = Math.max(e.rtt_ms || 0, remote.roundTripTime * 1000);
        if (isNum(remote.fractionLost)) e.fraction_lost = Math.max(e.fraction_lost || 0, remote.fractionLost);
      }
      if (kind === 'video') {
        takeLargestFrame(e, s);
        // Layers share an encoder: any layer held back says why.
        if (LIMITATIONS.has(s.qualityLimitationReason) && (!e.limitation || e.limitation === 'none')) e.limitation = s.qualityLimitationReason;
      }
    }
  });
  return { tracks, candidate: selectedCandidate(report) };
}

function takeLargestFrame(e, s) {
  if (!isNum(s.frameWidth) || !isNum(s.frameHeight)) return;
  if (s.frameWidth < (e.width || 0)) return;
  e.width = s.frameWidth;
  e.height = s.frameHeight;
  if (isNum(s.framesPerSecond)) e.fps = s.framesPerSecond;
}

/**
 * The selected candidate pair: the local candidate's type and protocol (a relay candidate's protocol is the one
 * to the TURN server: udp, tcp or tls), the remote candidate's type, the current RTT and the outgoing estimate.
 */
export function selectedCandidate(report) {
  let pair = null;
  report.forEach((s) => { if (!pair && s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) || null; });
  if (!pair) report.forEach((s) => { if (!pair && s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) pair = s; });
  if (!pair) return null;
  const local = report.get(pair.localCandidateId);
  const remote = report.get(pair.remoteCandidateId);
  const type = local?.candidateType;
  const protocol = type === 'relay' && local?.relayProtocol ? local.relayProtocol : local?.protocol;
  return {
    type: CANDIDATE_TYPES.has(type) ? type : null,
    protocol: CANDIDATE_PROTOCOLS.has(protocol) ? protocol : null,
    remoteType: remote?.candidateType || null,
    rttMs: isNum(pair.currentRoundTripTime) ? pair.currentRoundTripTime * 1000 : null,
    outgoingKbps: isNum(pair.availableOutgoingBitrate) ? pair.availableOutgoingBitrate / 1000 : null,
    state: pair.state || null,
  };
}

/** kbit/s from the previous entry of the same section to this one, or null without one (or after a reset). */
export function bitrateKbps(entry, previous) {
  if (!previous || !isNum(previous.timestamp) || !isNum(entry.timestamp)) return null;
  const ms = entry.timestamp - previous.timestamp;
  const bytes = entry.bytes - previous.bytes;
  if (ms <= 0 || bytes < 0) return null;
  return (bytes * 8) / ms; // bytes * 8 / ms = kbit/s
}

/** One section as it goes in the `stats` message: integers for counts, unknown figures left out. */
function wireTrack(e, previous) {
  const t = { mid: e.mid, direction: e.direction, kind: e.kind, packets: int(e.packets), bytes: int(e.bytes) };
  if (isNum(e.lost)) t.lost = int(e.lost);
  if (isNum(e.jitter_ms)) t.jitter_ms = tenth(e.jitter_ms);
  if (e.direction === 'outbound' && isNum(e.rtt_ms)) t.rtt_ms = tenth(e.rtt_ms);
  const kbps = bitrateKbps(e, previous);
  if (kbps !== null) t.bitrate_kbps = int(kbps);
  if (e.direction === 'inbound' && e.kind === 'video') {
    for (const k of ['frames_decoded', 'frames_dropped', 'freezes', 'freeze_ms', 'width', 'height']) if (isNum(e[k])) t[k] = int(e[k]);
    if (isNum(e.fps)) t.fps = tenth(e.fps);
  }
  if (e.direction === 'outbound' && e.kind === 'video' && e.limitation) t.limitation = e.limitation;
  if (e.direction === 'inbound' && e.kind === 'audio' && isNum(e.concealed_ms)) t.concealed_ms = int(e.concealed_ms);
  return t;
}

/** What is sent first when a summary must be cut: our own media, then the video we receive, then the audio. */
const priority = (t) => (t.direction === 'outbound' ? 0 : t.kind === 'video' ? 1 : 2);

/**
 * The `stats` message from a report's entries: at most STATS_TRACKS_MAX tracks and STATS_BYTES_MAX bytes of JSON.
 * @param {{tracks: Map<string, object>, candidate: object|null}} read  readReport's answer
 * @param {Map<string, object>} previous  the entries of the previous summary, by key
 * @param {number|null} ttffMs
 */
export function buildSummary(read, previous, ttffMs = null) {
  const message = { type: 'stats' };
  if (isNum(ttffMs)) message.ttff_ms = int(ttffMs);
  if (read.candidate?.type && read.candidate?.protocol) message.candidate = { type: read.candidate.type, protocol: read.candidate.protocol };
  const tracks = [...read.tracks.values()]
    .map((e) => wireTrack(e, previous.get(e.key)))
    .sort((a, b) => priority(a) - priority(b) || a.mid.localeCompare(b.mid, undefined, { numeric: true }))
    .slice(0, STATS_TRACKS_MAX);
  message.tracks = tracks;
  const encoder = new TextEncoder();
  while (tracks.length > 0 && encoder.encode(JSON.stringify(message)).length > STATS_BYTES_MAX) tracks.pop();
  return message;
}

/**
 * Sends a summary every STATS_INTERVAL_MS while the client is in a meeting, and one at once when the first video
 * frame is decoded (with `ttff_ms`). Stops on `closed` and `meeting-ended`, or with `stop()`.
 * @param {import('./sluice-client.js').SluiceClient} client
 * @returns {{stop: () => void, sent: number, last: object|null, ttffMs: number|null, stopped: boolean}}
 */
export function startStatsReports(client) {
  const state = { sent: 0, last: null, ttffMs: null, stopped: false, stop };
  // The join whose first frame is timed: the client's own mark of sending `join` if it has one, else the page's.
  const startedAt = performance.now();
  const joinAt = () => client.joinSentAt ?? globalThis.sluiceApp?.joinStartedAt ?? startedAt;
  let previous = new Map();
  let previousPc = null;
  let ttffPending = true; // measured, not yet sent
  let reading = false;
  let timer = setInterval(tick, STATS_INTERVAL_MS);
  let poller = setTimeout(pollFirstFrame, 0);

  const onEnd = () => stop();
  client.addEventListener('closed', onEnd);
  client.addEventListener('meeting-ended', onEnd);

  function stop() {
    if (state.stopped) return;
    state.stopped = true;
    clearInterval(timer);
    clearTimeout(poller);
    client.removeEventListener('closed', onEnd);
    client.removeEventListener('meeting-ended', onEnd);
  }

  async function read() {
    const pc = client.pc;
    if (!pc || pc.connectionState === 'closed') return null;
    const report = await pc.getStats();
    if (client.pc !== pc || state.stopped) return null;
    if (pc !== previousPc) {
      // A new connection (a reconnect, a move to the waiting room and back): its counters start again.
      previous = new Map();
      previousPc = pc;
    }
    return readReport(report, pc);
  }

  async function tick() {
    if (state.stopped) return;
    if (reading) {
      // A summary is being read: a first frame found meanwhile goes with it, or right after.
      while (reading) await new Promise((r) => setTimeout(r, 20));
      if (!ttffPending || state.ttffMs === null) return;
    }
    reading = true;
    try {
      const r = await read();
      if (r) send(r);
    } catch (e) {
      console.warn('sluice stats:', e);
    } finally {
      reading = false;
    }
  }

  function send(r) {
    const ttff = ttffPending && state.ttffMs !== null ? state.ttffMs : null;
    const message = buildSummary(r, previous, ttff);
    previous = r.tracks;
    // Nothing to say yet (no media, no connection), or no socket to say it on: wait for the next turn.
    if (message.tracks.length === 0 && !message.candidate && ttff === null) return;
    if (!client.ws || client.ws.readyState !== WebSocket.OPEN) return;
    if (typeof client.sendStats === 'function') client.sendStats(message);
    else client.ws.send(JSON.stringify(message));
    if (ttff !== null) ttffPending = false;
    state.sent += 1;
    state.last = message;
  }

  /** Time to first frame: read the stats often while a video is received and none is decoded yet. */
  async function pollFirstFrame() {
    if (state.stopped || state.ttffMs !== null) return;
    const pc = client.pc;
    const receiving = pc?.getTransceivers?.().some((t) => t.receiver?.track?.kind === 'video' && (t.currentDirection === 'recvonly' || t.currentDirection === 'sendrecv'));
    if (receiving && !reading) {
      try {
        const report = await pc.getStats();
        let decoded = false;
        report.forEach((s) => { if (s.type === 'inbound-rtp' && (s.kind || s.mediaType) === 'video' && s.framesDecoded > 0) decoded = true; });
        if (decoded && !state.stopped) {
          state.ttffMs = Math.max(0, Math.round(performance.now() - joinAt()));
          // At once, then every interval from now: the summaries stay STATS_INTERVAL_MS apart after this one.
          clearInterval(timer);
          timer = setInterval(tick, STATS_INTERVAL_MS);
          await tick();
          return;
        }
      } catch {
        // The connection went meanwhile; the next poll sees the new one.
      }
    }
    if (!state.stopped) poller = setTimeout(pollFirstFrame, FIRST_FRAME_POLL_MS);
  }

  return state;
}
