//! DICOM images through dicom-rs: decode the pixel data (any transfer syntax this build's pure-Rust
//! codecs handle), then the grey-level pipeline of PS3.3 C.11 (Modality LUT = rescale slope and
//! intercept, VOI window, MONOCHROME1 inversion) down to 8 bits, or colour (RGB, YBR_FULL,
//! YBR_FULL_422, PALETTE COLOR) to RGB. Multi-frame files give N uniformly sampled frames.

use std::io::Cursor;

use dicom_core::value::PrimitiveValue;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{
    DecodedPixelData, PhotometricInterpretation, PixelDecoder, PixelRepresentation,
    PlanarConfiguration,
};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use image::{DynamicImage, GrayImage, RgbImage};

use crate::error::{ImagingError, Result};
use crate::read::{DecodedImage, ReadOptions, Window, check_size, sample_indices};
use crate::window::{VoiFunction, window_to_u8};

/// Reads a DICOM file's bytes into `opts.frames` sampled frames (1 for a single-frame file).
pub fn read_dicom(bytes: &[u8], name: &str, opts: &ReadOptions) -> Result<Vec<DecodedImage>> {
    let err = |detail: String| ImagingError::Dicom {
        name: name.to_string(),
        detail,
    };
    crate::dicom_scan::check_lengths(bytes)
        .map_err(|d| err(format!("corrupt or truncated: {d}")))?;
    let obj: DefaultDicomObject = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Auto)
        .from_reader(Cursor::new(bytes))
        .map_err(|e| err(e.to_string()))?;
    let uid = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let encapsulated = match TransferSyntaxRegistry.get(&uid) {
        Some(ts) if ts.can_decode_all() => ts.is_encapsulated_pixel_data(),
        found => {
            return Err(ImagingError::UnsupportedTransferSyntax {
                name: name.to_string(),
                syntax: found.map_or("unknown".to_string(), |t| t.name().to_string()),
                uid,
            });
        }
    };
    if obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_none() {
        return Err(err(
            "no Pixel Data element: is this an image (not a report or waveform)?".into(),
        ));
    }
    let frames_tag = obj.element_opt(tags::NUMBER_OF_FRAMES).ok().flatten();
    let total = frames_tag
        .and_then(|e| e.to_int::<i64>().ok())
        .unwrap_or(1)
        .max(1) as usize;
    // Before any decoder sizes its buffers from these.
    let dim = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_int::<u32>().ok())
            .unwrap_or(0)
    };
    check_size(name, dim(tags::COLUMNS), dim(tags::ROWS))?;
    let pi = photometric(&obj);
    let palette = if pi.as_deref() == Some("PALETTE COLOR") {
        Some(Palette::from_obj(&obj, name)?)
    } else {
        None
    };
    let mut out = Vec::new();
    for f in sample_indices(total, opts.frames) {
        let label = if total > 1 {
            format!("{name} frame {} of {total}", f + 1)
        } else {
            name.to_string()
        };
        if pi.as_deref() == Some("YBR_FULL_422") && !encapsulated {
            // dicom-pixeldata sizes native frames as 3 samples per pixel; 4:2:2 stores 2.
            out.push(DecodedImage {
                image: ybr422_native(&obj, f, name)?,
                label,
            });
            continue;
        }
        if uid == RLE_LOSSLESS {
            check_rle_frame(&obj, f)
                .map_err(|d| err(format!("frame {f}: corrupt RLE data: {d}")))?;
        }
        // The codecs are third-party code: natively a panic on hostile data becomes an error too
        // (wasm aborts on panic, hence the RLE pre-check above for the decoder known to panic).
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            obj.decode_pixel_data_frame(f as u32)
        }))
        .map_err(|_| {
            err(format!(
                "frame {f}: the pixel data decoder failed on corrupt data"
            ))
        })?
        .map_err(|e| err(format!("frame {f}: {}", chain(&e))))?;
        check_size(name, decoded.columns(), decoded.rows())?;
        let image = frame_image(&decoded, name, opts.window, palette.as_ref())?;
        out.push(DecodedImage { image, label });
    }
    Ok(out)
}

