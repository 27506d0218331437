// The analytics dashboard (docs/analytics.md): `/dashboard` shows the deployment over a time range
// (`GET /analytics`), `/dashboard/m/{meeting_id}` one meeting and each of its participants
// (`GET /meetings/{id}/analytics`). Both need an operator credential, sent as `Authorization: Bearer`: it comes
// from the fragment (`#token=...`, never sent to a server), is kept for this tab only, and can be pasted instead.
// Meeting titles and names are user input: every text goes in with textContent.
import {
  barChart, lineChart, formatBytes, formatDateTime, formatDuration, formatMs, formatNumber, formatRatio,
  parseTime,
} from '/assets/charts.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'sluice.dashboard.token';
/** The ranges offered, by the value of `?range=`. */
const RANGES = { '1h': { label: 'Last hour', ms: 3600e3 }, '24h': { label: 'Last 24 hours', ms: 86400e3 }, '7d': { label: 'Last 7 days', ms: 7 * 86400e3 } };
const DEFAULT_RANGE = '24h';
/** Events drawn as markers on a participant's plots (the others are listed only). */
const EVENT_LABELS = {
  join_attempted: 'join', join_succeeded: 'joined', join_failed: 'join failed', ice_connected: 'ICE connected',
  ice_failed: 'ICE failed', first_frame: 'first frame', left: 'left', recording_failed: 'recording failed',
  admitted: 'admitted', role_changed: 'role changed', sent_to_waiting_room: 'sent to waiting room', removed: 'removed',
  moved: 'moved',
};
const UNMARKED_EVENTS = new Set(['quality', 'candidate']);

const parts = location.pathname.split('/').filter(Boolean).map((p) => { try { return decodeURIComponent(p); } catch { return p; } });
const meetingId = parts[0] === 'dashboard' && parts[1] === 'm' && parts[2] ? parts[2] : null;
const params = new URLSearchParams(location.search);

/** State the tests read through window.sluiceDashboard. */
const dash = { view: meetingId ? 'meeting' : 'deployment', meetingId, range: null, data: null, errors: [], loaded: false };
window.sluiceDashboard = dash;

// An operator link may carry the credential in the fragment: keep it for this tab and take it out of the address.
function takeFragmentToken() {
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get('token');
  if (!fromFragment) return false;
  sessionStorage.setItem(TOKEN_KEY, fromFragment);
  history.replaceState(null, '', location.pathname + location.search);
  return true;
}
takeFragmentToken();
// A link with a credential opened over this page (the same document, only the fragment changes).
window.addEventListener('hashchange', () => { if (takeFragmentToken()) load(); });

setup();
load();

function token() {
  // A host of the meeting may read its analytics with the token this tab holds for the meeting.
  return sessionStorage.getItem(TOKEN_KEY) || (meetingId && sessionStorage.getItem(`sluice.token.${meetingId}`)) || null;
}

function setup() {
  $('dashboard-token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('dashboard-token').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $('dashboard-token').value = '';
    load();
  });
  $('dashboard-forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showViews(false);
    showError(null);
    askForToken();
  });
  $('dashboard-refresh').addEventListener('click', () => load());
  for (const button of document.querySelectorAll('#dashboard-range [data-range]')) {
    button.addEventListener('click', () => {
      params.set('range', button.dataset.range);
      history.replaceState(null, '', `${location.pathname}?${params}`);
      load();
    });
  }
  if (meetingId) {
    $('dashboard-crumb').hidden = false;
    $('dashboard-crumb-meeting').textContent = meetingId;
    document.title = `Meeting ${meetingId} · Sluice analytics`;
  }
}

// --- loading -----------------------------------------------------------------------------------------------------

