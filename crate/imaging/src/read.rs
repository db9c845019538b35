//! Bytes in, images out: picks the reader from the content (DICOM `DICM`, gzip, NIfTI magic, the
//! image crate's signatures) with the file name as a hint, and turns volumes and multi-frame files
//! into N uniformly sampled slices.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

use crate::error::{ImagingError, Result};

/// At most this many images go into one prompt.
pub const MAX_IMAGES: usize = 4;
/// Largest accepted side. A 20000x20000 image fits; the QoQ range reads only what it samples.
pub const MAX_SIDE: u32 = 65_535;
/// Largest decoded raster the image decoders may allocate (bytes).
const MAX_ALLOC: u64 = 3 << 30;

/// A VOI window (DICOM Window Center / Width) applied to grey-level data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
}

impl Window {
    pub fn new(center: f64, width: f64) -> Result<Self> {
        if !(center.is_finite() && width.is_finite() && width > 0.0) {
            return Err(ImagingError::BadWindow { center, width });
        }
        Ok(Self { center, width })
    }
}

/// How files become images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReadOptions {
    /// Slices taken from a volume or a multi-frame file (1..=4; QoQ-Med's code uses 2).
    pub frames: usize,
    /// Overrides the file's own window (DICOM) or the min-max mapping (DICOM, NIfTI).
    pub window: Option<Window>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            frames: 2,
            window: None,
        }
    }
}

/// One image for the model, and where it came from (e.g. `head.nii.gz slice 12 of 25`).
#[derive(Clone, Debug)]
pub struct DecodedImage {
    pub image: DynamicImage,
    pub label: String,
}

/// The frame indices QoQ-Med samples from T frames: int(i*(T-1)/(N-1)); N is capped at T so a
/// short volume gives each slice once.
pub fn sample_indices(total: usize, n: usize) -> Vec<usize> {
    let n = n.min(total);
    match n {
        0 => vec![],
        1 => vec![0],
        _ => (0..n).map(|i| i * (total - 1) / (n - 1)).collect(),
    }
}

/// What kind of file the bytes hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Raster(ImageFormat),
    Dicom,
    Nifti,
}

/// Recognises the format from the content first, then from the name.
pub fn detect(bytes: &[u8], name: &str) -> Result<InputKind> {
    let lower = name.to_ascii_lowercase();
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        return Ok(InputKind::Dicom);
    }
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let nifti_magic = bytes.len() >= 348
        && (&bytes[344..347] == b"n+1" || &bytes[344..347] == b"ni1")
        || bytes.len() >= 8 && (&bytes[4..8] == b"n+2\0");
    if nifti_magic
        || gz && (lower.ends_with(".nii.gz") || lower.ends_with(".gz"))
        || lower.ends_with(".nii")
    {
        return Ok(InputKind::Nifti);
    }
    if let Ok(f) = image::guess_format(bytes) {
        return Ok(InputKind::Raster(f));
    }
    if lower.ends_with(".dcm") || lower.ends_with(".dicom") {
        return Ok(InputKind::Dicom);
    }
    if let Some(f) = ImageFormat::from_path(&lower).ok().filter(|f| {
        matches!(
            f,
            ImageFormat::Png
                | ImageFormat::Jpeg
                | ImageFormat::WebP
                | ImageFormat::Bmp
                | ImageFormat::Tiff
        )
    }) {
        return Ok(InputKind::Raster(f));
    }
    Err(ImagingError::UnknownFormat {
        name: name.to_string(),
    })
}

/// Reads one file's bytes into one image (2-D formats) or up to `opts.frames` images (volumes and
/// multi-frame files).
pub fn read_image(bytes: &[u8], name: &str, opts: &ReadOptions) -> Result<Vec<DecodedImage>> {
    if opts.frames == 0 || opts.frames > MAX_IMAGES {
        return Err(ImagingError::BadFrameCount {
            got: opts.frames,
            max: MAX_IMAGES,
        });
    }
    let images = match detect(bytes, name)? {
        InputKind::Raster(format) => vec![DecodedImage {
            image: decode_raster(bytes, name, format)?,
            label: name.to_string(),
        }],
        InputKind::Dicom => crate::dicom::read_dicom(bytes, name, opts)?,
        InputKind::Nifti => crate::nifti::read_nifti(bytes, name, opts)?,
    };
    for img in &images {
        check_size(name, img.image.width(), img.image.height())?;
    }
    Ok(images)
}

/// Reads several files for one prompt; more than [`MAX_IMAGES`] images in all is an error.
pub fn read_images<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    opts: &ReadOptions,
) -> Result<Vec<DecodedImage>> {
    let mut all = Vec::new();
    for (name, bytes) in files {
        all.extend(read_image(bytes, name, opts)?);
    }
    if all.len() > MAX_IMAGES {
        return Err(ImagingError::TooManyImages {
            count: all.len(),
            max: MAX_IMAGES,
        });
    }
    Ok(all)
}

pub(crate) fn check_size(name: &str, width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(ImagingError::Empty {
            name: name.to_string(),
            width: width.into(),
            height: height.into(),
        });
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(ImagingError::TooLarge {
            name: name.to_string(),
            width: width.into(),
            height: height.into(),
            limit: MAX_SIDE.into(),
        });
    }
    Ok(())
}

fn decode_raster(bytes: &[u8], name: &str, format: ImageFormat) -> Result<DynamicImage> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let (w, h) = reader.into_dimensions().map_err(|e| ImagingError::Decode {
        name: name.to_string(),
        detail: e.to_string(),
    })?;
    check_size(name, w, h)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    reader.decode().map_err(|e| ImagingError::Decode {
        name: name.to_string(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_qoq_formula() {
        assert_eq!(sample_indices(25, 2), vec![0, 24]);
        assert_eq!(sample_indices(10, 4), vec![0, 3, 6, 9]);
        assert_eq!(sample_indices(30, 3), vec![0, 14, 29]);
        assert_eq!(sample_indices(2, 4), vec![0, 1]);
        assert_eq!(sample_indices(1, 2), vec![0]);
    }
}
