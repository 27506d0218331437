//! One MP4 (H.264 + AAC) showing the meeting as people saw it, made by ffmpeg from the per-track files: a grid
//! with a cell per participant (their camera, their name), a shared screen in the spotlight beside a column of
//! cameras while it runs, all voices mixed and loudness-normalised (EBU R128), every track at its offset.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::mux::TrackFile;

/// The composed picture.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
const FPS: u32 = 25;
const BACKGROUND: &str = "0x1c2128";
/// Font for the names; without it, cells carry no names (logged).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

/// Even sizes: H.264 in 4:2:0 needs them.
fn even(v: u32) -> u32 {
    v & !1
}

/// `n` cells in a near-square grid filling `area`.
fn grid(n: usize, area: Cell) -> Vec<Cell> {
    if n == 0 {
        return Vec::new();
    }
    let cols = (n as f64).sqrt().ceil() as u32;
    let rows = (n as u32).div_ceil(cols);
    let (w, h) = (even(area.w / cols), even(area.h / rows));
    (0..n as u32).map(|i| Cell { x: area.x + (i % cols) * w, y: area.y + (i / cols) * h, w, h }).collect()
}

/// `n` cells stacked in `area`, none taller than 3:4 of its width.
fn column(n: usize, area: Cell) -> Vec<Cell> {
    if n == 0 {
        return Vec::new();
    }
    let h = even((area.h / n as u32).min(area.w * 3 / 4));
    (0..n as u32).map(|i| Cell { x: area.x, y: area.y + i * h, w: area.w, h }).collect()
}

/// Where people's cells are: a grid over the whole picture, or, while a screen is shared, a column beside the
/// spotlight. `spot_on` is an ffmpeg expression of time, true while some screen is shared.
#[derive(Debug)]
struct Layouts {
    grid: Vec<Cell>,
    column: Vec<Cell>,
    spot: Cell,
    spot_on: Option<String>,
}

impl Layouts {
    fn new(people: usize, screens: &[(usize, &TrackFile)]) -> Layouts {
        let side = even(WIDTH / 4);
        let spot_on = (!screens.is_empty()).then(|| {
            let spans: Vec<String> = screens
                .iter()
                .map(|(_, t)| {
                    let (a, b) = (t.offset_ms as f64 / 1000.0, (t.offset_ms + t.duration_ms) as f64 / 1000.0);
                    format!("between(t,{a:.3},{b:.3})")
                })
                .collect();
            format!("gt({},0)", spans.join("+"))
        });
        Layouts {
            grid: grid(people, Cell { x: 0, y: 0, w: WIDTH, h: HEIGHT }),
            column: column(people, Cell { x: WIDTH - side, y: 0, w: side, h: HEIGHT }),
            spot: Cell { x: 0, y: 0, w: WIDTH - side, h: HEIGHT },
            spot_on,
        }
    }

    /// Person `k`'s cells, each with when it shows (`None`: always).
    fn cells(&self, k: usize) -> Vec<(Cell, Option<String>)> {
        match &self.spot_on {
            None => vec![(self.grid[k], None)],
            Some(on) => vec![(self.grid[k], Some(format!("not({on})"))), (self.column[k], Some(on.clone()))],
        }
    }
}

/// `:enable='...'` for a filter that shows only part of the time.
fn enable_option(enable: Option<&str>) -> String {
    enable.map_or(String::new(), |e| format!(":enable='{e}'"))
}

/// The video part of the graph as it grows: each overlay takes `base<n>` and makes `base<n+1>`.
struct Graph {
    text: String,
    base: usize,
}

impl Graph {
    /// Input `input` at its offset, fitted into each of `cells` (split when more than one) and overlaid there
    /// while its condition holds.
    fn place(&mut self, input: usize, track: &TrackFile, cells: &[(Cell, Option<String>)], contain: bool) {
        let offset = track.offset_ms as f64 / 1000.0;
        let fit = if contain { "decrease" } else { "increase" };
        let _ = write!(self.text, "[{input}:v]setpts=PTS-STARTPTS+{offset:.3}/TB,fps={FPS}");
        if cells.len() > 1 {
            let outs: String = (0..cells.len()).map(|n| format!("[s{input}_{n}]")).collect();
            let _ = writeln!(self.text, ",split={}{outs};", cells.len());
        } else {
            let _ = writeln!(self.text, "[s{input}_0];");
        }
        for (n, (cell, enable)) in cells.iter().enumerate() {
            let (w, h) = (cell.w, cell.h);
            let _ = writeln!(
                self.text,
                "[s{input}_{n}]scale={w}:{h}:force_original_aspect_ratio={fit},crop='min(iw,{w})':'min(ih,{h})',\
                 pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black[v{input}_{n}];"
            );
            let _ = writeln!(
                self.text,
                "[base{}][v{input}_{n}]overlay={}:{}:eof_action=pass{}[base{}];",
                self.base,
                cell.x,
                cell.y,
                enable_option(enable.as_deref()),
                self.base + 1
            );
            self.base += 1;
        }
    }
}

