//! Images in a request: the files are read and preprocessed on the CPU (crate/imaging), encoded by
//! the vision tower in one command buffer, and their features replace the `<|image_pad|>` rows of
//! the prompt. Afterwards the answer's boxes are placed back on the original images.

use image::{DynamicImage, RgbImage};
use qoqmed_engine::gpu::{Recorder, Tensor, read_buffer};
use qoqmed_engine::model::{VisionLayout, VisionModel};
use qoqmed_imaging::{ReadOptions, draw_boxes};
use serde_json::Value;
use web_time::Instant;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::request::Request;

/// One image of the request, as the answer's boxes refer to it.
#[derive(Clone, Debug)]
pub struct ImageFrame {
    /// Where it came from (file name, and the slice for volumes).
    pub label: String,
    /// The decoded image (for a volume or multi-frame file: this slice), before any resize.
    pub original: DynamicImage,
    /// (width, height) of the frame the model's `bbox_2d` numbers refer to: the image after the
    /// pixel range (QoQ-Med's 524,288-pixel downscale), before the processor's smart_resize.
    pub model_size: (u32, u32),
}

/// The request's images, read and preprocessed, waiting for the GPU.
pub(crate) struct Prepared {
    pub frames: Vec<ImageFrame>,
    pub pixels: Vec<f32>,
    pub layout: VisionLayout,
}

impl Prepared {
    /// `<|image_pad|>` tokens per image.
    pub fn tokens_per_image(&self) -> &[usize] {
        &self.layout.tokens_per_image
    }

    /// Each image's (t, h, w) in merged tokens, what M-RoPE positions need.
    pub fn merged_grids(&self, merge: usize) -> Vec<[u32; 3]> {
        let m = merge as u32;
        self.layout
            .grids
            .iter()
            .map(|&[t, h, w]| [t, h / m, w / m])
            .collect()
    }
}

fn vision(model: &Model) -> Result<&VisionModel> {
    model.vision.as_ref().ok_or_else(|| {
        Error::Request(
            "this checkpoint has no vision tower (config.json has no vision_config, or the weights \
             hold no visual.* tensors), so it cannot look at images; use a Qwen2.5-VL / QoQ-Med-VL \
             checkpoint, or ask without --image"
                .into(),
        )
    })
}

/// Reads and preprocesses the request's images (CPU only); None when it has none.
pub(crate) fn prepare(model: &Model, req: &Request) -> Result<Option<Prepared>> {
    if req.images.is_empty() {
        return Ok(None);
    }
    let vision = vision(model)?;
    let opts = ReadOptions {
        frames: req.frames,
        window: req.window,
    };
    let decoded = qoqmed_imaging::read_images(
        req.images
            .iter()
            .map(|f| (f.name.as_str(), f.bytes.as_slice())),
        &opts,
    )?;
    let pv = qoqmed_imaging::preprocess(&decoded, &model.processor, req.pixel_range)?;
    if pv.cols != vision.cfg.patch_dim() {
        return Err(Error::Request(format!(
            "preprocessor_config.json makes patches of {} values but the vision tower takes {}; \
             the processor and the checkpoint do not belong together",
            pv.cols,
            vision.cfg.patch_dim()
        )));
    }
    let layout = vision.layout(&pv.grid_thw)?;
    let frames = decoded
        .into_iter()
        .zip(&pv.range_sizes)
        .map(|(d, &model_size)| ImageFrame {
            label: d.label,
            original: d.image,
            model_size,
        })
        .collect();
    Ok(Some(Prepared {
        frames,
        pixels: pv.data,
        layout,
    }))
}

/// Runs the vision tower over every image in one command buffer and waits for it, so the time
/// returned (seconds) is the tower's. Returns the features (tokens, hidden), prompt order.
pub(crate) async fn encode(model: &Model, prepared: &Prepared) -> Result<(Tensor, f64)> {
    let vision = vision(model)?;
    let t0 = Instant::now();
    let mut rec = Recorder::new(&model.gpu);
    let features = vision.encode(&mut rec, &prepared.layout.grids, &prepared.pixels)?;
    rec.submit()?;
    // A 4-byte readback waits for the GPU on native and web alike.
    read_buffer(&model.gpu, &features.buffer, 0, 4).await?;
    Ok((features, t0.elapsed().as_secs_f64()))
}

