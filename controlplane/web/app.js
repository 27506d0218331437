// The meeting page: lobby (name, device choice, preview), then the meeting view (grid, spotlight for a shared
// screen, controls, people, connection quality). All signaling and WebRTC is in sluice-client.js.
import { SluiceClient } from '/assets/sluice-client.js';
import { setupModeration } from '/assets/moderation.js';
import { setupChat } from '/assets/chat.js';
import { setupBreakouts } from '/assets/breakouts.js';
import { setupConnectionDetails } from '/assets/connection.js';
import { startStatsReports } from '/assets/stats.js';
import { setupSettings } from '/assets/settings.js';
import { setupActiveSpeaker } from '/assets/speakers.js';
import { setupLayout } from '/assets/layout.js';
import { setupTileQuality } from '/assets/tilequality.js';
import { levelMeter } from '/assets/lobby.js';
import { closedWords, confirmAction, handOver } from '/assets/dialogs.js';

const $ = (id) => document.getElementById(id);
const meetingId = decodeURIComponent(location.pathname.split('/m/')[1] || '').split('/')[0];
const params = new URLSearchParams(location.search);
const tokenKey = `sluice.token.${meetingId}`;
// An invitation from an application carries its token in the fragment (`#token=...`), which the browser never
// sends to a server: keep it for this tab and take it out of the address bar.
const invited = new URLSearchParams(location.hash.slice(1)).get('token');
if (invited) {
  sessionStorage.setItem(tokenKey, invited);
  history.replaceState(null, '', location.pathname + location.search);
}

/** State the tests read through window.sluiceApp (`room`, `roomName`: the breakout room one is in, docs/breakouts.md). */
const app = { lobbyOff: { microphone: false, camera: false }, recorders: new Set(), client: null, joinStartedAt: null, firstFrameMs: {}, trackToFrameMs: {}, participants: new Map(), selfId: null, errors: [], room: 'main', roomName: 'Main room' };
window.sluiceApp = app;

/** Tile heights in device pixels up to which the lowest and the middle simulcast layer are enough. */
const LAYER_HEIGHT_LOW = 200;
const LAYER_HEIGHT_MIDDLE = 400;

let localStream = null;
/** The lobby's microphone level meter, while it runs. */
let meter = null;
const tiles = new Map(); // `${participantId}:${source}` -> tile element
const audios = new Map(); // track id -> <audio>

const stage = setupLayout({
  stage: $('stage'), spotlight: $('spotlight'), grid: $('grid'), pager: $('pager'), pagerStatus: $('page-status'),
  prev: $('page-prev'), next: $('page-next'),
});
app.layout = stage.state;

main().catch((e) => lobbyProblem(String(e.message || e)));

async function main() {
  // Where only invited people may read a meeting, the invitation's token says who is asking.
  const kept = sessionStorage.getItem(tokenKey);
  const response = await fetch(`/meetings/${encodeURIComponent(meetingId)}`, kept ? { headers: { authorization: `Bearer ${kept}` } } : {});
  const meeting = await response.json();
  if (response.status === 404) {
    return ended('There is no meeting at this link. Check that it was copied whole, or start a meeting of your own.', { title: 'Meeting not found' });
  }
  if (!response.ok) return lobbyProblem(meeting.error?.message || 'This meeting cannot be opened.', true);
  if (meeting.ended_at) return ended('This meeting is over.', { title: 'The meeting has ended' });
  const title = meeting.settings?.title || `Meeting ${meeting.id}`;
  document.title = `${title} · Sluice`;
  $('title').textContent = title;
  $('lobby-title').textContent = `Join ${title}`;
  const name = params.get('name');
  if (name) {
    // A deep link goes straight in, asking for devices as usual.
    localStream = await getMedia({});
    return enter(name.trim());
  }
  await lobby();
}

// `?audio=original`: the microphone as it is, without the browser's echo cancellation, noise suppression and gain
// control ("original sound", for music, or a room with its own echo cancelling).
const ORIGINAL_SOUND = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };

