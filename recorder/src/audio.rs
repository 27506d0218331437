//! A voice track's audio for transcription: decoded by ffmpeg to 48 kHz mono, noise-suppressed with RNNoise
//! (`nnnoiseless`), brought to 16 kHz and cut into utterances where the speaker pauses.

use std::path::Path;

use nnnoiseless::DenoiseState;

pub const RATE_IN: u32 = 48_000;
pub const RATE_OUT: u32 = 16_000;
/// Voice-activity frames of 30 ms at 16 kHz.
const VAD_FRAME: usize = 480;
/// A pause this long ends an utterance.
const PAUSE_FRAMES: usize = 12;
/// Utterances shorter than this are clicks and breaths.
const UTTERANCE_MIN_FRAMES: usize = 8;
/// Longer utterances are cut (the recogniser and the cue both want sentences, not minutes).
const UTTERANCE_MAX_FRAMES: usize = 500;
/// Quiet kept around an utterance for the recogniser, at 16 kHz: the energy detector starts a span at the first
/// loud frame and so clips soft onsets ("g", "p", "h"), and a recogniser normalises against the silence it hears
/// first.
const RECOGNISER_MARGIN: usize = 4_000;

/// Decodes `file` to 48 kHz mono samples in the 16-bit range (what RNNoise expects).
pub async fn decode(ffmpeg: &Path, file: &Path) -> Result<Vec<f32>, String> {
    let out = tokio::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-i"])
        .arg(file)
        // Gaps in the track's timestamps (lost packets, a pause in sending) become silence, so times in the
        // decoded audio are times in the recording and cues land where the words were said.
        .args(["-af", "aresample=async=1", "-ac", "1", "-ar", "48000", "-f", "s16le", "-"])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run ffmpeg to decode {}: {e}", file.display()))?;
    if !out.status.success() {
        return Err(format!("ffmpeg could not decode {}: {}", file.display(), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(out.stdout.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]]))).collect())
}

/// RNNoise over the whole track, frame by frame.
pub fn denoise(samples: &[f32]) -> Vec<f32> {
    let mut state = DenoiseState::new();
    let mut out = Vec::with_capacity(samples.len());
    let mut frame_out = [0f32; DenoiseState::FRAME_SIZE];
    let mut frame_in = [0f32; DenoiseState::FRAME_SIZE];
    for chunk in samples.chunks(DenoiseState::FRAME_SIZE) {
        frame_in[..chunk.len()].copy_from_slice(chunk);
        frame_in[chunk.len()..].fill(0.0);
        state.process_frame(&mut frame_out, &frame_in);
        out.extend_from_slice(&frame_out[..chunk.len()]);
    }
    out
}