/// A participant's cell: who, and their camera tracks in time order. A person has several when their camera
/// was stopped and started again, or when the recorder rejoined after losing its signaling connection: each
/// is drawn in the cell from its own offset.
#[derive(Debug)]
struct Person<'a> {
    name: &'a str,
    cameras: Vec<(usize, &'a TrackFile)>,
}

/// The ffmpeg filter graph and the input files, in input order. `text_dir` receives one file per name
/// (drawtext reads names from files, so no name needs escaping).
pub fn filter_graph(tracks: &[TrackFile], duration_ms: u64, text_dir: &Path) -> std::io::Result<(String, Vec<String>)> {
    let inputs: Vec<String> = tracks.iter().map(|t| t.file.clone()).collect();
    let mut people: Vec<Person> = Vec::new();
    let mut ids: Vec<&str> = Vec::new();
    for (i, t) in tracks.iter().enumerate() {
        if t.header.source == "screen" {
            continue;
        }
        let at = match ids.iter().position(|id| *id == t.header.participant_id) {
            Some(at) => at,
            None => {
                ids.push(&t.header.participant_id);
                people.push(Person { name: &t.header.name, cameras: Vec::new() });
                people.len() - 1
            }
        };
        if t.header.source == "camera" {
            people[at].cameras.push((i, t));
        }
    }
    let screens: Vec<(usize, &TrackFile)> =
        tracks.iter().enumerate().filter(|(_, t)| t.header.source == "screen").collect();
    let seconds = duration_ms as f64 / 1000.0;
    let layouts = Layouts::new(people.len(), &screens);
    let mut g = Graph { text: String::new(), base: 0 };
    let _ = writeln!(g.text, "color=c={BACKGROUND}:s={WIDTH}x{HEIGHT}:r={FPS}:d={seconds:.3}[base0];");
    for (i, t) in &screens {
        g.place(*i, t, &[(layouts.spot, None)], true);
    }
    for (k, person) in people.iter().enumerate() {
        let mut cameras = person.cameras.clone();
        cameras.sort_by_key(|(_, t)| t.offset_ms);
        for (i, t) in cameras {
            g.place(i, t, &layouts.cells(k), false);
        }
    }
    let mut last = format!("base{}", g.base);
    if Path::new(FONT).exists() {
        for (k, person) in people.iter().enumerate() {
            let file: PathBuf = text_dir.join(format!("name{k}.txt"));
            std::fs::write(&file, person.name)?;
            for (n, (cell, enable)) in layouts.cells(k).into_iter().enumerate() {
                let size = (cell.h / 14).clamp(12, 28);
                let _ = writeln!(
                    g.text,
                    "[{last}]drawtext=fontfile={FONT}:textfile='{}':fontsize={size}:fontcolor=white:box=1:\
                     boxcolor=black@0.55:boxborderw=6:x={}:y={}{}[named{k}_{n}];",
                    file.display(),
                    cell.x + 10,
                    cell.y + cell.h - size - 16,
                    enable_option(enable.as_deref()),
                );
                last = format!("named{k}_{n}");
            }
        }
    } else {
        tracing::warn!(font = FONT, "no font for names (package fonts-dejavu-core): the composed video has no names");
    }
    let mut g = g.text;
    let _ = writeln!(g, "[{last}]format=yuv420p[vout];");
    let audio: Vec<(usize, &TrackFile)> =
        tracks.iter().enumerate().filter(|(_, t)| t.header.codec.is_audio()).collect();
    if audio.is_empty() {
        let _ = write!(g, "anullsrc=r=48000:cl=stereo,atrim=duration={seconds:.3}[aout]");
    } else {
        for (i, t) in &audio {
            let _ = writeln!(g, "[{i}:a]aresample=48000,adelay={}:all=1[a{i}];", t.offset_ms);
        }
        let labels: String = audio.iter().map(|(i, _)| format!("[a{i}]")).collect();
        let _ = write!(
            g,
            "{labels}amix=inputs={}:duration=longest:normalize=0,loudnorm=I=-16:TP=-1.5:LRA=11,aresample=48000[aout]",
            audio.len()
        );
    }
    Ok((g, inputs))
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("ffmpeg is not installed (Debian: apt install ffmpeg): {0}")]
    Missing(std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("ffmpeg failed ({status}): {tail}")]
    Failed { status: String, tail: String },
}

