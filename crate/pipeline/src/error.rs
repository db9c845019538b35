//! One error type for a request: engine, reader and input errors, each with its own message.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] qoqmed_engine::Error),

    #[error(transparent)]
    Imaging(#[from] qoqmed_imaging::ImagingError),

    #[error(transparent)]
    Ecg(#[from] qoqmed_ecg::EcgError),

    /// A request the model or this build cannot honour; the message says what to change.
    #[error("{0}")]
    Request(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
