//! A small FFI to CMU PocketSphinx (Debian's `libpocketsphinx3` with the `pocketsphinx-en-us` model), loaded at
//! run time: a build of Sluice runs without it, and transcription says what to install when it is absent.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;

/// Where Debian puts the library and the model.
const LIBRARY: &str = "libpocketsphinx.so.3";
pub const DEFAULT_MODEL_DIR: &str = "/usr/share/pocketsphinx/model/en-us";

type ParseArgs = unsafe extern "C" fn(*mut c_void, *const c_void, i32, *const *const c_char, c_int) -> *mut c_void;
type PsArgs = unsafe extern "C" fn() -> *const c_void;
type PsInit = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type PsFree = unsafe extern "C" fn(*mut c_void) -> c_int;
type PsUtt = unsafe extern "C" fn(*mut c_void) -> c_int;
type PsProcessRaw = unsafe extern "C" fn(*mut c_void, *const i16, usize, c_int, c_int) -> c_int;
type PsGetHyp = unsafe extern "C" fn(*mut c_void, *mut i32) -> *const c_char;
type CmdLnFree = unsafe extern "C" fn(*mut c_void) -> c_int;

/// One decoder: speech at 16 kHz, 16-bit mono in, words out. Not shared between threads.
pub struct Decoder {
    // Keeps the library mapped while the decoder lives.
    _library: libloading::Library,
    ps: *mut c_void,
    config: *mut c_void,
    free: PsFree,
    start_utt: PsUtt,
    end_utt: PsUtt,
    process_raw: PsProcessRaw,
    get_hyp: PsGetHyp,
    cmd_ln_free: CmdLnFree,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

// SAFETY: the decoder is used from one thread at a time (`&mut self`); PocketSphinx keeps no thread-local state.
unsafe impl Send for Decoder {}

fn symbol<T: Copy>(library: &libloading::Library, name: &str) -> Result<T, String> {
    // SAFETY: each name is looked up with the signature PocketSphinx 5prealpha's headers give it.
    unsafe { library.get::<T>(name.as_bytes()).map(|s| *s).map_err(|e| format!("pocketsphinx lacks {name}: {e}")) }
}

impl Decoder {
    /// Loads the library and the model in `model_dir` (`en-us/`, `en-us.lm.bin`, `cmudict-en-us.dict`).
    pub fn new(model_dir: &Path) -> Result<Decoder, String> {
        let hint =
            "install Debian's libpocketsphinx3 and pocketsphinx-en-us, or configure another transcription back end";
        for needed in ["en-us/mdef", "en-us.lm.bin", "cmudict-en-us.dict"] {
            if !model_dir.join(needed).exists() {
                return Err(format!("the speech model is missing {} ({hint})", model_dir.join(needed).display()));
            }
        }
        // SAFETY: loading a shared library runs its initialisers; PocketSphinx's are plain C.
        let library =
            unsafe { libloading::Library::new(LIBRARY) }.map_err(|e| format!("cannot load {LIBRARY}: {e} ({hint})"))?;
        let parse: ParseArgs = symbol(&library, "cmd_ln_parse_r")?;
        let ps_args: PsArgs = symbol(&library, "ps_args")?;
        let init: PsInit = symbol(&library, "ps_init")?;
        let arg = |s: &str| CString::new(s).expect("no NUL in paths we build");
        let pairs = [
            ("-hmm", model_dir.join("en-us")),
            ("-lm", model_dir.join("en-us.lm.bin")),
            ("-dict", model_dir.join("cmudict-en-us.dict")),
            ("-logfn", "/dev/null".into()),
        ];
        let mut owned = vec![arg("sluice")];
        for (k, v) in &pairs {
            owned.push(arg(k));
            owned.push(arg(&v.to_string_lossy()));
        }
        let argv: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
        // SAFETY: argv points at NUL-terminated strings that outlive the call; the definitions come from the
        // library itself. Some builds read argv from index 0, some skip a program name: try both.
        let config = unsafe {
            let c = parse(std::ptr::null_mut(), ps_args(), argv.len() as i32, argv.as_ptr(), 1);
            if c.is_null() {
                parse(std::ptr::null_mut(), ps_args(), argv.len() as i32 - 1, argv[1..].as_ptr(), 1)
            } else {
                c
            }
        };
        if config.is_null() {
            return Err("pocketsphinx refused its configuration".into());
        }
        // SAFETY: a configuration pocketsphinx made.
        let ps = unsafe { init(config) };
        let cmd_ln_free: CmdLnFree = symbol(&library, "cmd_ln_free_r")?;
        if ps.is_null() {
            // SAFETY: ours, not yet handed to a decoder.
            unsafe { cmd_ln_free(config) };
            return Err(format!("pocketsphinx could not load the model in {}", model_dir.display()));
        }
        Ok(Decoder {
            free: symbol(&library, "ps_free")?,
            start_utt: symbol(&library, "ps_start_utt")?,
            end_utt: symbol(&library, "ps_end_utt")?,
            process_raw: symbol(&library, "ps_process_raw")?,
            get_hyp: symbol(&library, "ps_get_hyp")?,
            cmd_ln_free,
            _library: library,
            ps,
            config,
        })
    }

    /// Decodes one utterance (16 kHz mono samples) and returns its words.
    pub fn utterance(&mut self, samples: &[i16]) -> Result<String, String> {
        // SAFETY: `ps` is a live decoder; `samples` is valid for its length during the call.
        unsafe {
            if (self.start_utt)(self.ps) < 0 {
                return Err("pocketsphinx could not start an utterance".into());
            }
            if (self.process_raw)(self.ps, samples.as_ptr(), samples.len(), 0, 1) < 0 {
                (self.end_utt)(self.ps);
                return Err("pocketsphinx could not process the audio".into());
            }
            (self.end_utt)(self.ps);
            let mut score = 0i32;
            let hyp = (self.get_hyp)(self.ps, &mut score);
            if hyp.is_null() {
                return Ok(String::new());
            }
            Ok(CStr::from_ptr(hyp).to_string_lossy().trim().to_string())
        }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: both are ours and freed once; the decoder holds its own reference to the configuration.
        unsafe {
            (self.free)(self.ps);
            (self.cmd_ln_free)(self.config);
        }
    }
}
