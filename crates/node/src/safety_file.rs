//! The consensus safety state on disk: written and synced before any vote leaves the node.
//!
//! The file is replaced atomically: write `safety.bin.tmp`, sync it, rename it over
//! `safety.bin`, sync the directory. A crash at any instant leaves either the old or the new
//! state, whole. The content is `borsh(SafetyState)` followed by its BLAKE3 hash, so a torn or
//! corrupted file is detected at start-up rather than trusted.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use branchledger_consensus::SafetyState;
use branchledger_crypto::Hash;

/// Largest safety file accepted (it holds three signed messages and a few numbers).
pub const SAFETY_FILE_BYTES_MAX: usize = 64 * 1024;

/// Why the safety state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SafetyFileError {
    /// The file system failed.
    #[error("safety state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a safety state written by this node.
    #[error("safety state {path} is corrupt: {reason}; refusing to start (a validator that forgets what it signed may sign twice)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The safety state file of a node.
pub struct SafetyFile {
    path: PathBuf,
}

impl SafetyFile {
    /// The file `safety.bin` in `dir`.
    pub fn new(dir: &Path) -> SafetyFile {
        SafetyFile {
            path: dir.join("safety.bin"),
        }
    }

    fn io(&self, source: std::io::Error) -> SafetyFileError {
        SafetyFileError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The last synced state, or none if the node never voted.
    pub fn load(&self) -> Result<Option<SafetyState>, SafetyFileError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let corrupt = |reason: String| SafetyFileError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        if bytes.len() > SAFETY_FILE_BYTES_MAX || bytes.len() < 32 {
            return Err(corrupt(format!("{} bytes", bytes.len())));
        }
        let (body, checksum) = bytes.split_at(bytes.len() - 32);
        if Hash::of(body).0 != checksum {
            return Err(corrupt("checksum mismatch".into()));
        }
        branchledger_types::decode("safety state", body, SAFETY_FILE_BYTES_MAX)
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// Writes `state` and syncs it (file and directory) before returning.
    pub fn store(&self, state: &SafetyState) -> Result<(), SafetyFileError> {
        let mut bytes = branchledger_types::encode(state);
        let checksum = Hash::of(&bytes);
        bytes.extend_from_slice(&checksum.0);
        let temp = self.path.with_extension("bin.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&temp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = SafetyFile::new(dir.path());
        assert!(file.load().expect("no file yet").is_none());
        let state = SafetyState::initial(7);
        file.store(&state).expect("store");
        assert_eq!(file.load().expect("load"), Some(state.clone()));
        let mut next = state;
        next.round = 3;
        file.store(&next).expect("store again");
        assert_eq!(file.load().expect("load"), Some(next));
        // Flip one byte: refused, never silently reset.
        let path = dir.path().join("safety.bin");
        let mut bytes = fs::read(&path).expect("read");
        bytes[0] ^= 1;
        fs::write(&path, bytes).expect("write");
        let error = file.load().expect_err("corrupt");
        assert!(error.to_string().contains("checksum"), "{error}");
    }
}
