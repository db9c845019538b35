//! Typed errors. Every message says what was wrong and what to do about it.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: {message}")]
    Format { file: String, message: String },

    #[error("config: {0}")]
    Config(String),

    #[error(
        "tensor `{name}` is missing from the checkpoint (looked for {tried:?}); is this a Qwen2.5-VL / QoQ-Med model folder?"
    )]
    MissingTensor { name: String, tried: Vec<String> },

    #[error(
        "tensor `{name}` has shape {actual:?}, expected {expected:?} from config.json; config and weights do not belong together"
    )]
    TensorShape {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },

    #[error(
        "tensor `{name}` has dtype {dtype}, which qoqmed cannot load (supported: F32, F16, BF16)"
    )]
    UnsupportedDtype { name: String, dtype: String },

    #[error("shape mismatch in {op}: {message}")]
    Shape { op: &'static str, message: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    Template(String),

    #[error("GPU: {0}")]
    Gpu(String),

    #[error("the GPU cannot hold this: {0}")]
    GpuLimit(String),

    #[error("{0}")]
    Input(String),

    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn format(file: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Format {
            file: file.into(),
            message: message.into(),
        }
    }
    pub fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            op,
            message: message.into(),
        }
    }
}
