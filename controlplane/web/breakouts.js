// The meeting page's breakout rooms (docs/breakouts.md): the hosts' panel (create rooms, assign people, open with a
// timer, extend, close, broadcast, visit), and for everyone a banner (the room one is in, the time left, the
// closing countdown, going back, choosing a room, asking for help) and the notices (broadcasts; help requests
// for hosts). Moving is the server's act: the page asks, and follows `room_changed`. Everything a user wrote
// (names, room names, broadcasts) goes into the page as text (textContent), never as HTML.

const $ = (id) => document.getElementById(id);

/** Errors arriving this soon after a breakout request are taken as its answer (errors name no request). */
const ERROR_WINDOW_MS = 5000;
const MAX_ROOMS = 50;
const MAX_NAME_CHARS = 60;
const MAX_BROADCAST_CHARS = 1000;
const EXTEND_SECS = 300;
/** The timer is highlighted this close to the end, whether or not the server's warning came. */
const WARNING_SECS = 60;
/** How long "returning to the main room in 0 s" stays when no move comes (one already in the main room). */
const CLOSING_GRACE_MS = 3000;
/** "Ask for help" rests this long after a request. */
const HELP_COOLDOWN_MS = 20000;
const NOTICE_MS = 6000;
/** The clock is read this often (the seconds shown change on time whatever the deadline's phase). */
const TICK_MS = 250;
const MAIN = 'main';
const MAIN_NAME = 'Main room';

/**
 * Wires the breakout parts of the page to `client`. Call before `join()`.
 * @param {object} ui  {app, notice(text, action?)}; `app.room` and `app.roomName` follow the room one is in.
 */
