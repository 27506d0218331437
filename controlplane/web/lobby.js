// The lobby's microphone level meter: how loud the microphone is before joining, so a person sees that it works
// (and that the right one is chosen) before anyone hears them.

/**
 * Drives `element` (a <meter>, 0 to 1) from `stream`'s microphone: the loudest sample of each 50 ms, held and
 * decaying; 0 while the track is disabled. `onLevel` gets each value. Returns { stop }.
 */
export function levelMeter(stream, element, onLevel = () => {}) {
  const track = stream.getAudioTracks()[0];
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!track || !Context) return { stop: () => {} };
  const context = new Context();
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let shown = 0;
  let running = true;
  const tick = () => {
    if (!running) return;
    analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    for (const v of samples) peak = Math.max(peak, Math.abs(v));
    shown = Math.max(peak, shown * 0.9);
    element.value = track.enabled ? Math.min(1, shown) : 0;
    onLevel(element.value);
    setTimeout(tick, 50);
  };
  tick();
  return { stop: () => { running = false; context.close().catch(() => {}); } };
}