const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Walks the RLE header and PackBits segments of one frame (PS3.5 G.3) without decoding, because
/// dicom-rs' RLE decoder indexes out of bounds on short segments.
fn check_rle_frame(obj: &DefaultDicomObject, frame: usize) -> std::result::Result<(), String> {
    let int = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_int::<usize>().ok())
            .unwrap_or(0)
    };
    let pixels = int(tags::ROWS) * int(tags::COLUMNS);
    let segments_needed = int(tags::SAMPLES_PER_PIXEL) * int(tags::BITS_ALLOCATED).div_ceil(8);
    let px = obj.element(tags::PIXEL_DATA).map_err(|e| e.to_string())?;
    let frag = match px.value() {
        dicom_core::DicomValue::PixelSequence(seq) => {
            seq.fragments().get(frame).ok_or("missing fragment")?
        }
        _ => return Err("pixel data is not encapsulated".into()),
    };
    let le = |i: usize| {
        frag.get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let n = le(0).ok_or("fragment shorter than the RLE header")?;
    if frag.len() < 64 || n == 0 || n > 15 || n < segments_needed {
        return Err(format!(
            "{n} segments in a {}-byte fragment, {segments_needed} needed",
            frag.len()
        ));
    }
    let offsets: Vec<usize> = (0..n)
        .map(|k| le(4 + 4 * k).unwrap_or(usize::MAX))
        .collect();
    for k in 0..n {
        let end = if k + 1 < n {
            offsets[k + 1]
        } else {
            frag.len()
        };
        let seg = frag
            .get(offsets[k]..end)
            .ok_or("segment offsets out of range")?;
        let (mut i, mut out) = (0usize, 0usize);
        while out < pixels {
            let c = *seg.get(i).ok_or("segment ends early")? as i8;
            i += 1;
            if c >= 0 {
                let run = c as usize + 1;
                if i + run > seg.len() {
                    return Err("literal run past the segment end".into());
                }
                i += run;
                out += run;
            } else if c != -128 {
                seg.get(i).ok_or("segment ends early")?;
                i += 1;
                out += 1 + c.unsigned_abs() as usize;
            }
        }
    }
    Ok(())
}

/// An error and its causes, so "could not decode" says why.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Uncompressed 8-bit YBR_FULL_422 (PS3.5 8.2.1): each pixel pair is stored Y1 Y2 Cb Cr.
fn ybr422_native(obj: &DefaultDicomObject, frame: usize, name: &str) -> Result<DynamicImage> {
    let bad = |detail: String| ImagingError::UnsupportedDicom {
        name: name.to_string(),
        detail,
    };
    let int = |tag| obj.element(tag).ok().and_then(|e| e.to_int::<u32>().ok());
    let (rows, cols) = (
        int(tags::ROWS).unwrap_or(0),
        int(tags::COLUMNS).unwrap_or(0),
    );
    check_size(name, cols, rows)?;
    if int(tags::BITS_ALLOCATED) != Some(8) || cols % 2 != 0 {
        return Err(bad(
            "YBR_FULL_422 needs 8 bits allocated and an even number of columns".into(),
        ));
    }
    let px = obj
        .element(tags::PIXEL_DATA)
        .map_err(|e| bad(e.to_string()))?;
    let bytes = px.to_bytes().map_err(|e| bad(e.to_string()))?;
    let len = rows as usize * cols as usize * 2;
    let data = bytes
        .get(frame * len..(frame + 1) * len)
        .ok_or_else(|| bad(format!("pixel data too short for frame {frame}")))?;
    let mut rgb = Vec::with_capacity(rows as usize * cols as usize * 3);
    for q in data.chunks_exact(4) {
        rgb.extend_from_slice(&ybr_to_rgb([q[0], q[2], q[3]]));
        rgb.extend_from_slice(&ybr_to_rgb([q[1], q[2], q[3]]));
    }
    RgbImage::from_raw(cols, rows, rgb)
        .map(DynamicImage::ImageRgb8)
        .ok_or_else(|| bad("frame size mismatch".into()))
}

fn photometric(obj: &DefaultDicomObject) -> Option<String> {
    let e = obj
        .element_opt(tags::PHOTOMETRIC_INTERPRETATION)
        .ok()
        .flatten()?;
    Some(e.to_str().ok()?.trim().to_string())
}

