//! The program's error type: bad input (exit code 2) apart from failures (exit code 1).

/// What went wrong in a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user: a clear message and exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The experiment could not be carried out (a worker failed, a file could not be written).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The process exit code for this error: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Failed(_) => 1,
        }
    }
    /// A failure with context, for `map_err`.
    pub fn failed(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
        move |e| Error::Failed(format!("{context}: {e}"))
    }
}

/// The result of a command.
pub type Result<T> = std::result::Result<T, Error>;
