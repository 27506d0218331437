//! Transcripts: each participant's voice track transcribed on its own, so every cue names its speaker; the
//! cues of all tracks merged in time into one WebVTT file. Back ends: PocketSphinx (embedded default) or any
//! OpenAI-compatible `/v1/audio/transcriptions` endpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::audio;
use crate::mux::TrackFile;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// No transcript.
    None,
    /// CMU PocketSphinx with its en-us model (Debian packages), on this machine.
    Pocketsphinx,
    /// An OpenAI-compatible endpoint (`openai_url`, `openai_key`, `openai_model`).
    Openai,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscriptionConfig {
    pub backend: Backend,
    /// PocketSphinx's model directory.
    pub model_dir: PathBuf,
    /// Base URL of the OpenAI-compatible service (`https://api.openai.com`); `/v1/audio/transcriptions` is added.
    pub openai_url: String,
    pub openai_key: String,
    pub openai_model: String,
    /// RNNoise on each voice before recognition.
    pub noise_suppression: bool,
    /// Bound on one request to the service.
    pub request_timeout_secs: u64,
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        TranscriptionConfig {
            backend: Backend::Pocketsphinx,
            model_dir: crate::sphinx::DEFAULT_MODEL_DIR.into(),
            openai_url: String::new(),
            openai_key: String::new(),
            openai_model: "whisper-1".into(),
            noise_suppression: true,
            request_timeout_secs: 300,
        }
    }
}

/// One subtitle.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start_ms: u64,
    pub end_ms: u64,
    pub speaker: String,
    pub text: String,
}

/// Transcribes every voice track (in `dir`) and returns the cues in time order, with how long it took.
pub async fn transcribe(
    config: &TranscriptionConfig,
    ffmpeg: &Path,
    dir: &Path,
    tracks: &[TrackFile],
) -> Result<(Vec<Cue>, std::time::Duration), String> {
    let started = Instant::now();
    let mut cues = Vec::new();
    if config.backend == Backend::None {
        return Ok((cues, started.elapsed()));
    }
    for t in tracks.iter().filter(|t| t.header.codec.is_audio()) {
        let pcm = audio::decode(ffmpeg, &dir.join(&t.file)).await?;
        let noise_suppression = config.noise_suppression;
        let samples = tokio::task::spawn_blocking(move || {
            let clean = if noise_suppression { audio::denoise(&pcm) } else { pcm };
            audio::downsample(&clean)
        })
        .await
        .map_err(|e| format!("audio preparation failed: {e}"))?;
        let spans = audio::utterances(&samples);
        // The recogniser hears each utterance with some quiet around it; the cue keeps the speech's own times.
        let heard = audio::with_margin(&spans, samples.len());
        let texts = match config.backend {
            Backend::None => Vec::new(),
            Backend::Pocketsphinx => sphinx_spans(&config.model_dir, samples.clone(), heard).await?,
            Backend::Openai => openai_spans(config, &samples, &heard).await?,
        };
        let ms = |n: usize| n as u64 * 1000 / u64::from(audio::RATE_OUT);
        for ((start, end), text) in spans.into_iter().zip(texts) {
            if !text.is_empty() {
                cues.push(Cue {
                    start_ms: t.offset_ms + ms(start),
                    end_ms: t.offset_ms + ms(end),
                    speaker: t.header.name.clone(),
                    text,
                });
            }
        }
    }
    cues.sort_by_key(|c| (c.start_ms, c.end_ms));
    Ok((cues, started.elapsed()))
}

async fn sphinx_spans(model_dir: &Path, samples: Vec<i16>, spans: Vec<(usize, usize)>) -> Result<Vec<String>, String> {
    let model_dir = model_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut decoder = crate::sphinx::Decoder::new(&model_dir)?;
        spans.iter().map(|&(a, b)| decoder.utterance(&samples[a..b])).collect()
    })
    .await
    .map_err(|e| format!("pocketsphinx failed: {e}"))?
}

#[derive(Deserialize)]
struct OpenAiReply {
    text: String,
}

/// One request per utterance, each a 16 kHz WAV: the cue times stay ours, whatever the service returns.
async fn openai_spans(
    config: &TranscriptionConfig,
    samples: &[i16],
    spans: &[(usize, usize)],
) -> Result<Vec<String>, String> {
    if config.openai_url.is_empty() {
        return Err("transcription.backend is \"openai\" but transcription.openai_url is empty".into());
    }
    let url = format!("{}/v1/audio/transcriptions", config.openai_url.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(config.request_timeout_secs.max(1)))
        .build()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(spans.len());
    for &(a, b) in spans {
        let part = reqwest::multipart::Part::bytes(wav(&samples[a..b], audio::RATE_OUT))
            .file_name("utterance.wav")
            .mime_str("audio/wav")
            .map_err(|e| e.to_string())?;
        let form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("model", config.openai_model.clone())
            .text("response_format", "json");
        let mut request = http.post(&url).multipart(form);
        if !config.openai_key.is_empty() {
            request = request.bearer_auth(&config.openai_key);
        }
        let reply = request.send().await.map_err(|e| format!("transcription service {url}: {e}"))?;
        let status = reply.status();
        if !status.is_success() {
            let body = reply.text().await.unwrap_or_default();
            return Err(format!(
                "transcription service {url} answered {status}: {}",
                body.chars().take(300).collect::<String>()
            ));
        }
        let reply: OpenAiReply = reply.json().await.map_err(|e| format!("transcription service {url}: {e}"))?;
        out.push(reply.text.trim().to_string());
    }
    Ok(out)
}

