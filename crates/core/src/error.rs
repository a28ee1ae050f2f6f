use std::fmt;

/// What went wrong, in terms a caller can act on. The HTTP layer maps each kind to a status;
/// nothing here knows about HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named application, chat or message does not exist.
    NotFound,
    /// The input is well-formed but breaks a rule.
    Invalid,
    /// The request collides with another one (e.g. an idempotency key still in flight).
    Conflict,
    /// A dependency (store, queue, counters) cannot answer now; retrying later may work.
    Unavailable,
    /// A bug or an unexpected state.
    Internal,
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The one error type of the ports. `detail` is safe to show to a client; `source` holds the
/// internal cause and is only ever logged.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    detail: String,
    #[source]
    source: Option<Source>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into(), source: None }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, detail)
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, detail)
    }

    /// Attaches the underlying cause (logged, never shown to clients).
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// A value that failed its parse constructor; the message names the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

impl From<InvalidInput> for Error {
    fn from(e: InvalidInput) -> Self {
        Error::invalid(e.0)
    }
}