/// 48 kHz to 16 kHz: a windowed-sinc low-pass at 7 kHz, then every third sample.
pub fn downsample(samples: &[f32]) -> Vec<i16> {
    const TAPS: usize = 47;
    let cutoff = 7_000.0 / RATE_IN as f32;
    let mid = (TAPS / 2) as f32;
    let mut kernel: Vec<f32> = (0..TAPS)
        .map(|i| {
            let x = i as f32 - mid;
            let sinc = if x == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * std::f32::consts::PI * cutoff * x).sin() / (std::f32::consts::PI * x)
            };
            let window = 0.54 - 0.46 * (2.0 * std::f32::consts::PI * i as f32 / (TAPS - 1) as f32).cos();
            sinc * window
        })
        .collect();
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    (0..samples.len() / 3)
        .map(|o| {
            let centre = o * 3;
            let acc: f32 = kernel
                .iter()
                .enumerate()
                .filter_map(|(k, w)| samples.get((centre + k).checked_sub(TAPS / 2)?).map(|s| s * w))
                .sum();
            acc.clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// Where someone speaks: `(start, end)` sample ranges at 16 kHz. Energy against an adaptive noise floor, with a
/// pause to end an utterance and bounds on its length.
pub fn utterances(samples: &[i16]) -> Vec<(usize, usize)> {
    let energies: Vec<f32> = samples
        .chunks(VAD_FRAME)
        .map(|c| (c.iter().map(|s| f32::from(*s).powi(2)).sum::<f32>() / c.len() as f32).sqrt())
        .collect();
    let mut sorted = energies.clone();
    sorted.sort_by(f32::total_cmp);
    // The quietest tenth is the floor; speech is well above it and above an absolute minimum.
    let floor = sorted.get(sorted.len() / 10).copied().unwrap_or(0.0);
    let threshold = (floor * 4.0).max(300.0);
    let mut out = Vec::new();
    let (mut start, mut quiet) = (None::<usize>, 0usize);
    for (i, e) in energies.iter().enumerate() {
        let loud = *e > threshold;
        match start {
            None if loud => (start, quiet) = (Some(i), 0),
            None => {}
            Some(s) => {
                quiet = if loud { 0 } else { quiet + 1 };
                if quiet >= PAUSE_FRAMES || i + 1 - s >= UTTERANCE_MAX_FRAMES {
                    let end = i + 1 - quiet;
                    if end - s >= UTTERANCE_MIN_FRAMES {
                        out.push((s * VAD_FRAME, (end * VAD_FRAME).min(samples.len())));
                    }
                    start = None;
                }
            }
        }
    }
    if let Some(s) = start {
        let end = energies.len() - quiet;
        if end - s >= UTTERANCE_MIN_FRAMES {
            out.push((s * VAD_FRAME, samples.len().min(end * VAD_FRAME)));
        }
    }
    out
}

/// `spans` widened by [`RECOGNISER_MARGIN`] on each side, within `0..len` and never past the middle of the
/// pause before the next span: what the recogniser hears of each utterance.
pub fn with_margin(spans: &[(usize, usize)], len: usize) -> Vec<(usize, usize)> {
    spans
        .iter()
        .enumerate()
        .map(|(i, &(start, end))| {
            let floor = if i == 0 { 0 } else { (spans[i - 1].1 + start) / 2 };
            let ceiling = spans.get(i + 1).map_or(len, |next| (end + next.0) / 2);
            (start.saturating_sub(RECOGNISER_MARGIN).max(floor), (end + RECOGNISER_MARGIN).min(ceiling).max(end))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, rate: u32, secs: f32, amplitude: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| amplitude * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn downsampling_keeps_speech_and_removes_what_16k_cannot_hold() {
        let low = downsample(&tone(1_000.0, RATE_IN, 0.5, 10_000.0));
        let high = downsample(&tone(12_000.0, RATE_IN, 0.5, 10_000.0));
        assert_eq!(low.len(), 8_000);
        let rms = |v: &[i16]| {
            (v[100..v.len() - 100].iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        assert!(rms(&low) > 6_000.0, "1 kHz passes: {}", rms(&low));
        assert!(rms(&high) < 300.0, "12 kHz would alias; it is filtered: {}", rms(&high));
    }

    #[test]
    fn pauses_split_utterances() {
        let rate = RATE_OUT;
        let mut s: Vec<f32> = tone(300.0, rate, 0.2, 20.0); // near silence
        s.extend(tone(300.0, rate, 1.0, 8_000.0));
        s.extend(tone(300.0, rate, 0.6, 20.0));
        s.extend(tone(300.0, rate, 0.8, 8_000.0));
        s.extend(tone(300.0, rate, 0.05, 8_000.0).iter().map(|_| 0.0));
        let samples: Vec<i16> = s.iter().map(|v| *v as i16).collect();
        let u = utterances(&samples);
        assert_eq!(u.len(), 2, "{u:?}");
        let secs = |n: usize| n as f32 / rate as f32;
        assert!((secs(u[0].0) - 0.2).abs() < 0.05 && (secs(u[0].1) - 1.2).abs() < 0.05, "{u:?}");
        assert!((secs(u[1].0) - 1.8).abs() < 0.05, "{u:?}");
    }

    #[test]
    fn the_recogniser_hears_a_margin_around_each_utterance_but_not_its_neighbours() {
        let spans = [(5_000, 20_000), (22_000, 40_000), (60_000, 70_000)];
        let wide = with_margin(&spans, 72_000);
        assert_eq!(wide, [(1_000, 21_000), (21_000, 44_000), (56_000, 72_000)]);
        assert_eq!(with_margin(&[(100, 200)], 150), [(0, 200)], "never shorter than the span");
    }

    #[test]
    fn silence_has_no_utterance_and_denoise_keeps_length() {
        assert!(utterances(&vec![0i16; 32_000]).is_empty());
        assert_eq!(denoise(&vec![0.0; 1000]).len(), 1000);
    }
}