async function load() {
  const credential = token();
  if (!credential) {
    showViews(false);
    return askForToken();
  }
  $('dashboard-auth').hidden = true;
  $('dashboard-forget').hidden = !sessionStorage.getItem(TOKEN_KEY);
  $('dashboard').setAttribute('aria-busy', 'true');
  document.body.dataset.state = 'loading';
  dash.loaded = false;
  try {
    if (meetingId) {
      dash.data = await api(`/meetings/${encodeURIComponent(meetingId)}/analytics`, credential);
      renderMeeting(dash.data);
    } else {
      const key = RANGES[params.get('range')] ? params.get('range') : DEFAULT_RANGE;
      const until = new Date();
      const since = new Date(until.getTime() - RANGES[key].ms);
      dash.range = { key, since: rfc3339(since), until: rfc3339(until) };
      dash.data = await api(`/analytics?since=${encodeURIComponent(dash.range.since)}&until=${encodeURIComponent(dash.range.until)}`, credential);
      renderDeployment(dash.data, dash.range);
    }
    showError(null);
    showViews(true);
    document.body.dataset.state = 'ready';
  } catch (e) {
    const text = e.message || String(e);
    dash.errors.push(text);
    showError(text);
    showViews(false);
    document.body.dataset.state = 'error';
    // Refused: another credential may do.
    if (e.status === 401 || e.status === 403) askForToken();
  } finally {
    dash.loaded = true;
    $('dashboard').setAttribute('aria-busy', 'false');
  }
}

async function api(path, credential) {
  const response = await fetch(path, { headers: { authorization: `Bearer ${credential}`, accept: 'application/json' } });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body?.error?.message || `The server said ${response.status} ${response.statusText}`.trim();
    throw Object.assign(new Error(message), { status: response.status, code: body?.error?.code });
  }
  return body ?? {};
}

/** RFC 3339 in UTC to the second. */
function rfc3339(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function askForToken() {
  $('dashboard-auth').hidden = false;
  $('dashboard-forget').hidden = !sessionStorage.getItem(TOKEN_KEY);
  document.body.dataset.state = document.body.dataset.state === 'error' ? 'error' : 'token';
  dash.loaded = true;
}

function showViews(on) {
  $('deployment-view').hidden = !on || !!meetingId;
  $('meeting-view').hidden = !on || !meetingId;
}

function showError(text) {
  const p = $('dashboard-error');
  p.textContent = text || '';
  p.hidden = !text;
}

// --- reading the API's JSON (tolerant of a missing figure: it shows as "–") ---------------------------------------

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const num = (...values) => values.find(isNum) ?? null;
const sumValues = (o) => Object.values(o || {}).reduce((s, v) => s + (isNum(v) ? v : 0), 0);

/** Failed joins: {total, byReason}, from `joins_failed` as an object by reason (or a number beside one). */
function failures(x) {
  const raw = x?.joins_failed;
  const byReason = raw && typeof raw === 'object' ? raw : (x?.joins_failed_by_reason || x?.failed_by_reason || {});
  return { total: isNum(raw) ? raw : sumValues(byReason), byReason };
}

function recordings(x) {
  const r = x?.recordings && typeof x.recordings === 'object' ? x.recordings : {};
  return { ready: num(r.ready, x?.recordings_ready), failed: num(r.failed, x?.recordings_failed), started: num(r.started, x?.recordings_started) };
}

function joinSuccess(x) {
  if (isNum(x?.join_success)) return x.join_success;
  return isNum(x?.joins_attempted) && x.joins_attempted > 0 && isNum(x?.joins_succeeded) ? x.joins_succeeded / x.joins_attempted : null;
}

const bucketTime = (b) => parseTime(b.start ?? b.at ?? b.since ?? b.from ?? b.bucket_start ?? b.t);

// --- pieces ------------------------------------------------------------------------------------------------------

function el(tag, className = null, text = null) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== null && text !== undefined) e.textContent = text;
  return e;
}

/** A figure card: a big value, what it is, and optionally a line of detail. */
function card(key, label, value, { raw = null, detail = null, tone = null } = {}) {
  const li = el('li', `figure-card${tone ? ` ${tone}` : ''}`);
  li.dataset.figure = key;
  if (raw !== null && raw !== undefined) li.dataset.value = String(raw);
  const v = el('span', 'figure-value', value);
  const l = el('span', 'figure-label', label);
  li.append(v, l);
  if (detail) li.append(el('span', 'figure-detail', detail));
  return li;
}

