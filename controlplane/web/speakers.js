// Who is talking: the loudest remote audio, from the browser's own measure of what it plays (`audioLevel` of
// each inbound audio stream in getStats()), marks that person's tile and their row in the people list. Levels
// are held for a moment so a pause between words does not move the highlight, and a floor keeps background
// noise from lighting anyone up.

/** Below this (0..1, as getStats reports), nobody is talking. */
const FLOOR = 0.02;
/** How long a level counts after it was heard. */
const HOLD_MS = 1500;
const POLL_MS = 300;

/** @param {object} ui {tileOf(participantId), app} */
export function setupActiveSpeaker(client, ui) {
  const heard = new Map(); // participant id -> [level, when]
  setInterval(async () => {
    const pc = client.pc;
    if (!pc) return;
    const report = await pc.getStats();
    const now = performance.now();
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'audio' || s.mid === undefined) return;
      const section = client.sections.get(s.mid);
      const level = s.audioLevel || 0;
      if (!section?.participant_id || level < FLOOR) return;
      // A held peak that decays while they keep talking more quietly, and goes once they stop.
      const [previous] = heard.get(section.participant_id) || [0];
      heard.set(section.participant_id, [Math.max(level, previous * 0.7), now]);
    });
    let speaker = null;
    let loudest = FLOOR;
    for (const [id, [level, when]] of heard) {
      if (now - when > HOLD_MS) heard.delete(id);
      else if (level >= loudest) [speaker, loudest] = [id, level];
    }
    if (speaker === ui.app.activeSpeaker) return;
    ui.app.activeSpeaker = speaker;
    for (const el of document.querySelectorAll('.speaking')) el.classList.remove('speaking');
    if (!speaker) return;
    ui.tileOf(speaker)?.classList.add('speaking');
    document.querySelector(`#people-list li[data-participant="${CSS.escape(speaker)}"]`)?.classList.add('speaking');
  }, POLL_MS);
}
