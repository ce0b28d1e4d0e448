//! A simulated chip's pins in a file (`--sim-state DIR`), so that a mapper started again finds
//! them as the previous process left them: a real chip keeps driving its outputs when the
//! process that set them dies, and a restarted mapper must read them, not reset them.
//!
//! What is kept is physical: the level each output drives (held or left behind), the level each
//! line is driven to from outside, and which pins are high (so that the wires, given again on
//! the command line at each start, find the inputs where they left them: reconnecting the same
//! jumper moves nothing). Who held a line is not kept (that process is gone), nor is the
//! transition log. The file is replaced atomically (written beside it, then renamed) after
//! every change, so a SIGKILL at any moment leaves the last state or the one before it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Level;

/// The kept state of one chip.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PinState {
    /// Line → the level its output drives.
    #[serde(default)]
    pub outputs: BTreeMap<u32, Level>,
    /// Line → the level driven from outside.
    #[serde(default)]
    pub driven: BTreeMap<u32, Level>,
    /// The lines whose pin is high (every other one is low).
    #[serde(default)]
    pub high: BTreeSet<u32>,
}

/// Where a chip's state lives, and what was last written there.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    written: Option<PinState>,
    /// Whether a failed write was logged already (one warning, not one per transition).
    warned: bool,
}

impl StateFile {
    /// The file of chip `chip` in `dir`, and the state it holds (`None` when there is none yet).
    ///
    /// # Errors
    /// When the file exists but cannot be read or is not a chip state (the message names it).
    pub fn open(dir: &Path, chip: &str) -> Result<(StateFile, Option<PinState>), String> {
        let path = dir.join(format!("{}.json", chip.replace(['/', '\\'], "_")));
        let state =
            match std::fs::read(&path) {
                Ok(bytes) => Some(serde_json::from_slice::<PinState>(&bytes).map_err(|e| {
                    format!("{}: not a simulated chip's state: {e}", path.display())
                })?),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(err) => return Err(format!("{}: {err}", path.display())),
            };
        let file = StateFile {
            path,
            written: state.clone(),
            warned: false,
        };
        Ok((file, state))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `state` unless it is what the file holds already. A failure is logged once and
    /// does not stop the chip (the simulation goes on in memory).
    pub fn save(&mut self, state: PinState) {
        if self.written.as_ref() == Some(&state) {
            return;
        }
        match self.write(&state) {
            Ok(()) => {
                self.written = Some(state);
                self.warned = false;
            }
            Err(err) => {
                if !self.warned {
                    tracing::warn!(path = %self.path.display(), error = %err, "cannot keep the simulated pins' state");
                    self.warned = true;
                }
            }
        }
    }

    fn write(&self, state: &PinState) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        let mut partial = self.path.clone().into_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_written_once_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut file, found) = StateFile::open(dir.path(), "gpiochip0").expect("opens");
        assert_eq!(found, None, "nothing kept yet");
        let state = PinState {
            outputs: BTreeMap::from([(17, Level::High), (27, Level::Low)]),
            driven: BTreeMap::from([(4, Level::Low)]),
            high: BTreeSet::from([17, 5]),
        };
        file.save(state.clone());
        let modified = std::fs::metadata(file.path())
            .and_then(|m| m.modified())
            .expect("written");
        file.save(state.clone());
        assert_eq!(
            std::fs::metadata(file.path())
                .and_then(|m| m.modified())
                .ok(),
            Some(modified),
            "an unchanged state is not written again"
        );
        let (_, again) = StateFile::open(dir.path(), "gpiochip0").expect("opens");
        assert_eq!(again, Some(state));
        let text = std::fs::read_to_string(dir.path().join("gpiochip0.json")).expect("file");
        assert!(text.contains("\"17\": \"high\""), "{text}");
    }

    #[test]
    fn a_broken_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("gpiochip0.json"), b"{\"outputs\": 3}").expect("write");
        let err = StateFile::open(dir.path(), "gpiochip0").expect_err("broken");
        assert!(
            err.contains("gpiochip0.json") && err.contains("not a simulated chip's state"),
            "{err}"
        );
    }

    #[test]
    fn a_write_that_fails_leaves_the_chip_running() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut file, _) = StateFile::open(&dir.path().join("gone"), "gpiochip0").expect("opens");
        file.save(PinState::default());
        assert!(file.warned, "the failure is logged once");
        assert!(!file.path().exists());
    }
}
