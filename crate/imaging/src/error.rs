//! The one error type of the crate: every bad input ends here, never in a panic.

/// What went wrong while reading or preprocessing an image, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    #[error(
        "{name}: cannot decode the image ({detail}); is the file complete and really a PNG/JPEG/WebP/BMP/TIFF?"
    )]
    Decode { name: String, detail: String },
    #[error(
        "{name}: unrecognised image format; supported: PNG, JPEG, WebP, BMP, TIFF, DICOM (.dcm), NIfTI (.nii, .nii.gz)"
    )]
    UnknownFormat { name: String },
    #[error("{name}: the image is empty ({width}x{height} pixels)")]
    Empty {
        name: String,
        width: u64,
        height: u64,
    },
    #[error(
        "{name}: {width}x{height} is too large (limit {limit} pixels per side); downscale it first"
    )]
    TooLarge {
        name: String,
        width: u64,
        height: u64,
        limit: u64,
    },
    #[error("{name}: not a readable DICOM file ({detail})")]
    Dicom { name: String, detail: String },
    #[error(
        "{name}: DICOM transfer syntax {uid} ({syntax}) cannot be decoded by this build; \
         convert it first, e.g. `dcmdjpls`/`gdcmconv --raw`, to Explicit VR Little Endian"
    )]
    UnsupportedTransferSyntax {
        name: String,
        uid: String,
        syntax: String,
    },
    #[error("{name}: unsupported DICOM pixel layout: {detail}")]
    UnsupportedDicom { name: String, detail: String },
    #[error("{name}: not a readable NIfTI file ({detail})")]
    Nifti { name: String, detail: String },
    #[error(
        "{count} images given but a prompt takes at most {max}; pass fewer files or a smaller --frames"
    )]
    TooManyImages { count: usize, max: usize },
    #[error("--frames must be between 1 and {max}, got {got}")]
    BadFrameCount { got: usize, max: usize },
    #[error("window width must be positive and finite, got center {center}, width {width}")]
    BadWindow { center: f64, width: f64 },
    #[error("preprocessor_config.json: {0}")]
    Config(String),
    #[error("image of {width}x{height} cannot be fitted to the model grid: {detail}")]
    Geometry {
        width: u32,
        height: u32,
        detail: String,
    },
}

pub type Result<T> = std::result::Result<T, ImagingError>;
