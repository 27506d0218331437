// The playback portal: `/m/{meeting}/recordings` lists a meeting's recordings (with the token this tab holds for
// the meeting); `/recordings/{id}/play?share=...` plays one with its subtitles, from a share link or the list.
const $ = (id) => document.getElementById(id);
const parts = location.pathname.split('/').filter(Boolean).map(decodeURIComponent);
const share = new URLSearchParams(location.search).get('share');
// Opened from the meeting in a new tab, which shares nothing with it: the meeting's token rides in the fragment
// (never sent to a server), kept for this tab and taken out of the address bar.
const handed = new URLSearchParams(location.hash.slice(1)).get('token');
if (handed && parts[0] === 'm') {
  sessionStorage.setItem(`sluice.token.${parts[1]}`, handed);
  history.replaceState(null, '', location.pathname + location.search);
}
/** While a recording is still being processed, the list is read again this often. */
const REFRESH_MS = 5000;
/** State the tests read through window.sluicePlayer. */
window.sluicePlayer = { recording: null, errors: [] };

main().catch((e) => problem(String(e.message || e)));

async function api(path, token) {
  const response = await fetch(path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error?.message || `the server said ${response.status}`);
  return body;
}

async function main() {
  if (parts[0] === 'recordings') return play(parts[1]);
  const meetingId = parts[1];
  const token = sessionStorage.getItem(`sluice.token.${meetingId}`);
  if (!token) return problem('Open this page from the meeting (it needs your place in the meeting), or use a share link.');
  $('heading').textContent = `Recordings of ${await titleOf(meetingId, token)}`;
  await list(meetingId, token);
}

/** The meeting's title where it has one (its id otherwise, or when the meeting cannot be read). */
async function titleOf(meetingId, token) {
  const meeting = await api(`/meetings/${encodeURIComponent(meetingId)}`, token).catch(() => null);
  return meeting?.settings?.title || meetingId;
}

/** Shows the list, and reads it again while any recording is still on its way. */
async function list(meetingId, token) {
  const recordings = await api(`/meetings/${encodeURIComponent(meetingId)}/recordings`, token);
  window.sluicePlayer.listed = (window.sluicePlayer.listed || 0) + 1;
  if (recordings.some((r) => r.status !== 'ready' && r.status !== 'failed')) {
    setTimeout(() => list(meetingId, token).catch((e) => problem(String(e.message || e))), REFRESH_MS);
  }
  if (recordings.length === 0) return problem('No recordings yet.');
  document.querySelector('.problem').hidden = true;
  $('list').replaceChildren(...recordings.map((r) => {
    const li = document.createElement('li');
    const link = document.createElement(r.share_url ? 'a' : 'span');
    link.textContent = `${new Date(r.created_at).toLocaleString()}${r.duration_ms ? ` · ${Math.round(r.duration_ms / 1000)} s` : ''}`;
    if (r.share_url) link.href = r.share_url;
    const status = document.createElement('span');
    status.className = 'status';
    status.textContent = r.status === 'failed' ? `failed: ${r.status_reason}` : r.status;
    li.append(link, status);
    return li;
  }));
}

async function play(id) {
  if (!share) return problem('This player needs a share link (open it from the list of recordings).');
  const q = `?share=${encodeURIComponent(share)}`;
  const r = await api(`/recordings/${encodeURIComponent(id)}${q}`);
  window.sluicePlayer.recording = r;
  $('heading').textContent = `Recording of ${await titleOf(r.meeting_id, null)} · ${new Date(r.created_at).toLocaleString()}`;
  if (r.status !== 'ready') return problem(r.status === 'failed' ? `This recording failed: ${r.status_reason}` : `This recording is ${r.status}; reload in a moment.`);
  const video = $('video');
  video.src = r.file_url + q;
  if (r.vtt_url) {
    const track = document.createElement('track');
    Object.assign(track, { kind: 'subtitles', label: 'Transcript', srclang: 'en', default: true, src: r.vtt_url + q });
    video.append(track);
    $('download-vtt').href = r.vtt_url + q;
  } else {
    $('download-vtt').hidden = true;
  }
  for (const [id, url] of [['download-chat', r.chat_url], ['download-chat-json', r.chat_json_url]]) {
    if (url) $(id).href = url + q;
    else $(id).hidden = true;
  }
  $('download').href = r.file_url + q;
  $('download').download = `${r.id}.mp4`;
  $('copy-share').onclick = () => navigator.clipboard?.writeText(location.href);
  $('share-note').textContent = r.share_expires_at ? `Anyone with this page's link can watch until ${new Date(r.share_expires_at * 1000).toLocaleString()}.` : '';
  video.addEventListener('error', () => window.sluicePlayer.errors.push(`video: ${video.error?.message || video.error?.code}`));
  $('player').hidden = false;
}

function problem(text) {
  const p = document.querySelector('.problem');
  p.textContent = text;
  p.hidden = false;
}
