// The meeting page's questions and the words for a closed connection: confirmations before actions that affect
// everyone, the hand-over question for a leaving host, and what each close code means to a person.

const $ = (id) => document.getElementById(id);

/** What a person is told when the server closed their connection with `code` (docs/signaling.md). */
const CLOSED = {
  4001: ['This link is not valid', 'The invitation has expired or is for another meeting. Ask for a new link.', false],
  4003: ['Not allowed', 'Your invitation does not allow what this page asked for.', false],
  4004: ['Meeting not found', 'There is no meeting at this link.', false],
  4008: ['Connection lost', 'The connection to the meeting could not be kept up. Check your network, then join again.', true],
  4009: ['The meeting is full', 'Everyone it has room for is in. Try again later.', true],
  4010: ['You joined from somewhere else', 'You are in this meeting in another tab or on another device.', true],
  4011: ['The meeting has ended', 'A host ended the meeting for everyone.', false],
  4013: ['Not let in', 'A host did not let you in to this meeting.', false],
  4014: ['You were removed', 'A host removed you from the meeting.', false],
  4015: ['The meeting is locked', 'Ask a host to unlock it, then join again.', true],
  4016: ['Could not connect', 'This browser and the server could not agree on how to send media.', true],
  4029: ['Disconnected', 'This page sent or received too much at once.', true],
  4503: ['The server is busy', 'It cannot take more people right now. Try again in a moment.', true],
};

/** [title, text, whether rejoining can work] for close `code` (`reason`: the server's words, for unknown codes). */
export function closedWords(code, reason) {
  return CLOSED[code] || ['Disconnected', reason || 'The connection to the meeting ended.', true];
}

/**
 * A host leaving a meeting nobody else can run is asked whom to make host (the server would otherwise name the
 * earliest participant co-host). False if they chose to stay.
 */
export async function handOver(client, app) {
  const me = app.participants.get(app.selfId);
  const others = [...app.participants.values()].filter((p) => p.participant_id !== app.selfId);
  if (me?.role !== 'host' || !others.length || others.some((p) => p.role === 'host' || p.role === 'co_host')) return true;
  const select = $('handover-to');
  select.replaceChildren(...others.map((p) => new Option(p.name, p.participant_id)));
  const dialog = $('handover');
  dialog.returnValue = '';
  dialog.showModal();
  const choice = await new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue), { once: true }));
  // Sent before `leave` on the same connection, so the server applies it first.
  if (choice === 'handover' && select.value) client.setRole(select.value, 'host');
  return choice === 'handover' || choice === 'leave';
}

/** Asks before an action that affects everyone; true only when the confirming button was pressed. */
export function confirmAction(title, text, ok, danger = false) {
  const dialog = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = ok;
  $('confirm-ok').className = danger ? 'danger' : '';
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