// `?video=720p`: the camera in HD (three simulcast layers instead of two; more upload and CPU). The QoE harness
// (`sluice bench qoe`) publishes this way.
const HD = params.get('video') === '720p';

async function getMedia({ cameraId, micId }) {
  const size = HD ? { width: { ideal: 1280 }, height: { ideal: 720 } } : { width: { ideal: 640 }, height: { ideal: 360 } };
  const video = { ...size, ...(cameraId ? { deviceId: { exact: cameraId } } : {}) };
  const processing = params.get('audio') === 'original' ? ORIGINAL_SOUND : {};
  const audio = { ...processing, ...(micId ? { deviceId: { exact: micId } } : {}) };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video });
  } catch {
    // No camera, or refused: join with what is allowed.
    try { return await navigator.mediaDevices.getUserMedia({ audio }); } catch { return new MediaStream(); }
  }
}

async function lobby() {
  $('lobby').hidden = false;
  const form = $('join');
  form.elements.name.value = localStorage.getItem('sluice.name') || '';
  // The form works from the moment it shows (else an early Join submits it as a plain GET); joining waits for
  // the devices.
  const devices = (async () => {
    localStream = await getMedia({});
    previewLobby();
    await fillDevices();
  })();
  for (const [id, source] of [['lobby-mic', 'microphone'], ['lobby-cam', 'camera']]) {
    $(id).onclick = () => {
      app.lobbyOff[source] = !app.lobbyOff[source];
      $(id).setAttribute('aria-pressed', String(app.lobbyOff[source]));
      previewLobby();
    };
  }
  form.onsubmit = async (e) => {
    e.preventDefault();
    const name = form.elements.name.value.trim();
    localStorage.setItem('sluice.name', name);
    await devices;
    enter(name);
  };
  await devices;
  const reselect = async () => {
    localStream.getTracks().forEach((t) => t.stop());
    localStream = await getMedia({ cameraId: $('camera-select').value, micId: $('mic-select').value });
    previewLobby();
  };
  $('camera-select').onchange = reselect;
  $('mic-select').onchange = reselect;
}

/** The lobby's preview and microphone level, with the tracks the person turned off in the lobby disabled. */
function previewLobby() {
  for (const t of localStream.getAudioTracks()) t.enabled = !app.lobbyOff.microphone;
  for (const t of localStream.getVideoTracks()) t.enabled = !app.lobbyOff.camera;
  $('preview').srcObject = localStream;
  meter?.stop();
  meter = levelMeter(localStream, $('mic-level'), (level) => { app.lobbyLevelMax = Math.max(app.lobbyLevelMax || 0, level); });
}


async function fillDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [kind, select] of [['videoinput', $('camera-select')], ['audioinput', $('mic-select')]]) {
    select.replaceChildren(...devices.filter((d) => d.kind === kind).map((d, i) => new Option(d.label || `${kind} ${i + 1}`, d.deviceId)));
  }
}

async function token(name) {
  const kept = sessionStorage.getItem(tokenKey);
  if (kept) return kept;
  const response = await fetch(`/meetings/${encodeURIComponent(meetingId)}/join`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }),
  });
  const reply = await response.json();
  if (!response.ok) throw new Error(reply.error?.message || `the server said ${response.status}`);
  sessionStorage.setItem(tokenKey, reply.participant_token);
  return reply.participant_token;
}