function byReasonText(byReason) {
  const entries = Object.entries(byReason || {}).filter(([, n]) => isNum(n) && n > 0).sort((a, b) => b[1] - a[1]);
  return entries.length ? entries.map(([reason, n]) => `${reason.replaceAll('_', ' ')}: ${formatNumber(n)}`).join(', ') : null;
}

/** The cards shared by both views: joins, failures by reason, TTFF, loss, relay share, recordings. */
function commonCards(x) {
  const f = failures(x);
  const r = recordings(x);
  const success = joinSuccess(x);
  return [
    card('joins_attempted', 'Joins attempted', formatNumber(x.joins_attempted), { raw: x.joins_attempted }),
    card('joins_succeeded', 'Joins succeeded', formatNumber(x.joins_succeeded), { raw: x.joins_succeeded }),
    card('join_success', 'Join success', formatRatio(success), { raw: success, tone: isNum(success) && success < 0.9 ? 'warn' : null }),
    card('joins_failed', 'Joins failed', formatNumber(f.total), { raw: f.total, detail: byReasonText(f.byReason), tone: f.total > 0 ? 'warn' : null }),
    card('ttff_ms_p50', 'Time to first frame, median', formatMs(x.ttff_ms_p50), { raw: x.ttff_ms_p50 }),
    card('ttff_ms_p95', 'Time to first frame, p95', formatMs(x.ttff_ms_p95), { raw: x.ttff_ms_p95 }),
    card('loss_in', 'Inbound packet loss', formatRatio(x.loss_in, 2), { raw: x.loss_in }),
    card('relay_share', 'Relayed through TURN', formatRatio(x.relay_share), { raw: x.relay_share }),
    card('recordings_ready', 'Recordings ready', formatNumber(r.ready), { raw: r.ready }),
    card('recordings_failed', 'Recordings failed', formatNumber(r.failed), { raw: r.failed, tone: r.failed > 0 ? 'bad' : null }),
  ];
}

// --- the deployment ----------------------------------------------------------------------------------------------

function renderDeployment(data, range) {
  const since = parseTime(data.since) ?? parseTime(range.since);
  const until = parseTime(data.until) ?? parseTime(range.until);
  for (const button of document.querySelectorAll('#dashboard-range [data-range]')) {
    button.setAttribute('aria-pressed', String(button.dataset.range === range.key));
  }
  const bucketS = num(data.bucket_s) ?? 3600;
  $('deployment-range').textContent = `${formatDateTime(since)} to ${formatDateTime(until)} · buckets of ${formatDuration(bucketS)}`;
  const totals = data.totals ?? data.summary ?? data.total ?? {};
  $('deployment-figures').replaceChildren(
    ...commonCards(totals),
    card('meetings', 'Meetings with activity', formatNumber((data.meetings || []).length), { raw: (data.meetings || []).length }),
  );

  const buckets = Array.isArray(data.buckets) ? data.buckets : [];
  const bucketMs = bucketS * 1000;
  const times = buckets.map((b, i) => bucketTime(b) ?? since + i * bucketMs);
  const domain = [since, until];
  const reasons = [...new Set(buckets.flatMap((b) => Object.keys(failures(b).byReason)))].sort();
  const failColours = ['c3', 'c2', 'c4', 'c6', 'c5', 'c7', 'c0'];
  const joins = barChart({
    name: 'joins', caption: 'Joins per bucket: succeeded and failed by reason', domain, bucketMs, times, yTitle: 'joins',
    series: [
      { key: 'succeeded', label: 'succeeded', colour: 'c1', values: buckets.map((b) => num(b.joins_succeeded) ?? 0) },
      ...reasons.map((reason, i) => ({ key: `failed:${reason}`, label: `failed: ${reason.replaceAll('_', ' ')}`, colour: failColours[i % failColours.length], values: buckets.map((b) => num(failures(b).byReason[reason]) ?? 0) })),
    ],
    note: buckets.length ? `Attempted: ${formatNumber(buckets.reduce((s, b) => s + (num(b.joins_attempted) ?? 0), 0))}` : null,
  });
  const points = (f) => buckets.map((b, i) => ({ t: times[i] + bucketMs / 2, v: f(b) }));
  const ttff = lineChart({
    name: 'ttff', caption: 'Time to first frame (p50 and p95)', domain, yTitle: 'ms', format: (v) => formatNumber(v, 0),
    series: [
      { key: 'p50', label: 'p50', colour: 'c0', points: points((b) => num(b.ttff_ms_p50)) },
      { key: 'p95', label: 'p95', colour: 'c2', points: points((b) => num(b.ttff_ms_p95)) },
    ],
  });
  const loss = lineChart({
    name: 'loss', caption: 'Mean inbound packet loss', domain, yTitle: '%', format: percentLabel, minMax: 1,
    series: [{ key: 'loss_in', label: 'loss', colour: 'c3', points: points((b) => ratioToPercent(b.loss_in)) }],
  });
  const relay = lineChart({
    name: 'relay_share', caption: 'Share of connections relayed through TURN', domain, yTitle: '%', format: percentLabel, minMax: 10,
    series: [{ key: 'relay_share', label: 'relay share', colour: 'c4', points: points((b) => ratioToPercent(b.relay_share)) }],
  });
  const recs = barChart({
    name: 'recordings', caption: 'Recordings by outcome', domain, bucketMs, times, yTitle: 'recordings',
    series: [
      { key: 'ready', label: 'ready', colour: 'c1', values: buckets.map((b) => recordings(b).ready ?? 0) },
      { key: 'failed', label: 'failed', colour: 'c3', values: buckets.map((b) => recordings(b).failed ?? 0) },
    ],
  });
  $('deployment-charts').replaceChildren(joins, ttff, loss, relay, recs);
  renderMeetings(Array.isArray(data.meetings) ? data.meetings : []);
}