export function setupBreakouts(client, ui) {
  const { app } = ui;
  /** The last `breakouts` message (hosts: with each room's people, the main room's and the assignments). */
  let state = { open: false, rooms: [], ends_at: null, allow_return: false, self_select: false };
  let stateVersion = 0;
  let endsAt = null; // local clock, ms
  let warning = false;
  let skewMs = 0; // server clock minus local clock, from breakout_timer
  let closingUntil = null; // local clock, ms
  let closingVersion = 0; // stateVersion when the closing countdown began
  let ticker = null;
  let lastRequestAt = -Infinity;
  let helpTimer = null;
  let selfName = null;

  const isHost = () => !!client.grants?.host;
  const current = () => roomKey(app.room);
  const rooms = () => (Array.isArray(state.rooms) ? state.rooms : []);
  const roomById = (key) => rooms().find((r) => roomKey(r.room_id) === key) || null;
  const nameOf = (key) => (key === MAIN ? MAIN_NAME : roomById(key)?.name ?? null);

  app.room = MAIN;
  app.roomName = MAIN_NAME;

  // --- signaling -------------------------------------------------------------------------------------------

  client.addEventListener('welcome', (e) => {
    const m = e.detail;
    selfName = m.name;
    const where = roomOfWelcome(m);
    setRoom(where.id, where.name);
    if (!isHost()) clearHelpRequests();
    render();
  });
  client.addEventListener('breakouts', (e) => {
    const m = e.detail;
    state = { open: false, rooms: [], ends_at: null, allow_return: false, self_select: false, ...m };
    stateVersion += 1;
    if (!state.open) {
      endsAt = null;
      warning = false;
    } else {
      const end = Date.parse(state.ends_at);
      endsAt = state.ends_at && Number.isFinite(end) ? end - skewMs : null;
    }
    // Closed: the closing countdown is over (everyone is back). Open again: an earlier countdown is over too.
    if (closingUntil !== null && (!state.open || Date.now() >= closingUntil)) closingUntil = null;
    if (!state.open && closingUntil === null) clearHelpRequests();
    // A room renamed (rooms created again) while one is in it.
    const name = current() !== MAIN ? roomById(current())?.name : null;
    if (name) app.roomName = name;
    render();
  });
  client.addEventListener('breakout-timer', (e) => {
    const m = e.detail;
    const remaining = Number(m.remaining_secs);
    const end = Date.parse(m.ends_at);
    if (m.remaining_secs !== null && m.remaining_secs !== undefined && Number.isFinite(remaining)) {
      const local = Date.now() + remaining * 1000;
      if (m.ends_at && Number.isFinite(end)) skewMs = end - local;
      endsAt = local;
    } else {
      endsAt = m.ends_at && Number.isFinite(end) ? end - skewMs : null;
    }
    warning = !!m.warning;
    if (endsAt !== null) {
      const left = secondsUntil(endsAt);
      announce(warning ? `The breakout rooms close in ${spoken(left)}.` : `${capitalised(spoken(left))} left in the breakout rooms.`);
    }
    render();
  });
  client.addEventListener('breakouts-closing', (e) => {
    const seconds = Math.max(0, Number(e.detail.seconds) || 0);
    closingUntil = Date.now() + seconds * 1000;
    closingVersion = stateVersion;
    endsAt = null;
    warning = false;
    announce(`The breakout rooms are closing: everyone returns to the main room in ${spoken(seconds)}.`);
    render();
  });
  client.addEventListener('room-changed', (e) => {
    const m = e.detail;
    setRoom(m.room_id, m.room_name);
    const key = current();
    const closedBack = key === MAIN && closingUntil !== null;
    if (closedBack) closingUntil = null; // back: the countdown has done its work
    for (const li of [...$('breakout-help-requests').children]) if (li.dataset.roomId === key) li.remove();
    resetHelp();
    const where = key === MAIN ? 'the main room' : app.roomName;
    announce(key === MAIN ? 'You are back in the main room.' : `You are now in the breakout room ${app.roomName}.`);
    // `by` names the host who moved one (one's own name for one's own move; not said when the rooms closed).
    if (m.by && m.by !== selfName && !closedBack) flash(`${m.by} moved you to ${where}.`);
    render();
  });
  client.addEventListener('broadcast', (e) => showBroadcast(e.detail));
  client.addEventListener('help-requested', (e) => { if (isHost()) addHelpRequest(e.detail); });
  client.addEventListener('role-changed', (e) => {
    if (e.detail.participant_id !== app.selfId) return;
    if (!isHost()) clearHelpRequests();
    render();
  });
  client.addEventListener('error', (e) => {
    if (performance.now() - lastRequestAt > ERROR_WINDOW_MS) return;
    showError(e.detail.message || e.detail.code);
    renderPanel(); // a refused assignment: the selects show where people really are
  });

  // --- the room one is in ----------------------------------------------------------------------------------

  function setRoom(id, name) {
    const key = roomKey(id);
    app.room = key === MAIN ? MAIN : id;
    app.roomName = name || nameOf(key) || (key === MAIN ? MAIN_NAME : String(id));
  }

  // --- requests and errors ---------------------------------------------------------------------------------

  /** A request the server may refuse: its error, if one comes soon, is shown. */
  function requested() {
    lastRequestAt = performance.now();
    showError(null);
  }

  function showError(text) {
    const panelOpen = isHost() && !$('breakouts').hidden;
    $('breakout-error').textContent = panelOpen && text ? text : '';
    $('breakout-error').hidden = !(panelOpen && text);
    if (text && !panelOpen) flash(`Breakout rooms: ${text}`);
  }

  /** A status line for a few seconds (app.js's notice), unless something else replaced it meanwhile. */
  function flash(text) {
    ui.notice(text);
    setTimeout(() => { if ($('notice').textContent === text) ui.notice(null); }, NOTICE_MS);
  }

  /** Said once by screen readers (emptied first, so that the same words are said again). */
  function announce(text) {
    const region = $('breakout-announce');
    region.textContent = '';
    setTimeout(() => { region.textContent = text; }, 50);
  }

  // --- rendering -------------------------------------------------------------------------------------------

  function render() {
    renderBanner();
    renderPanel();
    runTicker();
  }

  function renderBanner() {
    const key = current();
    const inRoom = key !== MAIN;
    const open = !!state.open;
    const closing = closingUntil !== null;
    $('breakout-banner').hidden = !(inRoom || open || closing);

    $('breakout-room-name').textContent = inRoom ? app.roomName : '';
    $('breakout-room-name').hidden = !inRoom;
    const status = !inRoom && open && !closing ? 'Breakout rooms are open' : '';
    $('breakout-status').textContent = status;
    $('breakout-status').hidden = !status;
    $('breakout-countdown').hidden = endsAt === null || closing;
    $('breakout-closing').hidden = !closing;

    const choosing = open && !closing && !!state.self_select && rooms().length > 0;
    $('breakout-choose-field').hidden = !choosing;
    if (choosing) fillChoices(key);

    $('breakout-help').hidden = !inRoom;
    $('breakout-leave').hidden = !(inRoom && state.allow_return);
    tick();
  }

  /** The rooms one may pick (self_select), the one one is in marked and chosen. */
  function fillChoices(key) {
    const select = $('breakout-choose');
    const kept = select.value;
    select.replaceChildren(...rooms().map((r) => {
      const o = document.createElement('option');
      o.value = roomKey(r.room_id);
      o.textContent = roomKey(r.room_id) === key ? `${r.name} (you are here)` : r.name;
      return o;
    }));
    const values = [...select.options].map((o) => o.value);
    select.value = values.includes(kept) && kept !== key ? kept : values.find((v) => v !== key) ?? values[0] ?? '';
  }

  function renderPanel() {
    const host = isHost();
    $('breakouts-toggle').hidden = !host;
    if (!host) {
      $('breakouts').hidden = true;
      $('breakouts-toggle').setAttribute('aria-expanded', 'false');
      return;
    }
    const focus = focusedControl();
    const open = !!state.open;
    const closing = closingUntil !== null;
    const list = rooms();
    $('breakout-state').textContent = closing ? 'Closing' : open ? 'Open'
      : list.length ? `${list.length} ${list.length === 1 ? 'room' : 'rooms'}, not open` : 'No rooms yet';
    $('breakout-setup').hidden = open;
    $('breakout-open-options').hidden = open;
    $('breakout-open').disabled = list.length === 0;
    $('breakout-running').hidden = !open;
    $('breakout-extend').disabled = endsAt === null;
    $('breakout-extend').title = endsAt === null ? 'The rooms have no timer' : 'Five more minutes';
    $('breakout-random').hidden = list.length === 0;
    $('breakout-return').hidden = current() === MAIN;

    const waiting = waitingCounts(state.assignments);
    $('breakout-main').hidden = list.length === 0;
    $('breakout-main').classList.toggle('current', current() === MAIN);
    $('breakout-main').querySelector('ul').replaceChildren(...people(state.main, MAIN));
    $('breakout-rooms').replaceChildren(...list.map((room) => roomCard(room, open, waiting.get(roomKey(room.room_id)) || 0)));
    restoreFocus(focus);
  }

  function roomCard(room, open, waitingCount) {
    const key = roomKey(room.room_id);
    const card = document.createElement('div');
    card.className = 'breakout-room';
    card.dataset.roomId = String(room.room_id);
    const members = Array.isArray(room.participants) ? room.participants : [];
    const head = document.createElement('div');
    head.className = 'breakout-room-head';
    const title = document.createElement('h3');
    title.className = 'breakout-room-title';
    title.textContent = room.name;
    const count = document.createElement('span');
    count.className = 'breakout-room-count';
    count.textContent = String(members.length);
    count.setAttribute('aria-label', `${members.length} ${members.length === 1 ? 'person' : 'people'}`);
    head.append(title, count);
    if (key === current()) {
      card.classList.add('current');
      const here = document.createElement('span');
      here.className = 'breakout-here';
      here.textContent = 'you are here';
      head.append(here);
    } else if (open) {
      head.append(button('Visit', 'breakout-visit secondary', `Visit ${room.name}`, () => {
        requested();
        client.joinBreakout(room.room_id);
      }, { roomId: String(room.room_id) }));
    }
    card.append(head);
    const ul = document.createElement('ul');
    ul.className = 'breakout-people';
    ul.setAttribute('aria-label', `People in ${room.name}`);
    ul.append(...people(members, key));
    card.append(ul);
    if (waitingCount > 0) {
      const note = document.createElement('p');
      note.className = 'breakout-waiting';
      note.textContent = `${waitingCount} more assigned, not here yet`;
      card.append(note);
    }
    return card;
  }

  /** The people of one room, each with a select to move them (the server moves them at once while open). */
  function people(members, key) {
    const items = (Array.isArray(members) ? members : [])
      .filter((p) => !app.recorders?.has(p.participant_id))
      .map((p) => {
        const li = document.createElement('li');
        li.dataset.participant = p.participant_id;
        const name = document.createElement('span');
        name.className = 'breakout-person-name';
        name.textContent = p.participant_id === app.selfId ? `${p.name} (you)` : p.name;
        const select = document.createElement('select');
        select.className = 'breakout-assign';
        select.dataset.participant = p.participant_id;
        select.setAttribute('aria-label', `Room for ${p.name}`);
        select.append(option(MAIN, MAIN_NAME), ...rooms().map((r) => option(roomKey(r.room_id), r.name)));
        // Before the rooms open, a person's room is the one they are assigned to (the server says which).
        select.value = p.assigned ? roomKey(p.assigned) : key;
        select.onchange = () => {
          requested();
          const chosen = select.value;
          client.assignBreakout(p.participant_id, chosen === MAIN ? null : roomById(chosen)?.room_id ?? chosen);
        };
        li.append(name, select);
        return li;
      });
    if (items.length) return items;
    const empty = document.createElement('li');
    empty.className = 'breakout-empty';
    empty.textContent = 'Nobody';
    return [empty];
  }

  /** Pre-assigned people not present yet, by room: `{user_id: room_id}`, `{room_id: [user_id]}` or `[{room_id}]`. */
  function waitingCounts(assignments) {
    const counts = new Map();
    const add = (roomId, n = 1) => {
      if (roomId === null || roomId === undefined) return;
      const key = roomKey(roomId);
      counts.set(key, (counts.get(key) || 0) + n);
    };
    if (Array.isArray(assignments)) {
      for (const a of assignments) add(a?.room_id);
    } else if (assignments && typeof assignments === 'object') {
      for (const [k, v] of Object.entries(assignments)) {
        if (Array.isArray(v)) add(k, v.length);
        else if (typeof v === 'string' || typeof v === 'number') add(v);
        else if (v && typeof v === 'object') add(v.room_id);
      }
    }
    return counts;
  }

  /** Re-rendering replaces the panel's controls: the one that had the focus gets it back. */
  function focusedControl() {
    const f = document.activeElement;
    if (!f || !$('breakouts').contains(f) || f.id || !f.classList.length) return null;
    return { tag: f.tagName.toLowerCase(), cls: f.classList[0], participant: f.dataset.participant, room: f.dataset.roomId };
  }

  function restoreFocus(f) {
    if (!f) return;
    let selector = `${f.tag}.${CSS.escape(f.cls)}`;
    if (f.participant) selector += `[data-participant="${CSS.escape(f.participant)}"]`;
    if (f.room) selector += `[data-room-id="${CSS.escape(f.room)}"]`;
    $('breakouts').querySelector(selector)?.focus();
  }

  // --- the clock -------------------------------------------------------------------------------------------

  function runTicker() {
    const needed = endsAt !== null || closingUntil !== null;
    if (needed && !ticker) ticker = setInterval(tick, TICK_MS);
    if (!needed && ticker) { clearInterval(ticker); ticker = null; }
  }

  function tick() {
    if (endsAt !== null) {
      const left = secondsUntil(endsAt);
      const countdown = $('breakout-countdown');
      if (countdown.textContent !== clock(left)) countdown.textContent = clock(left);
      countdown.classList.toggle('warning', warning || left <= WARNING_SECS);
    }
    if (closingUntil !== null) {
      const left = secondsUntil(closingUntil);
      const text = `Breakouts are closing, returning to the main room in ${left} s`;
      if ($('breakout-closing').textContent !== text) $('breakout-closing').textContent = text;
      if (Date.now() - closingUntil > CLOSING_GRACE_MS) {
        closingUntil = null;
        // The rooms are closed now, whether or not that news came (unless news came since).
        if (stateVersion === closingVersion) state = { ...state, open: false, ends_at: null };
        clearHelpRequests();
        render();
      }
    }
  }

  // --- notices ---------------------------------------------------------------------------------------------

  function showBroadcast(m) {
    const box = $('breakout-broadcast-notice');
    const from = document.createElement('strong');
    from.className = 'breakout-broadcast-from';
    from.textContent = m.from ? `${m.from} to every room:` : 'To every room:';
    const text = document.createElement('span');
    text.className = 'breakout-broadcast-text';
    text.textContent = m.text ?? '';
    const dismiss = button('✕', 'breakout-broadcast-dismiss secondary', 'Dismiss the message', () => {
      box.hidden = true;
      box.replaceChildren();
    });
    box.replaceChildren(from, ' ', text, dismiss);
    box.hidden = false;
  }

  function addHelpRequest(m) {
    const list = $('breakout-help-requests');
    const roomName = m.room_name || nameOf(roomKey(m.room_id)) || 'a breakout room';
    list.querySelector(`li[data-participant="${CSS.escape(String(m.participant_id))}"]`)?.remove();
    const li = document.createElement('li');
    li.className = 'breakout-help-request breakout-notice';
    li.dataset.participant = m.participant_id;
    li.dataset.roomId = roomKey(m.room_id);
    const text = document.createElement('span');
    text.className = 'breakout-help-text';
    text.textContent = `${m.name || 'Someone'} asks for help in ${roomName}`;
    const visit = button('Visit', 'breakout-help-visit', `Visit ${roomName} to help ${m.name || 'them'}`, () => {
      requested();
      client.joinBreakout(m.room_id);
      li.remove();
    }, { roomId: roomKey(m.room_id) });
    const dismiss = button('✕', 'breakout-help-dismiss secondary', `Dismiss the request of ${m.name || 'someone'}`, () => li.remove());
    li.append(text, visit, dismiss);
    list.append(li);
  }

  function clearHelpRequests() {
    $('breakout-help-requests').replaceChildren();
  }

  function resetHelp() {
    clearTimeout(helpTimer);
    helpTimer = null;
    $('breakout-help').disabled = false;
    $('breakout-help').textContent = 'Ask for help';
  }

  // --- controls --------------------------------------------------------------------------------------------

  $('breakouts-toggle').onclick = () => setPanel($('breakouts').hidden);
  $('breakouts-hide').onclick = () => { setPanel(false); $('breakouts-toggle').focus(); };
  $('breakouts').addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    setPanel(false);
    $('breakouts-toggle').focus();
  });

  function setPanel(open) {
    $('breakouts').hidden = !open;
    $('breakouts-toggle').setAttribute('aria-expanded', String(open));
    if (!open) return;
    renderPanel();
    $('breakouts-heading').setAttribute('tabindex', '-1');
    $('breakouts-heading').focus();
  }

  $('breakout-create').onclick = () => {
    const names = $('breakout-names').value.split('\n').map((line) => line.trim()).filter((line) => line);
    if (names.length) {
      if (names.length > MAX_ROOMS) return showError(`At most ${MAX_ROOMS} rooms.`);
      const long = names.find((n) => [...n].length > MAX_NAME_CHARS);
      if (long) return showError(`Room names are 1 to ${MAX_NAME_CHARS} characters: “${[...long].slice(0, 20).join('')}…” is longer.`);
      requested();
      return client.createBreakouts(names);
    }
    const count = Number($('breakout-count').value);
    if (!Number.isInteger(count) || count < 1 || count > MAX_ROOMS) return showError(`Create 1 to ${MAX_ROOMS} rooms.`);
    requested();
    client.createBreakouts(count);
  };
  $('breakout-random').onclick = () => { requested(); client.assignBreakoutsRandomly(); };
  $('breakout-open').onclick = () => {
    const raw = $('breakout-minutes').value.trim();
    const minutes = raw ? Number(raw) : 0;
    if (!Number.isFinite(minutes) || minutes < 0) return showError('The duration is a number of minutes (or empty: no timer).');
    requested();
    client.openBreakouts({
      durationSecs: minutes > 0 ? Math.max(1, Math.round(minutes * 60)) : null,
      allowReturn: $('breakout-allow-return').checked,
      selfSelect: $('breakout-self-select').checked,
    });
  };
  $('breakout-extend').onclick = () => { requested(); client.extendBreakouts(EXTEND_SECS); };
  $('breakout-close').onclick = () => { requested(); client.closeBreakouts(); };
  $('breakout-broadcast-form').onsubmit = (e) => {
    e.preventDefault();
    const input = $('breakout-broadcast-text');
    const text = input.value.trim();
    if (!text) return;
    if ([...text].length > MAX_BROADCAST_CHARS) return showError(`A message is at most ${MAX_BROADCAST_CHARS} characters.`);
    requested();
    client.broadcastToBreakouts(text);
    input.value = '';
  };
  $('breakout-return').onclick = () => { requested(); client.joinBreakout(MAIN); };

  $('breakout-leave').onclick = () => { requested(); client.joinBreakout(MAIN); };
  $('breakout-go').onclick = () => {
    const key = $('breakout-choose').value;
    if (!key) return;
    if (key === current()) return announce(`You are already in ${app.roomName}.`);
    requested();
    client.joinBreakout(roomById(key)?.room_id ?? key);
  };
  $('breakout-help').onclick = () => {
    requested();
    client.askHelp();
    const help = $('breakout-help');
    help.disabled = true;
    help.textContent = 'Help requested'; // said by the banner's live region
    clearTimeout(helpTimer);
    helpTimer = setTimeout(resetHelp, HELP_COOLDOWN_MS);
  };

  render();
}