async function enter(name) {
  // A refused token (joining by link turned off, an ended meeting) is said in the lobby, before the meeting shows.
  const participantToken = await token(name);
  meter?.stop();
  $('lobby').hidden = true;
  $('meeting').hidden = false;
  app.joinStartedAt = performance.now();
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  // `?codec=VP9` (or H264) publishes video in that codec where the browser has it; VP8 otherwise.
  const videoCodec = params.get('codec')?.toUpperCase() || null;
  // `?ice=relay` sends media only through the TURN relay (what a browser behind a strict firewall does).
  const iceTransportPolicy = params.get('ice') === 'relay' ? 'relay' : 'all';
  const client = new SluiceClient({
    signalingUrl: `${scheme}://${location.host}/signaling`, meetingId, token: participantToken, videoCodec,
    iceTransportPolicy,
  });
  app.client = client;
  wire(client);
  app.moderation = setupModeration(client, {
    app, notice, ended, renderPeople, updateLabel,
    tileOf: (id) => tiles.get(`${id}:camera`),
    setToggle: (which, pressed) => $(which).setAttribute('aria-pressed', String(pressed)),
  });
  setupChat(client);
  setupBreakouts(client, { app, notice });
  const microphone = localStream.getAudioTracks()[0] || null;
  const camera = localStream.getVideoTracks()[0] || null;
  try {
    await client.join({ microphone, camera });
  } catch (e) {
    if (e.code === 4001) sessionStorage.removeItem(tokenKey);
    return closedScreen(e.code, e.message);
  }
  controls(client);
  setupSettings(client, {
    app, announce,
    localStream: () => localStream,
    showSelf: (stream) => {
      const video = tiles.get(`${app.selfId}:camera`)?.querySelector('video');
      if (video) video.srcObject = stream;
    },
  });
  setupActiveSpeaker(client, { app, tileOf: (id) => tiles.get(`${id}:camera`) });
  setInterval(() => showQuality(client), 2000);
  app.tileQuality = setupTileQuality(client, {
    tileOfTrack: (id) => [...tiles.values()].find((t) => t.querySelector('video').srcObject?.getVideoTracks()[0]?.id === id),
    tileOfServerTrack: (id) => [...tiles.values()].find((t) => t.dataset.trackId === id),
  });
  // The quality summary for analytics every 10 s (docs/analytics.md), and the connection details overlay.
  app.stats = startStatsReports(client);
  app.connectionDetails = setupConnectionDetails(client, app);
  window.addEventListener('pagehide', () => client.leave());
}