fn bbox(value: &Value) -> Option<[f64; 4]> {
    let list = value.get("bbox_2d")?.as_array()?;
    let v: Vec<f64> = list.iter().filter_map(Value::as_f64).collect();
    match v[..] {
        [a, b, c, d] if list.len() == 4 && v.iter().all(|x| x.is_finite()) => Some([a, b, c, d]),
        _ => None,
    }
}

/// Gives every box its image and its corners in that image's original pixels: `"image": i` (the
/// boxes refer to the first image: QoQ-Med answers with one list and was trained with boxes of a
/// single image) and `"bbox_original"` (`bbox_2d` scaled from the model's frame to the original
/// size; null when `bbox_2d` is not four numbers).
pub fn place_boxes(boxes: &mut [Value], frames: &[ImageFrame]) {
    let Some(frame) = frames.first() else {
        return;
    };
    let (ow, oh) = (frame.original.width(), frame.original.height());
    let (mw, mh) = frame.model_size;
    let (sx, sy) = (f64::from(ow) / f64::from(mw), f64::from(oh) / f64::from(mh));
    for b in boxes.iter_mut() {
        let original = bbox(b).map(|[x1, y1, x2, y2]| [x1 * sx, y1 * sy, x2 * sx, y2 * sy]);
        if let Value::Object(map) = b {
            map.insert("image".into(), 0.into());
            map.insert("bbox_original".into(), serde_json::json!(original));
        }
    }
}

/// Each image with its boxes (those whose `"image"` is its index, as [`place_boxes`] sets) and
/// their labels drawn over the original pixels.
pub fn annotate(boxes: &[Value], frames: &[ImageFrame]) -> Vec<RgbImage> {
    frames
        .iter()
        .enumerate()
        .map(|(i, frame)| {
            let mine: Vec<(String, [f64; 4])> = boxes
                .iter()
                .filter(|b| b.get("image").and_then(Value::as_u64) == Some(i as u64))
                .filter_map(|b| {
                    let label = match b.get("label") {
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    Some((label, bbox(b)?))
                })
                .collect();
            draw_boxes(&frame.original.to_rgb8(), &mine, frame.model_size)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn frame() -> ImageFrame {
        ImageFrame {
            label: "x.png".into(),
            original: DynamicImage::ImageRgb8(RgbImage::from_pixel(200, 100, Rgb([255; 3]))),
            // The model saw it at half size.
            model_size: (100, 50),
        }
    }

    #[test]
    fn boxes_get_their_image_and_original_pixels() {
        let text = "<think>t</think>```json\n[{\"bbox_2d\": [10, 10, 50, 40], \"label\": \"nodule\"}, \
                    {\"bbox_2d\": [1, 2], \"label\": \"bad\"}]\n```\\boxed{Nodule}";
        let mut boxes = qoqmed_output::parse(text).boxes;
        place_boxes(&mut boxes, &[frame()]);
        assert_eq!(boxes[0]["image"], 0);
        assert_eq!(
            boxes[0]["bbox_original"],
            serde_json::json!([20.0, 20.0, 100.0, 80.0])
        );
        assert_eq!(boxes[0]["bbox_2d"], serde_json::json!([10, 10, 50, 40]));
        assert_eq!(boxes[1]["image"], 0);
        assert!(boxes[1]["bbox_original"].is_null());
        // Without images the boxes keep only the model's keys.
        let mut plain = qoqmed_output::parse(text).boxes;
        place_boxes(&mut plain, &[]);
        assert!(plain[0].get("image").is_none());

        let pictures = annotate(&boxes, &[frame(), frame()]);
        assert_eq!(pictures.len(), 2);
        // The box's left edge at original x = 20, y = 50 is drawn on image 0 only.
        assert_ne!(pictures[0].get_pixel(20, 50), &Rgb([255; 3]));
        assert_eq!(pictures[1].get_pixel(20, 50), &Rgb([255; 3]));
        assert_eq!(
            pictures[0].get_pixel(60, 50),
            &Rgb([255; 3]),
            "inside stays clear"
        );
    }
}