/** A room id as the page compares it: `'main'` for the main room (null, absent or "main"), else its text. */
function roomKey(id) {
  return id === null || id === undefined || id === '' || id === MAIN ? MAIN : String(id);
}

/** Where `welcome` puts one (someone joining while rooms are open may go straight to their room). */
function roomOfWelcome(m) {
  const room = m.room && typeof m.room === 'object' ? m.room : null;
  const id = m.room_id ?? room?.room_id ?? (typeof m.room === 'string' ? m.room : null) ?? m.meeting?.room_id ?? null;
  const name = m.room_name ?? room?.room_name ?? room?.name ?? m.meeting?.room_name ?? null;
  return { id, name };
}

function secondsUntil(at) {
  return Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** 75 -> "1:15", 3725 -> "1:02:05". */
function clock(secs) {
  const pad = (n) => String(n).padStart(2, '0');
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

function spoken(secs) {
  if (secs >= 120) return `${Math.round(secs / 60)} minutes`;
  if (secs >= 60) return '1 minute';
  return `${secs} ${secs === 1 ? 'second' : 'seconds'}`;
}

function capitalised(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function option(value, label) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = label;
  return o;
}

function button(text, className, label, run, data = {}) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = className;
  b.textContent = text;
  if (label) b.setAttribute('aria-label', label);
  Object.assign(b.dataset, data);
  if (run) b.onclick = run;
  return b;
}
