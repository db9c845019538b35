//! Medical image readers and the Qwen2.5-VL image preprocessing, on the CPU, for native and wasm32.
//!
//! Flow: [`read_images`] (bytes of PNG/JPEG/WebP/BMP/TIFF, DICOM, NIfTI; volumes and multi-frame
//! files become up to 4 sampled slices) -> [`preprocess`] (QoQ-Med's nearest-neighbour pixel range,
//! then the model processor from `preprocessor_config.json`) -> [`PixelValues`] for the vision
//! tower. [`draw_boxes`] draws the model's boxes back on the original image. Readers never touch
//! the file system and never panic on bad input: every failure is an [`ImagingError`].

mod annotate;
mod dicom;
mod dicom_scan;
mod error;
mod nifti;
mod processor;
mod range;
mod read;
pub mod resize;
mod window;

pub use annotate::draw_boxes;
pub use error::{ImagingError, Result};
pub use processor::{PixelValues, ProcessorConfig, preprocess, process_one};
pub use range::{PixelRange, QOQ_MAX_PIXELS, QOQ_MIN_PIXELS, apply_pixel_range, qoq_size};
pub use read::{
    DecodedImage, InputKind, MAX_IMAGES, MAX_SIDE, ReadOptions, Window, detect, read_image,
    read_images, sample_indices,
};
pub use window::{VoiFunction, window_to_u8};

/// The DICOM transfer syntaxes this build decodes (UID, name), for documentation and error messages.
pub fn supported_transfer_syntaxes() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .iter()
        .filter(|ts| ts.can_decode_all())
        .map(|ts| (ts.uid().to_string(), ts.name().to_string()))
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn transfer_syntax_list_has_the_pure_rust_codecs() {
        let list = super::supported_transfer_syntaxes();
        for (uid, name) in &list {
            eprintln!("| `{uid}` | {name} |");
        }
        let has = |uid: &str| list.iter().any(|(u, _)| u == uid);
        // Explicit VR LE, big endian, deflate, JPEG baseline, JPEG lossless SV1, RLE, JPEG 2000 lossless.
        for uid in [
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.1.2.2",
            "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.5",
            "1.2.840.10008.1.2.4.90",
        ] {
            assert!(has(uid), "{uid} missing");
        }
        // JPEG-LS needs the C library CharLS: not in this build.
        assert!(!has("1.2.840.10008.1.2.4.80"));
    }
}
