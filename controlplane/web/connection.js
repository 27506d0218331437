// connection.js: the in-meeting "Connection details" overlay. While open it reads `client.pc.getStats()` every
// 2 seconds and shows, for what this browser sends and for each remote participant it receives: bitrate, packet
// loss, jitter, round-trip time, resolution and frame rate; and the selected candidate pair (host, srflx, prflx or
// relay). Names are user input: every text goes in with textContent.
//
//   import { setupConnectionDetails } from '/assets/connection.js';
//   app.connectionDetails = setupConnectionDetails(client, app);
//
// It uses `#connection-toggle` and `#connection-details` from meeting.html, and makes them if they are missing.
import { readReport, bitrateKbps } from '/assets/stats.js';

const REFRESH_MS = 2000;
const COLUMNS = ['Media', 'Bitrate', 'Loss', 'Jitter', 'RTT', 'Resolution', 'Frame rate'];
const SOURCE_NAMES = { microphone: 'Microphone', camera: 'Camera', screen: 'Screen' };
const CANDIDATE_NAMES = { host: 'direct (host)', srflx: 'direct through NAT (srflx)', prflx: 'direct through NAT (prflx)', relay: 'relayed through TURN (relay)' };

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const dash = '–';
const fmt = {
  kbps: (v) => (isNum(v) ? (v >= 1000 ? `${(v / 1000).toFixed(2)} Mbit/s` : `${Math.round(v)} kbit/s`) : dash),
  percent: (v) => (isNum(v) ? `${v < 10 ? v.toFixed(1) : Math.round(v)} %` : dash),
  ms: (v) => (isNum(v) ? `${v < 10 ? v.toFixed(1) : Math.round(v)} ms` : dash),
  size: (w, h) => (isNum(w) && isNum(h) && w > 0 ? `${w}×${h}` : dash),
  fps: (v) => (isNum(v) ? `${Math.round(v)} fps` : dash),
};

function el(tag, className = null, text = null) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== null && text !== undefined) e.textContent = text;
  return e;
}

/**
 * @param {import('./sluice-client.js').SluiceClient} client
 * @param {{participants?: Map<string, {name: string}>, selfId?: string}} app  the page's state (names)
 * @returns {{open: () => void, close: () => void, refresh: () => Promise<void>, readonly isOpen: boolean, last: object|null}}
 */