function wire(client) {
  client.addEventListener('waiting', (e) => {
    $('meeting').hidden = true;
    $('waiting').hidden = false;
    $('waiting-title').textContent = e.detail.title || `meeting ${e.detail.meeting_id}`;
    $('waiting-leave').onclick = () => { client.leave(); ended('You left the waiting room.', { title: 'You left', rejoin: true }); };
  });
  client.addEventListener('waiting-list', (e) => showWaiting(client, e.detail.waiting));
  client.addEventListener('welcome', (e) => {
    const m = e.detail;
    $('waiting').hidden = true;
    $('meeting').hidden = false;
    app.selfId = m.participant_id;
    for (const key of [...tiles.keys()]) removeTile(key);
    audios.forEach((a) => a.remove());
    audios.clear();
    app.participants = new Map();
    addParticipant({ participant_id: m.participant_id, name: `${m.name} (you)`, role: m.role, tracks: [] }, true);
    m.participants.forEach((p) => addParticipant(p));
    $('end').hidden = !m.grants.host;
    $('record').hidden = !m.grants.host;
    app.recorders.clear();
    showRecording();
    notice(null);
    // What was turned off in the lobby stays off (once: later welcomes are reconnections).
    for (const [source, button] of [['microphone', 'mic'], ['camera', 'cam']]) {
      if (app.lobbyOff[source] && !client.muted[source]) {
        client.setMuted(source, true);
        $(button).setAttribute('aria-pressed', 'true');
        updateLabel(app.selfId);
      }
      app.lobbyOff[source] = false;
    }
  });
  client.addEventListener('participant-joined', (e) => {
    addParticipant(e.detail);
    if (e.detail.role !== 'recorder') announce(`${e.detail.name} joined`);
  });
  // Also with reason "moved": they went to another breakout room.
  client.addEventListener('participant-left', (e) => {
    const name = app.participants.get(e.detail.participant_id)?.name;
    removeParticipant(e.detail.participant_id);
    // A move to another breakout room is said by the breakout banner.
    if (name && e.detail.reason !== 'moved') announce(`${name} left`);
  });
  // Moved to another room: its people replace the others (their media follows in the next offer).
  client.addEventListener('room-changed', (e) => {
    const next = new Map((e.detail.participants || []).filter((p) => p.participant_id !== app.selfId).map((p) => [p.participant_id, p]));
    for (const id of [...app.participants.keys(), ...app.recorders]) if (id !== app.selfId && !next.has(id)) removeParticipant(id);
    for (const p of next.values()) addParticipant(p);
    renderPeople();
  });
  client.addEventListener('track', (e) => attachTrack(e.detail));
  client.addEventListener('track-added', (e) => {
    app.participants.get(e.detail.participant_id)?.tracks.push(e.detail.track);
    updateLabel(e.detail.participant_id);
  });
  client.addEventListener('track-removed', (e) => {
    const audio = audios.get(e.detail.track_id);
    if (audio) { audio.remove(); audios.delete(e.detail.track_id); }
    const p = app.participants.get(e.detail.participant_id);
    if (p) p.tracks = p.tracks.filter((t) => t.track_id !== e.detail.track_id);
    const key = [...tiles.keys()].find((k) => tiles.get(k).dataset.trackId === e.detail.track_id);
    if (key && key.endsWith(':screen')) removeTile(key);
  });
  client.addEventListener('track-muted', (e) => {
    const p = app.participants.get(e.detail.participant_id);
    const track = p?.tracks.find((t) => t.track_id === e.detail.track_id);
    if (track) track.muted = e.detail.muted;
    updateLabel(e.detail.participant_id);
  });
  client.addEventListener('reconnecting', () => notice('Connection lost. Reconnecting…'));
  client.addEventListener('reconnected', () => notice(null));
  client.addEventListener('meeting-ended', (e) => ended(e.detail.reason || 'A host ended the meeting for everyone.', { title: 'The meeting has ended' }));
  client.addEventListener('closed', (e) => { if (e.detail.code !== 1000) closedScreen(e.detail.code, e.detail.reason); });
  client.addEventListener('error', (e) => {
    app.errors.push(`${e.detail.code}: ${e.detail.message}`);
    console.warn('sluice:', e.detail.code, e.detail.message);
  });
}

/** Hosts: who waits to be let in, each with Admit and Deny (names are text, never HTML). */
function showWaiting(client, waiting) {
  const before = app.waiting?.length || 0;
  app.waiting = waiting;
  $('waiting-room').hidden = waiting.length === 0;
  $('waiting-count').textContent = waiting.length ? `(${waiting.length})` : '';
  $('waiting-list').replaceChildren(...waiting.map((w) => {
    const li = document.createElement('li');
    li.dataset.waiting = w.participant_id;
    const name = document.createElement('span');
    name.textContent = w.name;
    const admit = document.createElement('button');
    admit.type = 'button';
    admit.textContent = 'Admit';
    admit.setAttribute('aria-label', `Admit ${w.name}`);
    admit.onclick = () => client.admit(w.participant_id);
    const deny = document.createElement('button');
    deny.type = 'button';
    deny.className = 'secondary';
    deny.textContent = 'Deny';
    deny.setAttribute('aria-label', `Deny ${w.name}`);
    deny.onclick = () => client.deny(w.participant_id);
    li.append(name, admit, deny);
    return li;
  }));
  $('admit-all').onclick = () => client.admitAll();
  if (waiting.length > before) {
    const last = waiting[waiting.length - 1];
    notice(waiting.length === 1 ? `${last.name} is waiting to join` : `${waiting.length} people are waiting to join`);
    $('people').hidden = false;
  } else if (waiting.length === 0) {
    notice(null);
  }
}

/** The recorder joins as a participant with the role `recorder`: everyone sees that the meeting is recorded. */
let wasRecording = false;
const RECORDING_NOTICE = 'This meeting is being recorded: video, audio, a transcript and the chat. Staying means you agree.';

