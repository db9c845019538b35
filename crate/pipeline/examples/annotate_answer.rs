//! Draws the boxes of a QoQ-Med answer over the original image, through the same code
//! `qoqmed generate --annotate` runs after generation (answer parsing, `place_boxes`, `annotate`),
//! and prints the `--json` form of the boxes:
//!
//!     cargo run --release -p qoqmed-pipeline --example annotate_answer -- \
//!         tests/fixtures/images/dicom/CR_RG1_every4th.dcm docs/annotated_cxr_answer.txt docs/annotated_cxr.png
//!
//! The answer text is given by hand (the repository's checkpoints have random weights and write no
//! boxes); its `bbox_2d` numbers are in the model's frame, the image after QoQ-Med's pixel range.

use qoqmed_imaging::{PixelRange, ReadOptions, apply_pixel_range, read_image};
use qoqmed_pipeline::{ImageFrame, annotate, place_boxes};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, image, answer, out] = args.as_slice() else {
        return Err("usage: annotate_answer IMAGE ANSWER.txt OUT.png".into());
    };
    let bytes = std::fs::read(image)?;
    let frames: Vec<ImageFrame> = read_image(&bytes, image, &ReadOptions::default())?
        .into_iter()
        .map(|d| ImageFrame {
            model_size: apply_pixel_range(&d.image, PixelRange::Qoq).dimensions(),
            label: d.label,
            original: d.image,
        })
        .collect();
    let mut boxes = qoqmed_output::parse(&std::fs::read_to_string(answer)?).boxes;
    place_boxes(&mut boxes, &frames);
    println!("{}", serde_json::to_string(&boxes)?);
    annotate(&boxes, &frames)[0].save_with_format(out, image::ImageFormat::Png)?;
    Ok(())
}
