// The landing page: create a meeting (keeping its host token for this tab) or open one by link or id.
const problem = document.getElementById('problem');
const show = (text) => { problem.textContent = text; problem.hidden = false; };
// Where only some may create meetings, an application sends its users here with a creator token in the fragment
// (`/#creator=...`, never sent to a server); it rides along as the credential for `POST /meetings`.
const creatorParam = new URLSearchParams(location.hash.slice(1)).get('creator');
if (creatorParam) {
  sessionStorage.setItem('sluice.creator', creatorParam);
  history.replaceState(null, '', location.pathname + location.search);
}

document.getElementById('create').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const name = form.get('name').trim();
  const title = form.get('title').trim();
  // The host decides in the meeting whether to record; a meeting created here allows it.
  const body = { host_name: name, settings: title ? { title } : {}, recording_enabled: true };
  const headers = { 'content-type': 'application/json' };
  const creator = sessionStorage.getItem('sluice.creator');
  if (creator) headers.authorization = `Bearer ${creator}`;
  const response = await fetch('/meetings', { method: 'POST', headers, body: JSON.stringify(body) });
  const reply = await response.json();
  if (!response.ok) return show(reply.error?.message || `the server said ${response.status}`);
  const id = reply.meeting.id;
  sessionStorage.setItem(`sluice.token.${id}`, reply.host_token);
  // The host goes through the lobby too (preview, camera and microphone), with the name already filled in.
  localStorage.setItem('sluice.name', name);
  location.href = `/m/${id}`;
});

document.getElementById('open').addEventListener('submit', (e) => {
  e.preventDefault();
  const raw = new FormData(e.target).get('meeting').trim();
  const id = raw.includes('/m/') ? raw.split('/m/')[1].split(/[?#]/)[0] : raw;
  if (!/^[A-Za-z0-9_-]{3,64}$/.test(id)) return show('That is not a meeting link or id.');
  location.href = `/m/${id}`;
});
