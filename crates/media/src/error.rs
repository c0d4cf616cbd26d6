//! The media crate's one error type.

/// What went wrong in an audio block.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// A WAV file could not be read or written; `reason` names what was found (for example
    /// "44100 Hz, 2 channels, 64-bit float: unsupported") or what failed.
    #[error("WAV: {reason}")]
    Wav {
        /// What was found, or what failed.
        reason: String,
    },
    /// An I/O error (opening, reading or writing a file), as text.
    #[error("I/O: {0}")]
    Io(String),
    /// Something this crate does not do.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What was asked for.
        what: String,
    },
}

impl From<std::io::Error> for MediaError {
    fn from(error: std::io::Error) -> Self {
        MediaError::Io(error.to_string())
    }
}