function renderMeetings(meetings) {
  $('meetings-empty').hidden = meetings.length > 0;
  $('meetings').hidden = meetings.length === 0;
  $('meetings-body').replaceChildren(...meetings.map((m) => {
    const id = String(m.meeting_id ?? m.id ?? '');
    const tr = el('tr');
    tr.dataset.meeting = id;
    const name = el('th');
    name.scope = 'row';
    const link = el('a', null, m.title || `Meeting ${id}`);
    link.href = `/dashboard/m/${encodeURIComponent(id)}`;
    name.append(link);
    const people = Array.isArray(m.participants) ? m.participants.length : num(m.participants, m.participant_count, m.peak_participants);
    tr.append(
      name,
      el('td', 'mono', id),
      timeCell(parseTime(m.first_event_at ?? m.first_at ?? m.first_event ?? m.started_at)),
      timeCell(parseTime(m.last_event_at ?? m.last_at ?? m.last_event ?? m.ended_at)),
      el('td', 'num', formatNumber(people)),
    );
    return tr;
  }));
}

function timeCell(ms) {
  const td = el('td');
  if (ms === null) {
    td.textContent = '–';
    return td;
  }
  const time = el('time', null, formatDateTime(ms));
  time.dateTime = new Date(ms).toISOString();
  td.append(time);
  return td;
}

const ratioToPercent = (v) => (isNum(v) ? v * 100 : null);
const percentLabel = (v) => `${formatNumber(v, v < 1 && v > 0 ? 2 : 1)}`;

// --- one meeting -------------------------------------------------------------------------------------------------