/// Runs ffmpeg in `dir` (which holds the track files) and writes `dir/<output>`.
pub async fn compose(
    ffmpeg: &Path,
    dir: &Path,
    tracks: &[TrackFile],
    duration_ms: u64,
    threads: u32,
    output: &str,
) -> Result<(), ComposeError> {
    let (graph, inputs) = filter_graph(tracks, duration_ms.max(1000), dir)?;
    let script = dir.join("compose.filter");
    std::fs::write(&script, &graph)?;
    let mut cmd = tokio::process::Command::new(ffmpeg);
    cmd.current_dir(dir).args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]);
    for (input, track) in inputs.iter().zip(tracks) {
        // libvpx decodes a VP9 SVC superframe as a browser does, showing its top spatial layer; ffmpeg's own VP9
        // decoder would output every layer as a frame of its own size.
        if track.header.codec == crate::spool::Codec::Vp9 {
            cmd.args(["-c:v", "libvpx-vp9"]);
        }
        cmd.arg("-i").arg(input);
    }
    cmd.arg("-filter_complex_script").arg(&script);
    cmd.args(["-map", "[vout]", "-map", "[aout]", "-c:v", "libx264", "-preset", "veryfast", "-crf", "26"]);
    cmd.args(["-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart"]);
    cmd.arg("-threads").arg(threads.max(1).to_string());
    cmd.arg("-t").arg(format!("{:.3}", duration_ms.max(1000) as f64 / 1000.0));
    cmd.arg(output);
    cmd.kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound { ComposeError::Missing(e) } else { ComposeError::Io(e) }
    })?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let tail: String =
            text.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
        return Err(ComposeError::Failed { status: out.status.to_string(), tail });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Codec, TrackHeader};

    fn track(participant: &str, source: &str, codec: Codec, offset_ms: u64) -> TrackFile {
        TrackFile {
            header: TrackHeader {
                track_id: format!("{participant}-{source}"),
                participant_id: participant.into(),
                name: format!("Name {participant}"),
                source: source.into(),
                codec,
            },
            file: format!("{participant}-{source}.webm"),
            offset_ms,
            duration_ms: 1000,
            frames: 10,
            width: 640,
            height: 360,
        }
    }

    #[test]
    fn grids_fill_the_picture_with_even_cells() {
        let full = Cell { x: 0, y: 0, w: 1280, h: 720 };
        assert_eq!(grid(1, full), vec![full]);
        let four = grid(4, full);
        assert_eq!(four[3], Cell { x: 640, y: 360, w: 640, h: 360 });
        let three = grid(3, full);
        assert_eq!(three.len(), 3);
        assert!(three.iter().all(|c| c.w % 2 == 0 && c.h % 2 == 0 && c.x + c.w <= 1280 && c.y + c.h <= 720));
    }

    #[test]
    fn the_graph_places_cameras_names_screens_and_mixes_voices_at_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let tracks = [
            track("a", "microphone", Codec::Opus, 0),
            track("a", "camera", Codec::Vp8, 40),
            track("b", "microphone", Codec::Opus, 1500),
            track("b", "screen", Codec::Vp8, 3000),
        ];
        let (g, inputs) = filter_graph(&tracks, 10_000, dir.path()).unwrap();
        assert_eq!(inputs.len(), 4);
        assert!(g.contains("d=10.000[base0]"), "{g}");
        assert!(g.contains("[1:v]setpts=PTS-STARTPTS+0.040/TB"), "{g}");
        assert!(g.contains("[3:v]setpts=PTS-STARTPTS+3.000/TB"), "{g}");
        // While the screen is shared (3 s to 4 s) it takes the spotlight (left, 960 wide) and the cameras go in
        // the column on the right; before and after, the cameras fill a grid.
        assert!(g.contains("scale=960:720"), "{g}");
        let on = "gt(between(t,3.000,4.000),0)";
        assert!(g.contains(&format!("overlay=960:0:eof_action=pass:enable='{on}'")), "{g}");
        assert!(g.contains(&format!("overlay=0:0:eof_action=pass:enable='not({on})'")), "{g}");
        assert!(g.contains("[1:v]setpts=PTS-STARTPTS+0.040/TB,fps=25,split=2[s1_0][s1_1];"), "{g}");
        assert!(g.contains("[2:a]aresample=48000,adelay=1500:all=1[a2]"), "{g}");
        assert!(g.contains("[a0][a2]amix=inputs=2"), "{g}");
        assert!(g.contains("loudnorm"), "{g}");
        if Path::new(FONT).exists() {
            assert_eq!(std::fs::read_to_string(dir.path().join("name1.txt")).unwrap(), "Name b");
        }
    }

    #[test]
    fn every_camera_track_of_a_person_is_drawn_in_their_cell_from_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut again = track("a", "camera", Codec::Vp8, 6000);
        again.file = "a-camera-2.webm".into();
        let tracks = [track("a", "camera", Codec::Vp8, 0), track("b", "camera", Codec::Vp8, 0), again];
        let (g, _) = filter_graph(&tracks, 10_000, dir.path()).unwrap();
        assert!(g.contains("[0:v]setpts=PTS-STARTPTS+0.000/TB"), "{g}");
        assert!(g.contains("[2:v]setpts=PTS-STARTPTS+6.000/TB"), "{g}");
        // Two people: a's cell is the left half, and both of a's tracks go there.
        let in_a_cell = g.matches("overlay=0:").count();
        assert_eq!(in_a_cell, 2, "{g}");
    }
}
