//! Typed errors of the trainer. Each message names the file, line or key at fault and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run configuration (TOML) is unreadable or holds a bad value.
    #[error("{file}: {message}")]
    Config { file: PathBuf, message: String },

    /// A training-data line is malformed.
    #[error("{file} line {line}: {message}")]
    Data {
        file: PathBuf,
        line: usize,
        message: String,
    },

    /// A run folder (checkpoint, resume, export) is missing something or inconsistent.
    #[error("{0}")]
    Run(String),

    #[error(transparent)]
    Engine(#[from] qoqmed_engine::Error),

    #[error("advantages: {0}")]
    Advantage(#[from] qoqmed_rl::AdvantageError),

    #[error("burn: {0}")]
    Burn(String),

    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Reads a whole file, naming it on failure.
pub fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Writes a file atomically (temp file + rename), so a killed run never leaves half a file.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