function renderMeeting(data) {
  const id = String(data.meeting_id ?? meetingId);
  const title = data.title || `Meeting ${id}`;
  document.title = `${title} · Sluice analytics`;
  $('meeting-heading').textContent = title;
  $('dashboard-crumb-meeting').textContent = title;
  const s = data.summary ?? {};
  const started = parseTime(s.started_at);
  const ended = parseTime(s.ended_at);
  $('meeting-subtitle').textContent = `${id} · ${started !== null ? `started ${formatDateTime(started)}` : 'not started'}${ended !== null ? ` · ended ${formatDateTime(ended)}` : started !== null ? ' · in progress' : ''}`;
  $('meeting-figures').replaceChildren(
    card('duration_s', 'Duration', formatDuration(s.duration_s), { raw: s.duration_s }),
    card('peak_participants', 'Peak participants', formatNumber(s.peak_participants), { raw: s.peak_participants }),
    ...commonCards(s),
    card('jitter_ms', 'Jitter', formatMs(s.jitter_ms), { raw: s.jitter_ms }),
    card('rtt_ms', 'Round-trip time', formatMs(s.rtt_ms), { raw: s.rtt_ms }),
    card('cpu_s', 'SFU CPU', isNum(s.cpu_s) ? `${formatNumber(s.cpu_s, 1)} s` : '–', { raw: s.cpu_s }),
    card('bytes_in', 'Received by the SFU', formatBytes(s.bytes_in), { raw: s.bytes_in }),
    card('bytes_out', 'Sent by the SFU', formatBytes(s.bytes_out), { raw: s.bytes_out }),
  );
  const participants = Array.isArray(data.participants) ? data.participants : [];
  $('participants-empty').hidden = participants.length > 0;
  $('participants').replaceChildren(...participants.map((p, i) => participantSection(p, i, ended)));
}

function participantSection(p, index, meetingEnded) {
  const pid = String(p.participant_id ?? `p${index}`);
  const section = el('section', 'participant');
  section.dataset.participant = pid;
  const headingId = `participant-${index}`;
  section.setAttribute('aria-labelledby', headingId);
  const heading = el('h3', null, p.name || p.user_id || pid);
  heading.id = headingId;
  section.append(heading);

  const joined = parseTime(p.joined_at);
  const left = parseTime(p.left_at);
  const samples = (Array.isArray(p.samples) ? p.samples : []).map((x) => ({ ...x, t: parseTime(x.at) })).filter((x) => x.t !== null).sort((a, b) => a.t - b.t);
  const events = (Array.isArray(p.events) ? p.events : []).map((e) => ({ ...e, t: parseTime(e.at) })).filter((e) => e.t !== null).sort((a, b) => a.t - b.t);

  const facts = el('dl', 'participant-facts');
  const fact = (term, value) => {
    const pair = el('div');
    pair.append(el('dt', null, term), el('dd', null, value));
    facts.append(pair);
  };
  fact('Participant', pid);
  if (p.user_id) fact('User', String(p.user_id));
  if (p.role) fact('Role', String(p.role));
  fact('Joined', formatDateTime(joined));
  fact('Left', left !== null ? `${formatDateTime(left)}${p.left_reason ? ` (${String(p.left_reason).replaceAll('_', ' ')})` : ''}` : 'still there');
  if (joined !== null) fact('Time in the meeting', formatDuration(((left ?? meetingEnded ?? Date.now()) - joined) / 1000));
  fact('Time to first frame', formatMs(p.ttff_ms));
  fact('Connection', p.candidate ? String(p.candidate) : '–');
  section.append(facts);

  // The time axis: from the first to the last thing known of this participant.
  const known = [joined, left, ...samples.map((x) => x.t), ...events.map((e) => e.t)].filter(isNum);
  const t0 = known.length ? Math.min(...known) : Date.now() - 60e3;
  const t1 = Math.max(known.length ? Math.max(...known) : Date.now(), left === null && meetingEnded === null ? Math.min(Date.now(), t0 + 7 * 86400e3) : t0);
  const domain = [t0, t1];
  const markers = eventMarkers(events, joined, left, p.left_reason);
  const series = (key, label, colour, f) => ({ key, label, colour, points: samples.map((x) => ({ t: x.t, v: f(x) })) });

  const charts = el('div', 'charts');
  charts.append(
    lineChart({
      name: 'bitrate', caption: `${heading.textContent}: bitrate received and sent`, domain, markers, yTitle: 'kbit/s', format: (v) => formatNumber(v, 0),
      series: [series('in', 'received', 'c0', (x) => num(x.bitrate_in_kbps)), series('out', 'sent', 'c1', (x) => num(x.bitrate_out_kbps))],
    }),
    lineChart({
      name: 'loss', caption: `${heading.textContent}: inbound packet loss`, domain, markers, yTitle: '%', format: percentLabel, minMax: 1,
      series: [series('loss_in', 'loss', 'c3', (x) => ratioToPercent(x.loss_in))],
    }),
    lineChart({
      name: 'jitter', caption: `${heading.textContent}: jitter`, domain, markers, yTitle: 'ms', format: (v) => formatNumber(v, 1), minMax: 5,
      series: [series('jitter', 'jitter', 'c2', (x) => num(x.jitter_ms, x.jitter_in_ms))],
    }),
    lineChart({
      name: 'rtt', caption: `${heading.textContent}: round-trip time`, domain, markers, yTitle: 'ms', format: (v) => formatNumber(v, 0), minMax: 10,
      series: [series('rtt', 'round-trip time', 'c4', (x) => num(x.rtt_ms))],
    }),
    lineChart({
      name: 'layer', caption: `${heading.textContent}: simulcast layer received`, domain, markers, yTitle: 'layer', format: (v) => formatNumber(v, 0), integer: true, minMax: 2, step: true,
      series: [series('layer', 'layer', 'c5', (x) => layerOf(x))],
    }),
  );
  if (samples.some((x) => isNum(x.cpu_ms))) {
    charts.append(lineChart({
      name: 'cpu', caption: `${heading.textContent}: SFU CPU attributed per sample`, domain, markers, yTitle: 'ms', format: (v) => formatNumber(v, 1),
      series: [series('cpu', 'CPU', 'c7', (x) => num(x.cpu_ms))],
    }));
  }
  if (samples.length === 0) section.append(el('p', 'lede', 'No quality samples for this participant.'));
  section.append(charts, eventList(events));
  return section;
}

