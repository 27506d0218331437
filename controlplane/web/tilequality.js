// Connection quality per tile: a person whose video reaches this page badly (lost or repaired packets, freezes,
// a stalled picture) gets a "weak connection" mark on their tile, so nobody has to guess why a face is frozen.
// Only when it is poor: a good connection shows nothing. Read from this page's own receive statistics every 2 s.
// And when the server pauses a video because this page's connection cannot carry even its lowest layer
// (`layer_changed` with no layer), the tile says so until the video comes back.

/** Repair requests (NACKs) per 100 packets received, and lost packets per 100, above which a stream is weak. */
const NACKS_PER_100_MAX = 3;
const LOST_PER_100_MAX = 3;
/** A picture that decodes fewer frames a second than this while its camera is on is weak too. */
const FPS_MIN = 5;

export function setupTileQuality(client, { tileOfTrack, tileOfServerTrack }) {
  const previous = new Map(); // trackIdentifier -> { received, lost, nacks, freezes, frames, at }

  async function sample() {
    if (!client.pc) return;
    const report = await client.pc.getStats();
    const now = performance.now();
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'video' || !s.trackIdentifier) return;
      const tile = tileOfTrack(s.trackIdentifier);
      const current = {
        received: s.packetsReceived || 0, lost: s.packetsLost || 0, nacks: s.nackCount || 0,
        freezes: s.freezeCount || 0, frames: s.framesDecoded || 0, at: now,
      };
      const before = previous.get(s.trackIdentifier);
      previous.set(s.trackIdentifier, current);
      if (!tile || !before) return;
      const received = current.received - before.received;
      const seconds = (now - before.at) / 1000;
      const fps = seconds > 0 ? (current.frames - before.frames) / seconds : 0;
      const off = tile.classList.contains('camera-off');
      // Nothing arriving is a paused or stopped camera (its own notices say so), not a weak connection.
      const weak = !off && received > 0 && (
        (100 * (current.nacks - before.nacks)) / received > NACKS_PER_100_MAX
        || (100 * (current.lost - before.lost)) / (received + current.lost - before.lost) > LOST_PER_100_MAX
        || current.freezes > before.freezes
        // A shared screen sends few frames while nothing on it moves.
        || (fps < FPS_MIN && tile.dataset.source !== 'screen')
      );
      mark(tile, weak);
    });
  }

  function mark(tile, weak) {
    tile.classList.toggle('weak', weak);
    badge(tile, 'weak-badge', 'weak connection', weak);
  }

  client.addEventListener('layer-changed', (e) => {
    const tile = tileOfServerTrack(e.detail.track_id);
    if (!tile) return;
    const paused = e.detail.layer === null;
    tile.classList.toggle('bandwidth-paused', paused);
    badge(tile, 'paused-badge', 'video paused: slow connection', paused);
  });

  setInterval(() => sample().catch(() => {}), 2000);
  return { sample };
}

/** Shows (or removes) a short text mark of class `className` after the name on a tile's label. */
function badge(tile, className, text, on) {
  const label = tile.querySelector('.label');
  const existing = label?.querySelector(`.${className}`);
  if (on && label && !existing) {
    const span = document.createElement('span');
    span.className = className;
    span.textContent = text;
    label.append(span);
  } else if (!on) {
    existing?.remove();
  }
}
