// The meeting page's chat panel: messages (to everyone, to the hosts, private), edits and deletes, shared files,
// polls and the chat mode (docs/chat.md). The server decides who may send what and who sees what; the page only
// offers what the user's grants and the chat mode allow. Everything a user wrote (names, messages, file names,
// poll questions and options) goes into the page as text (textContent), never as HTML.

const $ = (id) => document.getElementById(id);

/** Errors arriving this soon after a chat or poll request are taken as its answer (errors name no request). */
const ERROR_WINDOW_MS = 5000;
const POLL_OPTIONS_MIN = 2;
const POLL_OPTIONS_MAX = 10;
const HISTORY_PAGE = 100;
/** `chat.link_ttl_secs`'s default, for a link whose expiry cannot be read. */
const DEFAULT_LINK_TTL_MS = 300_000;

const MODE_NOTES = {
  everyone: null,
  hosts_only: 'Only hosts can write to everyone; your messages go to the hosts.',
  off: 'Chat is off.',
};
const MODE_WORDS = { everyone: 'opened the chat to everyone', hosts_only: 'limited the chat to hosts', off: 'turned chat off' };

/**
 * Wires the chat panel to `client` (its `meetingId` and `token` serve the HTTP calls). Call before `join()`:
 * the history comes right after `welcome`.
 */