/// A mono 16-bit PCM WAV file.
pub fn wav(samples: &[i16], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut w = Vec::with_capacity(44 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    samples.iter().for_each(|s| w.extend_from_slice(&s.to_le_bytes()));
    w
}

/// WebVTT with a voice span per cue (`<v Name>`), which players show as the speaker.
pub fn vtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for (i, c) in cues.iter().enumerate() {
        let speaker: String = c.speaker.chars().filter(|ch| !matches!(ch, '<' | '>' | '&' | '\n' | '\r')).collect();
        let text = c.text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        out.push_str(&format!(
            "{}\n{} --> {}\n<v {speaker}>{text}\n\n",
            i + 1,
            stamp(c.start_ms),
            stamp(c.end_ms.max(c.start_ms + 1))
        ));
    }
    out
}

fn stamp(ms: u64) -> String {
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtt_names_speakers_and_escapes_text() {
        let cues = [
            Cue { start_ms: 1_500, end_ms: 3_250, speaker: "Ada <L>".into(), text: "hello & welcome".into() },
            Cue { start_ms: 3_723_004, end_ms: 3_724_000, speaker: "Bob".into(), text: "a --> b <i>".into() },
        ];
        assert_eq!(
            vtt(&cues),
            "WEBVTT\n\n1\n00:00:01.500 --> 00:00:03.250\n<v Ada L>hello &amp; welcome\n\n\
             2\n01:02:03.004 --> 01:02:04.000\n<v Bob>a --&gt; b &lt;i&gt;\n\n"
        );
    }

    /// A stand-in for an OpenAI-compatible service on loopback: answers with the utterance's length, refuses a
    /// wrong key, and records what it was sent.
    async fn fake_service(key: &'static str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::http::{HeaderMap, StatusCode};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&seen);
        let app = axum::Router::new().route(
            "/v1/audio/transcriptions",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let log = std::sync::Arc::clone(&log);
                async move {
                    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {key}")) {
                        return (StatusCode::UNAUTHORIZED, r#"{"error":{"message":"bad key"}}"#.to_string());
                    }
                    let text = String::from_utf8_lossy(&body).to_string();
                    // The WAV's data chunk (after its RIFF header; the multipart headers say "form-data" too).
                    let riff = body.windows(4).position(|w| w == b"RIFF").unwrap_or(0);
                    let wav_len = body[riff..].windows(4).position(|w| w == b"data").map_or(0, |at| {
                        let at = riff + at;
                        u32::from_le_bytes(body[at + 4..at + 8].try_into().unwrap()) as usize
                    });
                    log.lock().unwrap().push(text);
                    (StatusCode::OK, format!(r#"{{"text":" {} bytes "}}"#, wav_len))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    #[tokio::test]
    async fn the_openai_back_end_sends_each_utterance_as_a_wav_and_keeps_our_times() {
        let (url, seen) = fake_service("k3y").await;
        let config = TranscriptionConfig {
            backend: Backend::Openai,
            openai_url: format!("{url}/"),
            openai_key: "k3y".into(),
            openai_model: "whisper-large".into(),
            ..TranscriptionConfig::default()
        };
        let samples = vec![7i16; 16_000];
        let texts = openai_spans(&config, &samples, &[(0, 800), (1_600, 16_000)]).await.unwrap();
        assert_eq!(texts, vec!["1600 bytes".to_string(), "28800 bytes".to_string()]);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].contains("name=\"model\"") && seen[0].contains("whisper-large"), "{}", seen[0]);
        assert!(seen[0].contains("filename=\"utterance.wav\"") && seen[0].contains("RIFF"), "{}", seen[0]);
        let wrong = TranscriptionConfig { openai_key: "nope".into(), ..config };
        let e = openai_spans(&wrong, &samples, &[(0, 800)]).await.unwrap_err();
        assert!(e.contains("401") && e.contains("bad key"), "{e}");
        let unset = TranscriptionConfig { openai_url: String::new(), ..TranscriptionConfig::default() };
        assert!(openai_spans(&unset, &samples, &[(0, 800)]).await.unwrap_err().contains("openai_url is empty"));
    }

    #[test]
    fn wav_header_describes_the_samples() {
        let w = wav(&[1, -1, 2], 16_000);
        assert_eq!(w.len(), 44 + 6);
        assert_eq!(&w[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(w[24..28].try_into().unwrap()), 16_000);
        assert_eq!(u32::from_le_bytes(w[40..44].try_into().unwrap()), 6);
    }
}