/** The simulcast layer of a sample: `layer`, or the highest of `layers` (a list or an object of them). */
function layerOf(x) {
  if (isNum(x.layer)) return x.layer;
  const values = Array.isArray(x.layers) ? x.layers : x.layers && typeof x.layers === 'object' ? Object.values(x.layers) : [];
  const nums = values.map((v) => (isNum(v) ? v : num(v?.layer))).filter(isNum);
  return nums.length ? Math.max(...nums) : null;
}

function eventMarkers(events, joined, left, leftReason) {
  const types = new Set(events.map((e) => e.type));
  const markers = events
    .filter((e) => !UNMARKED_EVENTS.has(e.type) && !(e.type === 'join_attempted' && types.has('join_succeeded')))
    .map((e) => ({ t: e.t, type: e.type, label: EVENT_LABELS[e.type] || String(e.type).replaceAll('_', ' '), title: eventText(e), bad: /failed|removed/.test(e.type) }));
  // The joining and leaving times also mark the plots when no event says them.
  if (joined !== null && !types.has('join_succeeded') && !types.has('join_attempted')) markers.push({ t: joined, type: 'join_succeeded', label: 'joined', title: `joined · ${formatDateTime(joined)}` });
  if (left !== null && !types.has('left')) markers.push({ t: left, type: 'left', label: 'left', title: `left${leftReason ? ` (${leftReason})` : ''} · ${formatDateTime(left)}` });
  return markers;
}

/** "ice_connected · 12:01:02 · ms 212": an event's type, time and figures as text. */
function eventText(e) {
  const figures = e.metrics && typeof e.metrics === 'object'
    ? Object.entries(e.metrics).filter(([k, v]) => v !== null && typeof v !== 'object' && k !== 'participant_id').map(([k, v]) => `${k.replaceAll('_', ' ')} ${v}`).join(', ')
    : '';
  return `${EVENT_LABELS[e.type] || e.type} · ${formatDateTime(e.t)}${figures ? ` · ${figures}` : ''}`;
}

function eventList(events) {
  const details = el('details', 'participant-events');
  details.append(el('summary', null, `Events (${events.length})`));
  const ol = el('ol', 'events');
  for (const e of events) {
    const li = el('li');
    li.dataset.event = String(e.type);
    const time = el('time', null, new Date(e.t).toLocaleTimeString());
    time.dateTime = new Date(e.t).toISOString();
    li.append(time, el('span', 'event-type', String(e.type)));
    const text = eventText(e).split(' · ').slice(2).join(' · ');
    if (text) li.append(el('span', 'event-figures', text));
    ol.append(li);
  }
  details.append(ol);
  return details;
}
