// The meeting page's part for running a meeting: host actions per person in the people list, lock and mute-all,
// raised hands and reactions, and what a participant is told when a host acts on them. Every action is a
// request the server checks (docs/moderation.md); the page only offers what the user's grants allow.

const $ = (id) => document.getElementById(id);

/** Reactions the server accepts. */
export const REACTIONS = ['👍', '👏', '😂', '😮', '❤️', '🎉', '🤔', '👋'];

const SOURCE_WORDS = { microphone: 'microphone', camera: 'camera', screen: 'screen share' };

/**
 * Wires the moderation parts of the page to `client`.
 * @param {object} ui  {app, notice(text, action?), ended(reason), renderPeople(), updateLabel(id), tileOf(id)}
 */
export function setupModeration(client, ui) {
  const { app } = ui;
  app.hands = [];
  const isHost = () => !!client.grants?.host;

  client.addEventListener('welcome', (e) => {
    const m = e.detail;
    app.hands = m.meeting?.hands || [];
    showHostControls(isHost());
    showLock(m.meeting?.locked);
    setHand(app.hands.includes(m.participant_id));
    if (m.meeting?.join_muted && !client.muted.microphone) {
      client.setMuted('microphone', true);
      ui.setToggle('mic', true);
      ui.notice('This meeting starts with microphones muted. Unmute when you want to speak.');
    }
    for (const source of m.meeting?.held || []) heldLocally(source);
  });
  client.addEventListener('muted-by-host', (e) => {
    heldLocally(e.detail.source);
    ui.notice(`${e.detail.by} stopped your ${SOURCE_WORDS[e.detail.source]}. You can turn it on again when a host asks.`);
  });
  client.addEventListener('unmute-requested', (e) => {
    const { source, by } = e.detail;
    ui.notice(`${by} asks you to turn on your ${SOURCE_WORDS[source]}.`, {
      label: source === 'microphone' ? 'Unmute' : 'Turn on',
      run: () => {
        client.setMuted(source, false);
        ui.setToggle(source === 'microphone' ? 'mic' : 'cam', false);
        if (source === 'camera') ui.tileOf(app.selfId)?.classList.remove('camera-off');
        ui.notice(null);
      },
    });
  });
  client.addEventListener('role-changed', (e) => {
    const m = e.detail;
    const p = app.participants.get(m.participant_id);
    if (p) p.role = m.role;
    if (m.participant_id === app.selfId) {
      showHostControls(m.grants.host);
      $('share').hidden = !m.grants.screen || !navigator.mediaDevices?.getDisplayMedia;
      ui.notice(`You are now ${roleWords(m.role)}.`);
    }
    ui.renderPeople();
  });
  client.addEventListener('hands', (e) => {
    app.hands = e.detail.raised;
    setHand(app.hands.includes(app.selfId));
    for (const id of app.participants.keys()) ui.updateLabel(id);
    ui.renderPeople();
  });
  client.addEventListener('reaction', (e) => showReaction(ui.tileOf(e.detail.participant_id), e.detail.emoji));
  client.addEventListener('meeting-locked', (e) => {
    showLock(e.detail.locked);
    ui.notice(`${e.detail.by} ${e.detail.locked ? 'locked' : 'unlocked'} the meeting.`);
  });
  // Removal (4014) and a locked meeting (4015) end on the page's closed screen (app.js), worded there.

  $('hand').onclick = () => client.raiseHand(!app.hands.includes(app.selfId));
  $('react').onclick = () => {
    const open = $('reactions').hidden;
    $('reactions').hidden = !open;
    $('react').setAttribute('aria-expanded', String(open));
  };
  $('reactions').replaceChildren(...REACTIONS.map((emoji) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'secondary';
    b.textContent = emoji;
    b.setAttribute('aria-label', `React ${emoji}`);
    b.onclick = () => { client.react(emoji); $('reactions').hidden = true; $('react').setAttribute('aria-expanded', 'false'); };
    return b;
  }));
  $('lock').onclick = () => client.lock($('lock').getAttribute('aria-pressed') !== 'true');
  $('mute-all').onclick = () => client.muteAll();
  $('lower-hands').onclick = () => client.lowerHands();

  function heldLocally(source) {
    if (source === 'microphone') ui.setToggle('mic', true);
    if (source === 'camera') { ui.setToggle('cam', true); ui.tileOf(app.selfId)?.classList.add('camera-off'); }
  }

  function setHand(raised) {
    $('hand').setAttribute('aria-pressed', String(raised));
  }

  function showHostControls(host) {
    for (const id of ['lock', 'mute-all', 'lower-hands', 'end', 'record']) $(id).hidden = !host;
  }

  function showLock(locked) {
    $('lock').setAttribute('aria-pressed', String(!!locked));
    $('locked-badge').hidden = !locked;
  }

  return {
    /** The host's actions for one person in the people list (nothing for oneself or for a non-host). */
    actionsFor(p) {
      if (!isHost() || p.participant_id === app.selfId) return null;
      const details = document.createElement('details');
      details.className = 'person-actions';
      const summary = document.createElement('summary');
      summary.textContent = 'Actions';
      summary.setAttribute('aria-label', `Actions for ${p.name}`);
      details.append(summary);
      const menu = document.createElement('div');
      const item = (label, run) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'secondary';
        b.textContent = label;
        b.onclick = () => { run(); details.open = false; };
        menu.append(b);
      };
      const id = p.participant_id;
      item('Mute', () => client.muteParticipant(id, 'microphone'));
      item('Stop video', () => client.muteParticipant(id, 'camera'));
      item('Ask to unmute', () => client.askUnmute(id, 'microphone'));
      if (app.hands.includes(id)) item('Lower hand', () => client.lowerHands(id));
      if (client.grants?.host && app.participants.get(app.selfId)?.role !== 'co_host') {
        if (p.role === 'co_host') item('Make participant', () => client.setRole(id, 'participant'));
        else item('Make co-host', () => client.setRole(id, 'co_host'));
        item('Make host', () => {
          if (window.confirm(`Make ${p.name} the host? You stay a co-host.`)) client.setRole(id, 'host');
        });
      }
      item('Send to waiting room', () => client.sendToWaitingRoom(id));
      item('Remove', () => {
        if (window.confirm(`Remove ${p.name}? They cannot join this meeting again.`)) client.removeParticipant(id);
      });
      details.append(menu);
      return details;
    },
  };
}

function roleWords(role) {
  return { host: 'the host', co_host: 'a co-host', participant: 'a participant', viewer: 'a viewer' }[role] || role;
}

/** A reaction floats over the tile for a few seconds (text, never HTML). */
function showReaction(tile, emoji) {
  if (!tile) return;
  const bubble = document.createElement('span');
  bubble.className = 'reaction';
  bubble.textContent = emoji;
  tile.append(bubble);
  setTimeout(() => bubble.remove(), 3000);
}