function showRecording() {
  const on = app.recorders.size > 0;
  if (on && !wasRecording) {
    notice(RECORDING_NOTICE, { label: 'Leave', run: () => $('leave').click() });
    setTimeout(() => { if ($('notice').textContent.startsWith(RECORDING_NOTICE)) notice(null); }, 15000);
  }
  wasRecording = on;
  $('recording-badge').hidden = !on;
  $('record').setAttribute('aria-pressed', String(on));
}

function addParticipant(p, self = false) {
  if (p.role === 'recorder') {
    app.recorders.add(p.participant_id);
    return showRecording();
  }
  app.participants.set(p.participant_id, { ...p, tracks: [...(p.tracks || [])] });
  const tile = ensureTile(p.participant_id, 'camera');
  if (self) {
    tile.classList.add('self');
    tile.querySelector('video').srcObject = localStream;
    tile.querySelector('video').muted = true;
    layout();
  }
  updateLabel(p.participant_id);
  renderPeople();
}

/** Someone left (or left this room): their tiles and sound go. */
function removeParticipant(participantId) {
  if (app.recorders.delete(participantId)) return showRecording();
  for (const key of [...tiles.keys()]) if (key.startsWith(`${participantId}:`)) removeTile(key);
  for (const [trackId, audio] of [...audios]) {
    if (audio.dataset.participant === participantId) { audio.remove(); audios.delete(trackId); }
  }
  app.participants.delete(participantId);
  renderPeople();
}

function ensureTile(participantId, source) {
  const key = `${participantId}:${source}`;
  let tile = tiles.get(key);
  if (tile) return tile;
  tile = document.createElement('div');
  tile.className = `tile ${source}`;
  tile.dataset.participant = participantId;
  tile.dataset.source = source;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // audio plays through its own element
  const label = document.createElement('div');
  label.className = 'label';
  tile.append(video, label);
  stage.decorate(tile);
  tiles.set(key, tile);
  (source === 'screen' ? $('spotlight') : $('grid')).append(tile);
  layout();
  return tile;
}

function removeTile(key) {
  tiles.get(key)?.remove();
  tiles.delete(key);
  layout();
}

function layout() {
  stage.layout();
}

function attachTrack({ participantId, source, trackId, track }) {
  if (track.kind === 'audio') {
    const audio = document.createElement('audio');
    audio.autoplay = true;
    audio.srcObject = new MediaStream([track]);
    audio.dataset.participant = participantId;
    if (app.speakerId) audio.setSinkId?.(app.speakerId).catch(() => {});
    document.body.append(audio);
    audios.set(trackId, audio);
    return;
  }
  const tile = ensureTile(participantId, source);
  tile.dataset.trackId = trackId;
  const video = tile.querySelector('video');
  video.srcObject = new MediaStream([track]);
  followTileSize(video, participantId, trackId);
  const arrived = performance.now();
  if (video.requestVideoFrameCallback) {
    video.requestVideoFrameCallback(() => {
      app.firstFrameMs[trackId] = Math.round(performance.now() - app.joinStartedAt);
      app.trackToFrameMs[trackId] = Math.round(performance.now() - arrived);
    });
  }
  updateLabel(participantId);
}

/**
 * Simulcast: receive the layer the tile is big enough for. Layers halve the resolution each step down, so a
 * tile under about a quarter of the camera's height takes the lowest one, under half the middle one.
 */
function followTileSize(video, participantId, trackId) {
  const layers = app.client.participants.get(participantId)?.tracks.find((t) => t.track_id === trackId)?.layers ?? 1;
  if (layers < 2 || !window.ResizeObserver) return;
  const observer = new ResizeObserver(() => {
    if (!video.isConnected) return observer.disconnect();
    const pixels = video.clientHeight * (window.devicePixelRatio || 1);
    const top = layers - 1;
    const layer = pixels <= LAYER_HEIGHT_LOW ? 0 : pixels <= LAYER_HEIGHT_MIDDLE ? Math.min(1, top) : top;
    app.client.setLayer(trackId, layer);
  });
  observer.observe(video);
}