export function setupConnectionDetails(client, app = {}) {
  const { button, panel, body, close: closeButton } = elements();
  let timer = null;
  let previous = new Map();
  let previousPc = null;
  let busy = false;
  const api = { open, close, refresh, get isOpen() { return !panel.hidden; }, last: null };

  button.addEventListener('click', () => (panel.hidden ? open() : close()));
  closeButton.addEventListener('click', () => { close(); button.focus(); });
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { close(); button.focus(); } });
  const stop = () => { close(); button.disabled = true; };
  client.addEventListener('closed', stop);
  client.addEventListener('meeting-ended', stop);

  function open() {
    panel.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    refresh();
    clearInterval(timer);
    timer = setInterval(refresh, REFRESH_MS);
  }

  function close() {
    panel.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    clearInterval(timer);
    timer = null;
  }

  async function refresh() {
    if (busy || panel.hidden) return;
    busy = true;
    try {
      const pc = client.pc;
      if (!pc) return render(null, 'Not connected.');
      const [report, transport] = await Promise.all([pc.getStats(), client.transport ? client.transport() : null]);
      if (client.pc !== pc || panel.hidden) return;
      if (pc !== previousPc) { previous = new Map(); previousPc = pc; }
      const read = readReport(report, pc);
      render({ ...read, state: pc.connectionState, previous, transport });
      previous = read.tracks;
    } catch (e) {
      render(null, `Could not read the connection's statistics: ${e.message || e}`);
    } finally {
      busy = false;
    }
  }

  /** Names from the page first (it marks "(you)", follows room moves), then the client's list. */
  const nameOf = (pid) => app.participants?.get?.(pid)?.name || client.participants.get(pid)?.name || pid;

  function render(read, problem = null) {
    if (!read) {
      api.last = null;
      body.replaceChildren(el('p', 'connection-empty', problem));
      return;
    }
    const rows = [...read.tracks.values()].map((e) => row(e, read.previous.get(e.key), read.candidate));
    api.last = { candidate: read.candidate, state: read.state, tracks: rows.map((r) => r.data), transport: read.transport || null };
    const parts = [pathLine(read.candidate, read.state, read.transport)];

    const own = rows.filter((r) => r.data.direction === 'outbound');
    const mine = el('section', 'connection-peer');
    mine.dataset.participant = client.participantId || app.selfId || '';
    mine.dataset.direction = 'outbound';
    mine.append(el('h3', null, 'You (sending)'), own.length ? table(own) : el('p', 'connection-empty', 'Nothing sent.'));
    parts.push(mine);

    // Every remote participant, with what is received from them (recorders publish nothing and are left out).
    const remote = new Map();
    for (const p of client.participants.values()) if (p.role !== 'recorder' && p.participant_id !== client.participantId) remote.set(p.participant_id, []);
    for (const r of rows) {
      if (r.data.direction !== 'inbound') continue;
      const pid = r.section?.participant_id || 'unknown';
      if (!remote.has(pid)) remote.set(pid, []);
      remote.get(pid).push(r);
    }
    for (const [pid, list] of remote) {
      const section = el('section', 'connection-peer');
      section.dataset.participant = pid;
      section.dataset.direction = 'inbound';
      section.append(el('h3', null, pid === 'unknown' ? 'Other media' : nameOf(pid)), list.length ? table(list) : el('p', 'connection-empty', 'Nothing received.'));
      parts.push(section);
    }
    if (remote.size === 0) parts.push(el('p', 'connection-empty', 'Nobody else is here.'));
    body.replaceChildren(...parts);
  }

  function row(e, prev, candidate) {
    const section = client.sections.get(e.mid);
    const kbps = bitrateKbps(e, prev);
    let loss = null;
    if (e.direction === 'inbound' && isNum(e.lost)) {
      // Over the last interval when there is one, else since the start.
      const lost = prev && isNum(prev.lost) ? e.lost - prev.lost : e.lost;
      const got = prev ? e.packets - prev.packets : e.packets;
      loss = lost >= 0 && got >= 0 && lost + got > 0 ? (100 * lost) / (lost + got) : null;
    } else if (e.direction === 'outbound') {
      loss = isNum(e.fraction_lost) ? e.fraction_lost * 100 : isNum(e.lost) && e.packets > 0 ? (100 * e.lost) / (e.packets + e.lost) : null;
    }
    // Received media crosses the same path to the server as what we send: its RTT is the candidate pair's.
    const rtt = e.direction === 'outbound' ? (isNum(e.rtt_ms) ? e.rtt_ms : candidate?.rttMs) : candidate?.rttMs;
    const source = SOURCE_NAMES[section?.source] || (e.kind === 'video' ? 'Video' : 'Audio');
    const label = `${source}${e.direction === 'outbound' && e.layers > 1 ? ` (${e.layers} layers)` : ''}`;
    const data = {
      mid: e.mid, direction: e.direction, kind: e.kind, source: section?.source || null, participantId: section?.participant_id || null,
      bitrateKbps: kbps, lossPercent: loss, jitterMs: isNum(e.jitter_ms) ? e.jitter_ms : null, rttMs: isNum(rtt) ? rtt : null,
      width: e.width ?? null, height: e.height ?? null, fps: e.fps ?? null, limitation: e.limitation || null,
    };
    const cells = [
      label, fmt.kbps(kbps), fmt.percent(loss), fmt.ms(data.jitterMs), fmt.ms(data.rttMs),
      e.kind === 'video' ? fmt.size(e.width, e.height) : dash,
      e.kind === 'video' ? fmt.fps(e.fps) : dash,
    ];
    let note = null;
    if (e.kind === 'video' && e.limitation && e.limitation !== 'none') note = `limited by ${e.limitation}`;
    if (e.kind === 'video' && e.direction === 'inbound' && e.freezes > 0) note = `${e.freezes} freeze${e.freezes > 1 ? 's' : ''}`;
    return { data, section, cells, note };
  }

  function table(rows) {
    const t = el('table', 'connection-table');
    const head = el('tr');
    for (const c of COLUMNS) { const th = el('th', null, c); th.scope = 'col'; head.append(th); }
    const thead = el('thead');
    thead.append(head);
    const tbody = el('tbody');
    for (const r of rows) {
      const tr = el('tr');
      tr.dataset.mid = r.data.mid;
      tr.dataset.kind = r.data.kind;
      const [first, ...rest] = r.cells;
      const th = el('th', null, first);
      th.scope = 'row';
      if (r.note) th.append(el('span', 'connection-note', ` · ${r.note}`));
      tr.append(th, ...rest.map((c) => el('td', null, c)));
      tbody.append(tr);
    }
    t.append(thead, tbody);
    return t;
  }

  function pathLine(candidate, state, transport) {
    const p = el('p', 'connection-path');
    p.dataset.state = state || '';
    if (candidate?.type) p.dataset.candidateType = candidate.type;
    const parts = [`Connection: ${state || 'unknown'}`];
    if (candidate?.type) {
      parts.push(`${CANDIDATE_NAMES[candidate.type] || candidate.type}${candidate.protocol ? ` over ${candidate.protocol.toUpperCase()}` : ''}`);
      if (candidate.remoteType) parts.push(`server candidate ${candidate.remoteType}`);
    } else {
      parts.push('no candidate pair selected yet');
    }
    if (isNum(candidate?.rttMs)) parts.push(`round trip ${fmt.ms(candidate.rttMs)}`);
    if (isNum(candidate?.outgoingKbps)) parts.push(`send estimate ${fmt.kbps(candidate.outgoingKbps)}`);
    // The server's estimate of what reaches us; "limited" once our link has shown it is the bottleneck.
    if (isNum(transport?.estimate_bps)) parts.push(`receive estimate ${fmt.kbps(transport.estimate_bps / 1000)}${transport.limited ? ' (limited)' : ''}`);
    p.textContent = parts.join(' · ');
    return p;
  }

  return api;
}

