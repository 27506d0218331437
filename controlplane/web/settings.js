// In-meeting settings: switch camera, microphone and speaker without rejoining. A new device's track replaces the
// old one in its sender (RTCRtpSender.replaceTrack): the same peer connection, nothing renegotiated, the others
// keep receiving. Also the keyboard shortcuts, listed in the same dialog, and what to say when a device is lost.

const $ = (id) => document.getElementById(id);

/** Keys (outside text fields, without modifiers) and the button each presses. */
const SHORTCUTS = [
  ['m', 'mic', 'Mute or unmute the microphone'],
  ['v', 'cam', 'Stop or start the camera'],
  ['h', 'hand', 'Raise or lower your hand'],
  ['p', 'people-toggle', 'Show or hide the people'],
  ['c', 'chat-toggle', 'Show or hide the chat'],
  [',', 'settings-toggle', 'Open the settings'],
];

/**
 * @param {import('./sluice-client.js').SluiceClient} client
 * @param {object} ui {app, announce(text), localStream(): MediaStream, showSelf(stream)}
 */
export function setupSettings(client, ui) {
  const dialog = $('settings');
  $('settings-shortcuts').replaceChildren(...SHORTCUTS.map(([key, , what]) => {
    const row = document.createElement('li');
    const k = document.createElement('kbd');
    k.textContent = key.toUpperCase();
    row.append(k, ` ${what}`);
    return row;
  }));
  // Where the browser cannot pick an output device, the field would do nothing.
  $('settings-speaker-field').hidden = !('setSinkId' in HTMLMediaElement.prototype);

  $('settings-toggle').onclick = async () => {
    await fill();
    dialog.showModal();
  };

  async function fill() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const stream = ui.localStream();
    const current = {
      videoinput: stream?.getVideoTracks()[0]?.getSettings().deviceId,
      audioinput: stream?.getAudioTracks()[0]?.getSettings().deviceId,
      audiooutput: ui.app.speakerId || 'default',
    };
    for (const [kind, select] of [['videoinput', 'settings-camera'], ['audioinput', 'settings-mic'], ['audiooutput', 'settings-speaker']]) {
      const options = devices.filter((d) => d.kind === kind).map((d, i) => new Option(d.label || `${kind} ${i + 1}`, d.deviceId));
      $(select).replaceChildren(...options);
      if (current[kind]) $(select).value = current[kind];
    }
  }

  async function switchTo(kind, deviceId) {
    const source = kind === 'video' ? 'camera' : 'microphone';
    let track;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ [kind]: { deviceId: { exact: deviceId } } });
      track = stream.getTracks()[0];
    } catch (e) {
      ui.announce(`Could not use that ${kind === 'video' ? 'camera' : 'microphone'}: ${e.message || e.name}`, 8000);
      return;
    }
    const stream = ui.localStream();
    for (const old of kind === 'video' ? stream.getVideoTracks() : stream.getAudioTracks()) stream.removeTrack(old);
    stream.addTrack(track);
    watch(track, source);
    await client.replaceTrack(source, track);
    if (kind === 'video') ui.showSelf(stream);
    ui.app.deviceSwitches = (ui.app.deviceSwitches || 0) + 1;
    ui.announce(`Now using ${track.label || 'the new device'}`);
  }

  $('settings-camera').onchange = () => switchTo('video', $('settings-camera').value);
  $('settings-mic').onchange = () => switchTo('audio', $('settings-mic').value);
  $('settings-speaker').onchange = async () => {
    ui.app.speakerId = $('settings-speaker').value;
    for (const audio of document.querySelectorAll('audio')) await audio.setSinkId?.(ui.app.speakerId).catch(() => {});
  };

  // A device unplugged or taken by another application ends its track: say so, and where to pick another.
  function watch(track, source) {
    track.addEventListener('ended', () => {
      if (client.local[source] !== track) return;
      ui.announce(`Your ${source === 'camera' ? 'camera' : 'microphone'} stopped. Choose another in Settings.`, 10000);
    });
  }
  for (const track of ui.localStream()?.getTracks() || []) watch(track, track.kind === 'video' ? 'camera' : 'microphone');

  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    if (e.target.closest?.('input, textarea, select, [contenteditable], dialog')) return;
    const shortcut = SHORTCUTS.find(([key]) => key === e.key.toLowerCase());
    const button = shortcut && $(shortcut[1]);
    if (!button || button.hidden || button.disabled || $('meeting').hidden) return;
    e.preventDefault();
    button.click();
  });
}
