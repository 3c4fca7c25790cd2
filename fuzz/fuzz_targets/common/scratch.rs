//! A scratch folder for one fuzzing process: in /dev/shm (tmpfs) when it
//! can, as every run creates and removes files (ten times faster than on
//! disk here); removed when the process exits normally.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_scratch() {
    if let Some(dir) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The process's scratch folder (empty when first returned).
pub fn scratch() -> &'static Path {
    DIR.get_or_init(|| {
        let mut builder = tempfile::Builder::new();
        builder.prefix("gateway-fuzz-");
        let dir = builder
            .tempdir_in("/dev/shm")
            .or_else(|_| builder.tempdir())
            .expect("a scratch folder");
        // libFuzzer ends the process with exit(): statics are not dropped.
        unsafe { libc::atexit(remove_scratch) };
        dir.keep()
    })
}
