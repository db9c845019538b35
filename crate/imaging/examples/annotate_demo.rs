//! Draws boxes given in the model's frame (after QoQ-Med's pixel range) back onto the original
//! image, the way `generate --annotate` does, and writes a JPEG:
//!
//!     cargo run --release -p qoqmed-imaging --example annotate_demo -- \
//!         tests/fixtures/images/raster/retina.jpg docs/annotated_retina.jpg
//!
//! The boxes are hand-placed illustrations (optic disc, fovea of scikit-image's retina photo,
//! 1411x1411 -> 724x724 in the model frame), not model output.

use qoqmed_imaging::{PixelRange, ReadOptions, apply_pixel_range, draw_boxes, read_image};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (input, output) = match args.as_slice() {
        [_, i, o] => (i, o),
        _ => return Err("usage: annotate_demo INPUT OUTPUT.jpg".into()),
    };
    let bytes = std::fs::read(input)?;
    let img = read_image(&bytes, input, &ReadOptions::default())?.remove(0);
    let model_frame = apply_pixel_range(&img.image, PixelRange::Qoq).dimensions();
    let boxes = vec![
        ("optic disc".to_string(), [60.0, 262.0, 172.0, 392.0]),
        ("fovea".to_string(), [318.0, 308.0, 410.0, 400.0]),
    ];
    let out = draw_boxes(&img.image.to_rgb8(), &boxes, model_frame);
    let mut file = std::io::BufWriter::new(std::fs::File::create(output)?);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 85).encode_image(&out)?;
    eprintln!(
        "model frame {model_frame:?}, original {:?}",
        out.dimensions()
    );
    Ok(())
}