/// The samples of the decoded frame as f64, after masking to Bits Stored and sign extension.
fn samples(d: &DecodedPixelData<'_>, name: &str) -> Result<Vec<f64>> {
    let bad = |detail: String| ImagingError::UnsupportedDicom {
        name: name.to_string(),
        detail,
    };
    let signed = d.pixel_representation() == PixelRepresentation::Signed;
    let stored = u32::from(d.bits_stored()).clamp(1, 32);
    let n = d.rows() as usize * d.columns() as usize * usize::from(d.samples_per_pixel());
    let data = d
        .frame_data(0)
        .map_err(|e| bad(format!("pixel data shorter than the header says ({e})")))?;
    let extend = |raw: u32| -> f64 {
        if stored >= 32 {
            return if signed {
                f64::from(raw as i32)
            } else {
                f64::from(raw)
            };
        }
        let v = raw & ((1u32 << stored) - 1);
        if signed && (v >> (stored - 1)) & 1 == 1 {
            f64::from(v) - (1u64 << stored) as f64
        } else {
            f64::from(v)
        }
    };
    let vals: Vec<f64> = match d.bits_allocated() {
        8 => data.iter().take(n).map(|&b| extend(u32::from(b))).collect(),
        16 => data
            .chunks_exact(2)
            .take(n)
            .map(|c| extend(u32::from(u16::from_ne_bytes([c[0], c[1]]))))
            .collect(),
        32 => data
            .chunks_exact(4)
            .take(n)
            .map(|c| extend(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        b => {
            return Err(bad(format!(
                "{b} bits allocated per sample (8, 16 and 32 are supported)"
            )));
        }
    };
    if vals.len() < n {
        return Err(bad(format!(
            "pixel data holds {} samples, the header needs {n}",
            vals.len()
        )));
    }
    Ok(vals)
}

fn frame_image(
    d: &DecodedPixelData<'_>,
    name: &str,
    window: Option<Window>,
    palette: Option<&Palette>,
) -> Result<DynamicImage> {
    let (w, h) = (d.columns(), d.rows());
    let spp = d.samples_per_pixel();
    let vals = samples(d, name)?;
    let pi = d.photometric_interpretation().clone();
    let bad = |detail: String| ImagingError::UnsupportedDicom {
        name: name.to_string(),
        detail,
    };
    match (spp, &pi) {
        (1, PhotometricInterpretation::Monochrome1 | PhotometricInterpretation::Monochrome2) => {
            let rescale = d.rescale().ok().and_then(|r| r.first().copied());
            let (slope, intercept) = rescale.map_or((1.0, 0.0), |r| (r.slope, r.intercept));
            let x: Vec<f64> = vals.iter().map(|v| v * slope + intercept).collect();
            let file_window = d.window().ok().flatten().and_then(|ws| ws.first().copied());
            let function = match d
                .voi_lut_function()
                .ok()
                .flatten()
                .and_then(|f| f.first().copied())
            {
                Some(dicom_pixeldata::VoiLutFunction::LinearExact) => VoiFunction::LinearExact,
                Some(dicom_pixeldata::VoiLutFunction::Sigmoid) => VoiFunction::Sigmoid,
                _ => VoiFunction::Linear,
            };
            let (win, function) = match (window, file_window) {
                (Some(win), _) => (win, function),
                (None, Some(fw)) if fw.width > 0.0 => (
                    Window {
                        center: fw.center,
                        width: fw.width,
                    },
                    function,
                ),
                _ => (crate::window::min_max_window(&x), VoiFunction::LinearExact),
            };
            let mut y = window_to_u8(&x, win, function);
            if pi == PhotometricInterpretation::Monochrome1 {
                y.iter_mut().for_each(|v| *v = 255 - *v);
            }
            GrayImage::from_raw(w, h, y)
                .map(DynamicImage::ImageLuma8)
                .ok_or_else(|| bad("frame size mismatch".into()))
        }
        (1, PhotometricInterpretation::PaletteColor) => {
            let lut = palette.ok_or_else(|| bad("PALETTE COLOR without a palette".into()))?;
            let mut rgb = Vec::with_capacity(vals.len() * 3);
            for v in &vals {
                rgb.extend_from_slice(&lut.lookup(*v));
            }
            RgbImage::from_raw(w, h, rgb)
                .map(DynamicImage::ImageRgb8)
                .ok_or_else(|| bad("frame size mismatch".into()))
        }
        (3, _) => {
            let shift = i32::from(d.bits_stored()).saturating_sub(8).max(0);
            let to8 = |v: f64| ((v.max(0.0) as u32) >> shift).min(255) as u8;
            let npix = w as usize * h as usize;
            let pixel = |i: usize| -> [f64; 3] {
                if d.planar_configuration() == PlanarConfiguration::PixelFirst {
                    [vals[i], vals[npix + i], vals[2 * npix + i]]
                } else {
                    [vals[3 * i], vals[3 * i + 1], vals[3 * i + 2]]
                }
            };
            let ybr = matches!(
                pi,
                PhotometricInterpretation::YbrFull | PhotometricInterpretation::YbrFull422
            );
            let mut rgb = Vec::with_capacity(npix * 3);
            for i in 0..npix {
                let p = pixel(i).map(to8);
                rgb.extend_from_slice(&if ybr { ybr_to_rgb(p) } else { p });
            }
            RgbImage::from_raw(w, h, rgb)
                .map(DynamicImage::ImageRgb8)
                .ok_or_else(|| bad("frame size mismatch".into()))
        }
        _ => Err(bad(format!(
            "{spp} samples per pixel with photometric interpretation {pi}"
        ))),
    }
}

/// ITU-R BT.601 full-range YCbCr to RGB, as PS3.3 C.7.6.3.1.2 defines YBR_FULL (and pydicom's
/// `convert_color_space`).
fn ybr_to_rgb([y, cb, cr]: [u8; 3]) -> [u8; 3] {
    let (y, cb, cr) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
    let c = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    [
        c(y + 1.402 * cr),
        c(y - 0.344_136 * cb - 0.714_136 * cr),
        c(y + 1.772 * cb),
    ]
}

/// A PALETTE COLOR lookup table (PS3.3 C.7.6.3.1.5), entries already reduced to 8 bits.
struct Palette {
    first: i64,
    tables: [Vec<u8>; 3],
}

impl Palette {
    fn from_obj(obj: &DefaultDicomObject, name: &str) -> Result<Self> {
        let bad = |detail: String| ImagingError::UnsupportedDicom {
            name: name.to_string(),
            detail,
        };
        let descs = [
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        ];
        let datas = [
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ];
        let mut first = 0;
        let mut tables: [Vec<u8>; 3] = Default::default();
        for (k, (dt, lt)) in descs.iter().zip(&datas).enumerate() {
            let desc: Vec<i64> = obj
                .element(*dt)
                .ok()
                .and_then(|e| e.to_multi_int::<i64>().ok())
                .filter(|d| d.len() == 3)
                .ok_or_else(|| {
                    bad("PALETTE COLOR without a valid lookup table descriptor".into())
                })?;
            let entries = if desc[0] == 0 {
                65536
            } else {
                desc[0].rem_euclid(65536)
            } as usize;
            first = desc[1];
            let raw = obj
                .element(*lt)
                .map_err(|_| bad("PALETTE COLOR without lookup table data (segmented palettes are not supported)".into()))?;
            let bytes: Vec<u8> = match raw.value().primitive() {
                Some(PrimitiveValue::U16(v)) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                Some(p) => p.to_bytes().into_owned(),
                None => return Err(bad("palette data is not a plain value".into())),
            };
            // 8-bit tables may be packed one entry per byte; otherwise one entry per 16-bit word,
            // reduced to 8 bits by its high byte (pydicom keeps 16 bits; we need 8 for the model).
            tables[k] = if bytes.len() == entries {
                bytes
            } else if bytes.len() >= entries * 2 {
                let words = bytes
                    .chunks_exact(2)
                    .take(entries)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]));
                if desc[2] == 8 {
                    words.map(|w| w.min(255) as u8).collect()
                } else {
                    words.map(|w| (w >> 8) as u8).collect()
                }
            } else {
                return Err(bad(format!(
                    "palette data has {} bytes for {entries} entries",
                    bytes.len()
                )));
            };
        }
        Ok(Self { first, tables })
    }

    fn lookup(&self, v: f64) -> [u8; 3] {
        std::array::from_fn(|k| {
            let t = &self.tables[k];
            // Values below the first mapped one take entry 0, above the table its last entry.
            let i = (v as i64).saturating_sub(self.first).max(0) as usize;
            t.get(i.min(t.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        })
    }
}