export function setupChat(client) {
  const meetingPath = `/meetings/${encodeURIComponent(client.meetingId)}`;
  const auth = () => ({ authorization: `Bearer ${client.token}` });

  /** @type {Map<number, object>} message id -> message, as shown */
  const messages = new Map();
  /** @type {Map<string, object>} poll id -> poll */
  const polls = new Map();
  /** file id -> {url, preview_url, fetchedAt, ttlMs} or a pending Promise */
  const links = new Map();
  let selfId = null;
  let mode = 'everyone';
  let modeBy = null; // who set the chat mode last, while this page was open
  let hasMore = false;
  let unread = 0;
  let lastRequestAt = 0;
  let draft = null; // a sent message's text, given back if the server refuses it
  let pollDraft = null; // the question of a poll sent, to clear the form when it arrives
  let editing = null; // id of the message being edited

  const isHost = () => !!client.grants?.host;
  const mayChat = () => !!client.grants?.chat && mode !== 'off';

  // --- signaling -------------------------------------------------------------------------------------------

  client.addEventListener('welcome', (e) => {
    const m = e.detail;
    selfId = m.participant_id;
    mode = m.meeting?.chat || 'everyone';
    modeBy = null;
    showMode();
    fillRecipients();
  });
  client.addEventListener('chat-history', (e) => {
    const m = e.detail;
    messages.clear();
    editing = null;
    $('chat-messages').replaceChildren();
    for (const message of m.messages || []) put(message);
    setHasMore(!!m.has_more);
    polls.clear();
    $('poll-list').replaceChildren();
    for (const poll of m.polls || []) putPoll(poll);
    scrollToEnd(true);
  });
  client.addEventListener('chat', (e) => {
    const message = e.detail;
    const atEnd = nearEnd();
    const known = messages.has(message.id);
    put(message);
    if (message.mine && draft !== null) draft = null;
    if (!known && !message.mine && $('chat').hidden) setUnread(unread + 1);
    scrollToEnd(atEnd || message.mine);
  });
  client.addEventListener('chat-updated', (e) => {
    const message = e.detail;
    if (!messages.has(message.id)) return; // not on the page (an older page not loaded)
    if (message.deleted) {
      messages.delete(message.id);
      if (editing === message.id) editing = null;
      itemOf(message.id)?.remove();
      return;
    }
    put(message);
  });
  client.addEventListener('chat-mode', (e) => {
    mode = e.detail.mode;
    modeBy = e.detail.by || null;
    showMode();
    fillRecipients();
  });
  client.addEventListener('poll', (e) => {
    const poll = e.detail;
    if (!polls.has(poll.id) && pollDraft !== null && poll.question === pollDraft) {
      pollDraft = null;
      resetPollForm();
    }
    putPoll(poll);
  });
  client.addEventListener('participant-joined', () => fillRecipients());
  client.addEventListener('participant-left', () => fillRecipients());
  // Chat is per breakout room: the people one may write to are those of the new room (its history follows).
  client.addEventListener('room-changed', () => fillRecipients());
  client.addEventListener('role-changed', (e) => {
    fillRecipients();
    if (e.detail.participant_id === selfId) {
      showMode();
      rerender();
    }
  });
  client.addEventListener('error', (e) => {
    if (performance.now() - lastRequestAt > ERROR_WINDOW_MS) return;
    showError(e.detail.message || e.detail.code);
    if (draft !== null && !$('chat-input').value) $('chat-input').value = draft;
    draft = null;
  });

  // --- the panel -------------------------------------------------------------------------------------------

  $('chat-toggle').onclick = () => setOpen($('chat').hidden);
  $('chat-close').onclick = () => { setOpen(false); $('chat-toggle').focus(); };

  function setOpen(open) {
    $('chat').hidden = !open;
    $('chat-toggle').setAttribute('aria-expanded', String(open));
    if (open) {
      setUnread(0);
      scrollToEnd(true);
      if (!$('chat-input').disabled) $('chat-input').focus();
    }
  }

  function setUnread(n) {
    unread = n;
    $('chat-unread').textContent = String(n);
    $('chat-unread').hidden = n === 0;
    $('chat-toggle').setAttribute('aria-label', n ? `Chat, ${n} unread` : 'Chat');
  }

  function nearEnd() {
    const list = $('chat-messages');
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }

  function scrollToEnd(really) {
    if (!really) return;
    const list = $('chat-messages');
    list.scrollTop = list.scrollHeight;
  }

  function showError(text) {
    $('chat-error').textContent = text || '';
    $('chat-error').hidden = !text;
  }

  /** A request the server may refuse: its error, if one comes soon, is shown in the panel. */
  function requested() {
    lastRequestAt = performance.now();
    showError(null);
  }

  // --- compose ---------------------------------------------------------------------------------------------

  $('chat-compose').onsubmit = (e) => {
    e.preventDefault();
    send();
  };
  $('chat-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });

  function send() {
    const input = $('chat-input');
    const body = input.value;
    if (!body.trim() || input.disabled) return;
    requested();
    draft = body;
    client.sendChat(body, $('chat-to').value || null);
    input.value = '';
  }

  /** The recipients this user may choose: everyone, the hosts, each other participant (not the recorder). */
  function fillRecipients() {
    const select = $('chat-to');
    const kept = select.value;
    const option = (value, label) => {
      const o = document.createElement('option');
      o.value = value;
      o.textContent = label;
      return o;
    };
    const options = [];
    const hostsOnly = mode === 'hosts_only' && !isHost();
    if (!hostsOnly) options.push(option('', 'Everyone'));
    options.push(option('hosts', 'Hosts'));
    if (!hostsOnly) {
      for (const p of client.participants.values()) {
        if (p.participant_id === selfId || p.role === 'recorder') continue;
        options.push(option(p.participant_id, p.name));
      }
    }
    select.replaceChildren(...options);
    select.value = options.some((o) => o.value === kept) ? kept : options[0].value;
    showCompose();
  }

  function showCompose() {
    const can = mayChat();
    for (const id of ['chat-input', 'chat-send', 'chat-attach', 'chat-to', 'chat-file']) $(id).disabled = !can;
    const notes = [];
    if (client.grants && modeBy) notes.push(`${modeBy} ${MODE_WORDS[mode] || `set the chat to ${mode}`}.`);
    if (!client.grants) {
      // not in the meeting yet
    } else if (!client.grants.chat) notes.push('A host turned off chat for you.');
    else if (mode === 'off') { if (!modeBy) notes.push(MODE_NOTES.off); }
    else if (mode === 'hosts_only' && !isHost()) notes.push(MODE_NOTES.hosts_only);
    $('chat-note').textContent = notes.join(' ');
    $('chat-note').hidden = notes.length === 0;
  }

  function showMode() {
    $('chat-mode-field').hidden = !isHost();
    $('chat-mode').value = mode;
    $('poll-new').hidden = !isHost();
    if (!isHost()) { $('poll-form').hidden = true; $('poll-new').setAttribute('aria-expanded', 'false'); }
    showCompose();
  }

  $('chat-mode').onchange = () => {
    requested();
    client.setChatMode($('chat-mode').value);
    $('chat-mode').value = mode; // until the server says it changed
  };

  // --- messages --------------------------------------------------------------------------------------------

  function itemOf(id) {
    return $('chat-messages').querySelector(`li.chat-message[data-id="${CSS.escape(String(id))}"]`);
  }

  /** Shows a message: in place if it is on the page, else where its id puts it (ids grow with time). */
  function put(message) {
    messages.set(message.id, message);
    const li = render(message);
    const old = itemOf(message.id);
    if (old) return old.replaceWith(li);
    const list = $('chat-messages');
    const after = [...list.children].find((c) => Number(c.dataset.id) > Number(message.id));
    list.insertBefore(li, after || null);
  }

  /** After one's role changed: who may delete and close polls. */
  function rerender() {
    for (const message of messages.values()) itemOf(message.id)?.replaceWith(render(message));
    for (const poll of polls.values()) putPoll(poll);
  }

  function render(m) {
    const li = document.createElement('li');
    li.className = 'chat-message';
    li.dataset.id = String(m.id);
    if (m.mine) li.classList.add('mine');
    if (m.to && m.to !== 'everyone') li.classList.add(m.to === 'hosts' ? 'to-hosts' : 'private');

    const head = document.createElement('div');
    head.className = 'chat-head-line';
    const from = document.createElement('span');
    from.className = 'chat-from';
    from.append(document.createTextNode(m.from_name || '?'));
    if (m.from_role === 'host' || m.from_role === 'co_host') {
      const role = document.createElement('span');
      role.className = 'chat-role';
      role.textContent = m.from_role === 'host' ? 'host' : 'co-host';
      from.append(' ', role);
    }
    const time = document.createElement('time');
    time.className = 'chat-time';
    const sent = new Date(m.sent_at);
    if (!Number.isNaN(sent.getTime())) {
      time.dateTime = m.sent_at;
      time.textContent = hhmm(sent);
      time.title = sent.toLocaleString();
    }
    head.append(from, time);
    if (m.to === 'hosts' || m.to === 'participant') {
      const to = document.createElement('span');
      to.className = 'chat-to';
      to.textContent = m.to === 'hosts' ? 'to hosts' : `to ${m.to_name || m.to_participant_id} (private)`;
      head.append(to);
    }
    if (m.edited_at) {
      const edited = document.createElement('span');
      edited.className = 'chat-edited';
      edited.textContent = '(edited)';
      head.append(edited);
    }
    li.append(head);

    if (editing === m.id) {
      li.append(editor(m));
    } else {
      const body = document.createElement('div');
      body.className = 'chat-body';
      body.textContent = m.body ?? '';
      // A file's message says its name, which the link below shows already.
      if (m.file && m.body === m.file.name) body.hidden = true;
      li.append(body);
    }
    if (m.file) li.append(attachment(m.file));

    const actions = document.createElement('div');
    actions.className = 'chat-message-actions';
    if (m.mine && editing !== m.id) {
      actions.append(button('Edit', 'chat-edit secondary', 'Edit your message', () => {
        const before = editing;
        editing = m.id;
        if (before !== null && messages.has(before)) put(messages.get(before));
        put(m);
        itemOf(m.id)?.querySelector('textarea')?.focus();
      }));
    }
    if (m.mine || isHost()) {
      const label = m.mine ? 'Delete your message' : `Delete the message from ${m.from_name}`;
      actions.append(button('Delete', 'chat-delete secondary', label, () => { requested(); client.deleteChat(m.id); }));
    }
    if (actions.childElementCount) li.append(actions);
    return li;
  }

  /** Editing one's message in place: Enter (or Save) sends `chat_edit`, Escape (or Cancel) gives up. */
  function editor(m) {
    const form = document.createElement('form');
    form.className = 'chat-editor';
    const text = document.createElement('textarea');
    text.className = 'chat-edit-input';
    text.rows = 2;
    text.value = m.body ?? '';
    text.setAttribute('aria-label', 'Edit your message');
    const stop = () => { editing = null; const now = messages.get(m.id); if (now) put(now); };
    const save = () => {
      const body = text.value;
      if (!body.trim()) return;
      if (body !== m.body) { requested(); client.editChat(m.id, body); }
      stop();
    };
    text.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); save(); }
      if (e.key === 'Escape') { e.preventDefault(); stop(); }
    });
    form.onsubmit = (e) => { e.preventDefault(); save(); };
    const ok = button('Save', 'chat-save', 'Save your edit', null);
    ok.type = 'submit';
    form.append(text, ok, button('Cancel', 'chat-cancel secondary', 'Cancel the edit', stop));
    return form;
  }

  function button(text, className, label, run) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = className;
    b.textContent = text;
    if (label) b.setAttribute('aria-label', label);
    if (run) b.onclick = run;
    return b;
  }

  // --- older pages -----------------------------------------------------------------------------------------

  function setHasMore(more) {
    hasMore = more;
    $('chat-more').hidden = !hasMore;
  }

  $('chat-more').onclick = async () => {
    const oldest = Math.min(...[...messages.keys()].map(Number));
    if (!Number.isFinite(oldest)) return setHasMore(false);
    $('chat-more').disabled = true;
    showError(null);
    try {
      const response = await fetch(`${meetingPath}/chat?before=${encodeURIComponent(oldest)}&limit=${HISTORY_PAGE}`, { headers: auth() });
      const reply = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(reply.error?.message || `the server said ${response.status}`);
      const list = $('chat-messages');
      const fromEnd = list.scrollHeight - list.scrollTop;
      for (const message of reply.messages || []) if (!messages.has(message.id)) put(message);
      list.scrollTop = list.scrollHeight - fromEnd; // the reader stays where they were
      setHasMore(!!reply.has_more);
    } catch (e) {
      showError(`Could not load earlier messages: ${e.message}`);
    } finally {
      $('chat-more').disabled = false;
    }
  };

  // --- files -----------------------------------------------------------------------------------------------

  $('chat-attach').onclick = () => $('chat-file').click();
  $('chat-file').onchange = () => {
    const file = $('chat-file').files?.[0];
    if (file) upload(file);
  };

  /** Sends the file as the raw body; the server posts its message (which also comes over signaling). */
  function upload(file) {
    showError(null);
    const to = $('chat-to').value;
    const query = `name=${encodeURIComponent(file.name)}${to ? `&to=${encodeURIComponent(to)}` : ''}`;
    const xhr = new XMLHttpRequest();
    const progress = $('chat-progress');
    const done = () => {
      progress.hidden = true;
      $('chat-attach').disabled = !mayChat();
      $('chat-file').value = '';
    };
    xhr.open('POST', `${meetingPath}/files?${query}`);
    xhr.setRequestHeader('authorization', `Bearer ${client.token}`);
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return progress.removeAttribute('value');
      progress.max = e.total;
      progress.value = e.loaded;
    };
    xhr.onload = () => {
      done();
      let reply = {};
      try { reply = JSON.parse(xhr.responseText); } catch { /* not JSON: say the status */ }
      if (xhr.status >= 200 && xhr.status < 300) {
        if (reply.message && !messages.has(reply.message.id)) {
          put(reply.message);
          scrollToEnd(true);
        }
        return;
      }
      const fallback = xhr.status === 413 ? 'the file is too large' : `the server said ${xhr.status}`;
      showError(`Could not share ${file.name}: ${reply.error?.message || fallback}`);
    };
    xhr.onerror = () => { done(); showError(`Could not share ${file.name}: the upload failed.`); };
    xhr.onabort = () => done();
    progress.value = 0;
    progress.max = file.size || 1;
    progress.hidden = false;
    $('chat-attach').disabled = true;
    xhr.send(file);
  }

  /** A shared file: its name and size, a link fetched now (and again when half its life is over), a preview. */
  function attachment(file) {
    const box = document.createElement('div');
    box.className = 'chat-attachment';
    const a = document.createElement('a');
    a.className = 'chat-file';
    a.dataset.fileId = file.id;
    a.textContent = file.name;
    a.rel = 'noopener noreferrer';
    const size = document.createElement('span');
    size.className = 'chat-file-size';
    size.textContent = `(${formatSize(file.size)})`;
    box.append(a, ' ', size);
    let img = null;
    if (file.preview) {
      img = document.createElement('img');
      img.className = 'chat-preview';
      img.alt = `Preview of ${file.name}`;
      // A link that expired before the image loaded: once more with a fresh one.
      let retried = false;
      img.addEventListener('error', () => {
        if (retried) return;
        retried = true;
        linkFor(file.id, true).then((fresh) => { if (fresh.preview_url) img.src = fresh.preview_url; }, () => {});
      });
      box.append(img);
    }
    const apply = (link) => {
      a.href = link.url;
      a.setAttribute('download', file.name);
      if (img && link.preview_url && !img.getAttribute('src')) img.src = link.preview_url;
    };
    linkFor(file.id).then(apply, () => a.classList.add('unavailable'));
    let refreshed = false; // the click that follows a refresh goes through
    a.addEventListener('click', (e) => {
      const link = links.get(file.id);
      if (refreshed || (a.getAttribute('href') && link && !(link instanceof Promise) && !stale(link))) {
        refreshed = false;
        return;
      }
      e.preventDefault();
      linkFor(file.id, true).then((fresh) => { apply(fresh); refreshed = true; a.click(); }, (err) => {
        a.classList.add('unavailable');
        showError(`Could not open ${file.name}: ${err.message}`);
      });
    });
    return box;
  }

  function stale(link) {
    return Date.now() - link.fetchedAt > link.ttlMs / 2;
  }

  /** The signed link of a file, shared by every message showing it; `fresh` fetches it again if it is stale. */
  function linkFor(fileId, fresh = false) {
    const known = links.get(fileId);
    if (known instanceof Promise) return known;
    if (known && !(fresh && stale(known))) return Promise.resolve(known);
    const pending = fetch(`${meetingPath}/files/${encodeURIComponent(fileId)}/link`, { headers: auth() })
      .then(async (response) => {
        const reply = await response.json().catch(() => ({}));
        if (!response.ok) throw new Error(reply.error?.message || `the server said ${response.status}`);
        if (typeof reply.url !== 'string') throw new Error('the server gave no link');
        const fetchedAt = Date.now();
        const expires = Date.parse(reply.expires_at);
        const ttlMs = Number.isFinite(expires) ? Math.max(0, expires - fetchedAt) : DEFAULT_LINK_TTL_MS;
        const link = { url: reply.url, preview_url: reply.preview_url || null, fetchedAt, ttlMs };
        links.set(fileId, link);
        return link;
      })
      .catch((e) => { links.delete(fileId); throw e; });
    links.set(fileId, pending);
    return pending;
  }

  // --- polls -----------------------------------------------------------------------------------------------

  function putPoll(poll) {
    polls.set(poll.id, poll);
    const card = renderPoll(poll);
    const old = $('poll-list').querySelector(`div.poll[data-id="${CSS.escape(String(poll.id))}"]`);
    if (old) old.replaceWith(card);
    else $('poll-list').append(card);
  }

  function renderPoll(poll) {
    const card = document.createElement('div');
    card.className = 'poll';
    card.dataset.id = poll.id;
    if (poll.closed) card.classList.add('closed');
    const question = document.createElement('p');
    question.className = 'poll-question';
    question.textContent = poll.question;
    const meta = document.createElement('p');
    meta.className = 'poll-meta';
    const words = [`by ${poll.created_by}`];
    if (poll.anonymous) words.push('anonymous');
    if (poll.results === 'hosts' && !poll.closed) words.push('results shown when closed');
    meta.textContent = words.join(' · ');
    card.append(question, meta);

    const counts = Array.isArray(poll.counts) ? poll.counts : null;
    const most = counts ? Math.max(1, ...counts) : 1;
    const options = document.createElement('div');
    options.className = 'poll-options';
    poll.options.forEach((text, i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'poll-option secondary';
      b.dataset.index = String(i);
      const mine = poll.my_vote === i;
      b.setAttribute('aria-pressed', String(mine));
      if (mine) b.classList.add('mine');
      b.disabled = !!poll.closed;
      const label = document.createElement('span');
      label.className = 'poll-label';
      label.textContent = text;
      b.append(label);
      let spoken = text;
      if (counts) {
        const count = document.createElement('span');
        count.className = 'poll-count';
        count.textContent = String(counts[i] ?? 0);
        const bar = document.createElement('span');
        bar.className = 'poll-bar';
        bar.style.width = `${Math.round((100 * (counts[i] ?? 0)) / most)}%`;
        b.append(count, bar);
        spoken += `, ${counts[i] ?? 0} ${counts[i] === 1 ? 'vote' : 'votes'}`;
      }
      if (mine) spoken += ', your vote';
      b.setAttribute('aria-label', spoken);
      b.onclick = () => {
        if (poll.closed || poll.my_vote === i) return;
        requested();
        client.votePoll(poll.id, i);
      };
      options.append(b);
      const names = poll.voted_by?.[i];
      if (names?.length) {
        const who = document.createElement('p');
        who.className = 'poll-voted-by';
        who.textContent = names.join(', ');
        options.append(who);
      }
    });
    card.append(options);

    const foot = document.createElement('p');
    foot.className = 'poll-foot';
    const total = document.createElement('span');
    total.className = 'poll-voters';
    total.textContent = `${poll.voters} ${poll.voters === 1 ? 'voter' : 'voters'}`;
    foot.append(total);
    if (poll.closed) {
      const state = document.createElement('span');
      state.className = 'poll-state';
      state.textContent = 'closed';
      foot.append(' · ', state);
    }
    card.append(foot);
    if (isHost() && !poll.closed) {
      card.append(button('Close poll', 'poll-close secondary', `Close the poll: ${poll.question}`, () => {
        requested();
        client.closePoll(poll.id);
      }));
    }
    return card;
  }

  // The host's form: a question, 2 to 10 options, anonymous or not, who sees the results.
  $('poll-new').onclick = () => {
    const open = $('poll-form').hidden;
    $('poll-form').hidden = !open;
    $('poll-new').setAttribute('aria-expanded', String(open));
    if (open) $('poll-question').focus();
  };
  $('poll-add-option').onclick = () => { addPollOption(); pollOptionInputs().at(-1)?.focus(); };
  $('poll-form').onsubmit = (e) => {
    e.preventDefault();
    const question = $('poll-question').value.trim();
    const options = pollOptionInputs().map((i) => i.value.trim()).filter((v) => v);
    if (!question) return showError('A poll needs a question.');
    if (options.length < POLL_OPTIONS_MIN) return showError(`A poll needs at least ${POLL_OPTIONS_MIN} options.`);
    requested();
    pollDraft = question;
    client.createPoll({ question, options, anonymous: $('poll-anonymous').checked, results: $('poll-results').value });
  };

  function pollOptionInputs() {
    return [...$('poll-options').querySelectorAll('input.poll-option-input')];
  }

  function addPollOption() {
    if (pollOptionInputs().length >= POLL_OPTIONS_MAX) return;
    const row = document.createElement('div');
    row.className = 'poll-option-row';
    const input = document.createElement('input');
    input.className = 'poll-option-input';
    input.maxLength = 200;
    input.autocomplete = 'off';
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'poll-option-remove secondary';
    remove.textContent = '✕';
    remove.onclick = () => { row.remove(); numberPollOptions(); };
    row.append(input, remove);
    $('poll-options').append(row);
    numberPollOptions();
  }

  function numberPollOptions() {
    const inputs = pollOptionInputs();
    inputs.forEach((input, i) => {
      input.setAttribute('aria-label', `Option ${i + 1}`);
      input.placeholder = `Option ${i + 1}`;
      const remove = input.nextElementSibling;
      remove.setAttribute('aria-label', `Remove option ${i + 1}`);
      remove.disabled = inputs.length <= POLL_OPTIONS_MIN;
    });
    $('poll-add-option').disabled = inputs.length >= POLL_OPTIONS_MAX;
  }

  function resetPollForm() {
    $('poll-question').value = '';
    $('poll-anonymous').checked = false;
    $('poll-results').value = 'live';
    for (const input of pollOptionInputs()) input.parentElement.remove();
    for (let i = 0; i < POLL_OPTIONS_MIN; i++) addPollOption();
  }

  resetPollForm();
  setUnread(0);
  fillRecipients();
}

function hhmm(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function formatSize(bytes) {
  if (!Number.isFinite(bytes)) return '?';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}
