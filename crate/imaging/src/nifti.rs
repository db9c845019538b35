//! NIfTI-1 volumes (`.nii`, `.nii.gz`) through the `nifti` crate, read from bytes. A volume becomes
//! N uniformly sampled axial slices (third axis) of the first 3-D volume (t = 0 of a 4-D file),
//! intensities scaled by scl_slope/scl_inter and mapped to 8 bits by the caller's window or else the
//! min..max of the sampled slices. Slices are shown as radiology viewers and nibabel's
//! `np.rot90(slice)` do: columns along +x, rows from the last y to the first.

use std::io::{Cursor, Read};

use flate2::read::GzDecoder;
use image::{DynamicImage, GrayImage};
use nifti::{InMemNiftiObject, NiftiHeader, NiftiObject, NiftiType, RandomAccessNiftiVolume};

use crate::error::{ImagingError, Result};
use crate::read::{DecodedImage, ReadOptions, check_size, sample_indices};
use crate::window::{VoiFunction, min_max_window, window_to_u8};

/// Largest volume accepted, in bytes of voxel data (guards against a corrupt header's dims).
const MAX_VOLUME_BYTES: u64 = 4 << 30;

pub fn read_nifti(bytes: &[u8], name: &str, opts: &ReadOptions) -> Result<Vec<DecodedImage>> {
    let err = |detail: String| ImagingError::Nifti {
        name: name.to_string(),
        detail,
    };
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let open = || -> Box<dyn Read + '_> {
        if gz {
            Box::new(GzDecoder::new(Cursor::new(bytes)))
        } else {
            Box::new(Cursor::new(bytes))
        }
    };
    let header = NiftiHeader::from_reader(open()).map_err(|e| err(format!("bad header: {e}")))?;
    let dims = header
        .dim()
        .map_err(|e| err(format!("bad dimensions: {e}")))?
        .to_vec();
    let datatype = header
        .data_type()
        .map_err(|e| err(format!("bad datatype: {e}")))?;
    if matches!(
        datatype,
        NiftiType::Rgb24
            | NiftiType::Rgba32
            | NiftiType::Complex64
            | NiftiType::Complex128
            | NiftiType::Complex256
    ) {
        return Err(err(format!(
            "voxel type {datatype:?} is not supported (grey-level volumes only)"
        )));
    }
    let voxels: u64 = dims.iter().map(|&d| u64::from(d)).product();
    if voxels.saturating_mul(datatype.size_of() as u64) > MAX_VOLUME_BYTES {
        return Err(err(format!(
            "dimensions {dims:?} describe more than 4 GiB of voxels"
        )));
    }
    if !gz && voxels.saturating_mul(datatype.size_of() as u64) > bytes.len() as u64 {
        return Err(err(format!(
            "file is truncated: dimensions {dims:?} need more bytes than the file's {}",
            bytes.len()
        )));
    }
    let obj = InMemNiftiObject::from_reader(open()).map_err(|e| err(e.to_string()))?;
    let vol = obj.volume();
    let (nx, ny) = (
        dims.first().copied().unwrap_or(0),
        dims.get(1).copied().unwrap_or(1),
    );
    let nz = usize::from(dims.get(2).copied().unwrap_or(1)).max(1);
    check_size(name, u32::from(nx), u32::from(ny))?;
    let ndim = dims.len();
    let picks = sample_indices(nz, opts.frames);
    let mut slices: Vec<Vec<f64>> = Vec::with_capacity(picks.len());
    for &z in &picks {
        let mut vals = Vec::with_capacity(usize::from(nx) * usize::from(ny));
        let mut coords = vec![0u16; ndim];
        for y in (0..ny).rev() {
            for x in 0..nx {
                coords[0] = x;
                if ndim > 1 {
                    coords[1] = y;
                }
                if ndim > 2 {
                    coords[2] = z as u16;
                }
                vals.push(vol.get_f64(&coords).map_err(|e| err(e.to_string()))?);
            }
        }
        slices.push(vals);
    }
    let window = match opts.window {
        Some(w) => w,
        None => min_max_window(&slices.concat()),
    };
    let function = if opts.window.is_some() {
        VoiFunction::Linear
    } else {
        VoiFunction::LinearExact
    };
    picks
        .iter()
        .zip(slices)
        .map(|(&z, vals)| {
            let img = GrayImage::from_raw(
                u32::from(nx),
                u32::from(ny),
                window_to_u8(&vals, window, function),
            )
            .ok_or_else(|| err("slice size mismatch".into()))?;
            let label = if nz > 1 {
                format!("{name} slice {} of {nz}", z + 1)
            } else {
                name.to_string()
            };
            Ok(DecodedImage {
                image: DynamicImage::ImageLuma8(img),
                label,
            })
        })
        .collect()
}