function updateLabel(participantId) {
  const p = app.participants.get(participantId);
  if (!p) return;
  // One's own state is what this page set (the server tells only the others).
  const self = participantId === app.selfId && app.client;
  const micMuted = self ? app.client.muted.microphone || !localStream?.getAudioTracks().length : p.tracks.some((t) => t.source === 'microphone' && t.muted);
  const camOff = self ? app.client.muted.camera : p.tracks.some((t) => t.source === 'camera' && t.muted);
  for (const [key, tile] of tiles) {
    if (!key.startsWith(`${participantId}:`)) continue;
    const label = tile.querySelector('.label');
    // The name is cut short on a narrow tile; the marks after it (hand, muted, weak connection) always show.
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = tile.dataset.source === 'screen' ? `${p.name}'s screen` : p.name;
    label.replaceChildren(name);
    if (tile.dataset.source === 'camera' && app.hands?.includes(participantId)) {
      const hand = document.createElement('span');
      hand.className = 'hand';
      hand.textContent = ' ✋';
      hand.setAttribute('aria-label', 'hand raised');
      label.append(hand);
    }
    if (micMuted && tile.dataset.source === 'camera') {
      const badge = document.createElement('span');
      badge.className = 'muted';
      badge.textContent = 'muted';
      label.append(badge);
    }
    if (tile.classList.contains('weak')) {
      const weak = document.createElement('span');
      weak.className = 'weak-badge';
      weak.textContent = 'weak connection';
      label.append(weak);
    }
    tile.dataset.initial = (p.name || '?').slice(0, 1).toUpperCase();
    if (tile.dataset.source === 'camera') tile.classList.toggle('camera-off', camOff);
  }
}

function renderPeople() {
  const list = $('people-list');
  list.replaceChildren(...[...app.participants.values()].map((p) => {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.textContent = p.name;
    li.append(name);
    li.dataset.participant = p.participant_id;
    if (p.role === 'host' || p.role === 'co_host') {
      const role = document.createElement('span');
      role.className = 'role';
      role.textContent = p.role === 'host' ? 'host' : 'co-host';
      li.append(role);
    }
    const order = app.hands?.indexOf(p.participant_id) ?? -1;
    if (order >= 0) {
      const hand = document.createElement('span');
      hand.className = 'hand';
      hand.textContent = `✋ ${order + 1}`;
      li.append(hand);
    }
    const actions = app.moderation?.actionsFor(p);
    if (actions) li.append(actions);
    return li;
  }));
  $('people-count').textContent = String(app.participants.size);
}