/** The toggle and the panel from meeting.html, or new ones (the toggle before Leave, the panel in the meeting). */
function elements() {
  let button = document.getElementById('connection-toggle');
  if (!button) {
    button = el('button', 'secondary', 'Connection');
    button.id = 'connection-toggle';
    button.type = 'button';
    const leave = document.getElementById('leave');
    if (leave) leave.before(button);
    else (document.querySelector('#meeting footer') || document.body).append(button);
  }
  let panel = document.getElementById('connection-details');
  if (!panel) {
    panel = el('aside');
    panel.id = 'connection-details';
    panel.hidden = true;
    panel.setAttribute('aria-labelledby', 'connection-heading');
    const head = el('header', 'connection-head');
    const h = el('h2', null, 'Connection details');
    h.id = 'connection-heading';
    const x = el('button', 'secondary', '✕');
    x.id = 'connection-close';
    x.type = 'button';
    x.setAttribute('aria-label', 'Close connection details');
    head.append(h, x);
    const body = el('div');
    body.id = 'connection-body';
    panel.append(head, body);
    (document.getElementById('meeting') || document.body).append(panel);
  }
  button.setAttribute('aria-controls', 'connection-details');
  button.setAttribute('aria-expanded', String(!panel.hidden));
  return { button, panel, body: document.getElementById('connection-body'), close: document.getElementById('connection-close') };
}