function controls(client) {
  // Labels stay the same ("Mute" pressed is muted): the state is aria-pressed, and the pressed look.
  const toggle = (button, pressed) => button.setAttribute('aria-pressed', String(pressed));
  $('mic').onclick = () => {
    const muted = !client.muted.microphone;
    client.setMuted('microphone', muted);
    toggle($('mic'), muted);
    updateLabel(app.selfId);
  };
  $('cam').onclick = () => {
    const off = !client.muted.camera;
    client.setMuted('camera', off);
    toggle($('cam'), off);
    updateLabel(app.selfId);
  };
  $('share').onclick = async () => {
    if (client.local.screen) {
      client.stopScreenshare();
      removeTile(`${app.selfId}:screen`);
      return toggle($('share'), false);
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true });
    } catch {
      return;
    }
    const track = stream.getVideoTracks()[0];
    client.startScreenshare(track);
    const tile = ensureTile(app.selfId, 'screen');
    tile.querySelector('video').srcObject = stream;
    tile.querySelector('.label').textContent = 'Your screen';
    toggle($('share'), true);
    track.addEventListener('ended', () => { removeTile(`${app.selfId}:screen`); toggle($('share'), false); });
  };
  $('people-toggle').onclick = () => { $('people').hidden = !$('people').hidden; };
  $('leave').onclick = async () => {
    if (!(await handOver(client, app))) return;
    client.leave();
    ended('You can join again with the same link.', { title: 'You left the meeting', rejoin: true });
  };
  $('end').onclick = async () => {
    const sure = await confirmAction('End the meeting for everyone?', 'Everyone is disconnected, and the link stops working.', 'End for everyone', true);
    if (sure) client.endMeeting();
  };
  // The list opens in a new tab, which has none of this tab's storage: the token goes along in the fragment.
  $('recordings-link').href = `/m/${encodeURIComponent(meetingId)}/recordings#token=${encodeURIComponent(sessionStorage.getItem(tokenKey) || '')}`;
  $('record').onclick = async () => {
    const action = app.recorders.size > 0 ? 'stop' : 'start';
    if (action === 'start' && !(await confirmAction('Record this meeting?', 'Everyone in the meeting is told that it is being recorded: video, audio, a transcript and the chat.', 'Start recording'))) return;
    const response = await fetch(`/meetings/${encodeURIComponent(meetingId)}/recording/${action}`, {
      method: 'POST', headers: { authorization: `Bearer ${sessionStorage.getItem(tokenKey)}` },
    });
    if (!response.ok) {
      const reply = await response.json().catch(() => ({}));
      notice(`Recording: ${reply.error?.message || response.status}`);
      setTimeout(() => notice(null), 5000);
    }
  };
  $('copy-link').onclick = async () => {
    const link = `${location.origin}/m/${meetingId}`;
    try {
      await navigator.clipboard.writeText(link);
      announce('Link copied');
      $('copy-link').textContent = 'Link copied';
    } catch {
      // No clipboard here (an insecure origin, a refused permission): show the link to copy by hand.
      announce(`Copy this link: ${link}`, 10000);
    }
    setTimeout(() => { $('copy-link').textContent = 'Copy link'; }, 2000);
  };
  // Phones and some browsers cannot share a screen: no button that cannot work.
  $('share').hidden = !navigator.mediaDevices?.getDisplayMedia;
}

async function showQuality(client) {
  const q = await client.quality();
  const el = $('quality');
  el.className = `quality ${q.level}`;
  el.textContent = q.level === 'down' ? 'connecting' : `${q.level}${q.rttMs !== null ? ` · ${Math.round(q.rttMs)} ms` : ''}`;
}

/** A short notice (someone joined or left, a link copied), read out by screen readers, gone after `ms`. */
function announce(text, ms = 4000) {
  const item = document.createElement('div');
  item.textContent = text;
  $('toasts').append(item);
  while ($('toasts').childElementCount > 3) $('toasts').firstElementChild.remove();
  setTimeout(() => item.remove(), ms);
}

/** A status line; `action` ({label, run}) adds a button to it. */
function notice(text, action = null) {
  $('notice').hidden = !text;
  $('notice').textContent = text || '';
  if (text && action) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = action.label;
    b.onclick = action.run;
    $('notice').append(b);
  }
}

/**
 * The one screen after a meeting, or instead of it: `title` says what happened, `reason` what to do, and the
 * actions are the ones that make sense (rejoin only where joining again can work).
 */
function ended(reason, { title = 'You are not in the meeting', rejoin = false } = {}) {
  localStream?.getTracks().forEach((t) => t.stop());
  for (const screen of ['lobby', 'meeting', 'waiting']) $(screen).hidden = true;
  for (const panel of document.querySelectorAll('dialog[open]')) panel.close();
  $('ended').hidden = false;
  $('ended-title').textContent = title;
  $('ended-reason').textContent = reason;
  $('rejoin').hidden = !rejoin;
  app.screen = { title, rejoin };
  (rejoin ? $('rejoin') : $('new-meeting')).focus();
}

function closedScreen(code, reason) {
  const [title, text, rejoin] = closedWords(code, reason);
  ended(text, { title, rejoin });
}

$('rejoin').onclick = () => location.reload();

function lobbyProblem(text, fatal = false) {
  $('lobby').hidden = false;
  const p = document.querySelector('#lobby .problem');
  p.textContent = text;
  p.hidden = false;
  if (fatal) $('join').hidden = true;
}
