//! The vision tower's bookkeeping on the CPU, exactly as transformers computes it
//! (`transformers.vision_utils`): the window partition (`get_vision_window_index`: merged units
//! gathered window by window, ragged windows at the right and bottom edges, empty padding windows
//! dropped), its inverse, the attention segments of window and full-attention blocks, and the
//! (row, col) of every patch for the 2-D rotary embedding. The GPU only sees the results: patch rows
//! already in window order, per-row segment bounds, per-row rope tables, the un-permute index.

use crate::error::{Error, Result};
use crate::model::rope;

/// Where every patch of a batch of images goes.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionLayout {
    /// Patches (rows of pixel values) in the batch.
    pub patches: usize,
    /// Patches per merged unit (spatial_merge_size^2).
    pub merge_unit: usize,
    /// For each merged unit in window order, its index in processor order (`window_index`).
    pub window_index: Vec<u32>,
    /// For each merged unit in processor order, its row in window order (`argsort(window_index)`).
    pub reverse_index: Vec<u32>,
    /// Patch-row boundaries of the attention windows (`cu_window_seqlens`, empty windows dropped).
    pub cu_window_seqlens: Vec<u32>,
    /// Patch-row boundaries of each image frame (`cu_seqlens`): full-attention blocks.
    pub cu_seqlens: Vec<u32>,
    /// (row, col) in patches of every patch, processor order (`get_vision_position_ids`).
    pub positions: Vec<[u32; 2]>,
    /// Merged tokens per image, the `<|image_pad|>` count of each.
    pub tokens_per_image: Vec<usize>,
    /// (t, h, w) in patches per image, as given.
    pub grids: Vec<[u32; 3]>,
}

impl VisionLayout {
    /// `grids`: (t, h, w) in patches per image, as the processor's `image_grid_thw`.
    /// `window_size` and `patch_size` in pixels.
    pub fn new(
        grids: &[[u32; 3]],
        merge: usize,
        window_size: usize,
        patch_size: usize,
    ) -> Result<Self> {
        let unit = merge * merge;
        // get_vision_window_index: window side in merged units.
        let ws = window_size / merge / patch_size;
        if ws == 0 || merge == 0 {
            return Err(Error::Config(format!(
                "vision window of {window_size} px holds no merged unit of {merge}x{merge} patches of {patch_size} px"
            )));
        }
        let mut out = VisionLayout {
            patches: 0,
            merge_unit: unit,
            window_index: Vec::new(),
            reverse_index: Vec::new(),
            cu_window_seqlens: vec![0],
            cu_seqlens: vec![0],
            positions: Vec::new(),
            tokens_per_image: Vec::new(),
            grids: grids.to_vec(),
        };
        let mut offset = 0usize;
        for (i, &[t, h, w]) in grids.iter().enumerate() {
            let (t, h, w) = (t as usize, h as usize, w as usize);
            if t == 0 || h == 0 || w == 0 || h % merge != 0 || w % merge != 0 {
                return Err(Error::Input(format!(
                    "image {}: patch grid {t}x{h}x{w} is not a whole number of {merge}x{merge} merge units",
                    i + 1
                )));
            }
            let (lh, lw) = (h / merge, w / merge);
            // transformers pads even when the side is a multiple (pad = ws then): that only adds
            // empty windows, which are dropped below like unique_consecutive does.
            let (nwh, nww) = (lh / ws + 1, lw / ws + 1);
            for f in 0..t {
                for wy in 0..nwh {
                    for wx in 0..nww {
                        let mut count = 0;
                        for y in wy * ws..((wy + 1) * ws).min(lh) {
                            for x in wx * ws..((wx + 1) * ws).min(lw) {
                                out.window_index
                                    .push((offset + f * lh * lw + y * lw + x) as u32);
                                count += 1;
                            }
                        }
                        if count > 0 {
                            let last = *out.cu_window_seqlens.last().unwrap_or(&0);
                            out.cu_window_seqlens.push(last + (count * unit) as u32);
                        }
                    }
                }
                let last = *out.cu_seqlens.last().unwrap_or(&0);
                out.cu_seqlens.push(last + (h * w) as u32);
                for by in 0..lh {
                    for bx in 0..lw {
                        for my in 0..merge {
                            for mx in 0..merge {
                                out.positions
                                    .push([(by * merge + my) as u32, (bx * merge + mx) as u32]);
                            }
                        }
                    }
                }
            }
            offset += t * lh * lw;
            out.tokens_per_image.push(t * lh * lw);
        }
        out.patches = offset * unit;
        if out.patches > u32::MAX as usize / 4 {
            return Err(Error::Input(format!(
                "{} patches are more than the vision tower can index",
                out.patches
            )));
        }
        out.reverse_index = vec![0; out.window_index.len()];
        for (row, &unit_index) in out.window_index.iter().enumerate() {
            out.reverse_index[unit_index as usize] = row as u32;
        }
        Ok(out)
    }

    /// Merged tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.window_index.len()
    }

    /// Patch rows (`cols` values each) reordered from processor order into window order, each
    /// followed by zeros up to `out_cols` values.
    pub fn permute_rows(&self, data: &[f32], cols: usize, out_cols: usize) -> Result<Vec<f32>> {
        if data.len() != self.patches * cols {
            return Err(Error::Input(format!(
                "{} pixel values for {} patches of {cols}",
                data.len(),
                self.patches
            )));
        }
        let mut out = vec![0f32; self.patches * out_cols.max(cols)];
        let unit = self.merge_unit;
        for (row, &u) in self.window_index.iter().enumerate() {
            for j in 0..unit {
                let src = &data[(u as usize * unit + j) * cols..][..cols];
                out[(row * unit + j) * out_cols.max(cols)..][..cols].copy_from_slice(src);
            }
        }
        Ok(out)
    }

    /// Per patch row in window order, the [lo, hi) key rows it attends to: its window
    /// (`full = false`) or its image frame (`full = true`). Flattened (patches, 2).
    pub fn segment_bounds(&self, full: bool) -> Vec<u32> {
        let cu = if full {
            &self.cu_seqlens
        } else {
            &self.cu_window_seqlens
        };
        let mut out = Vec::with_capacity(self.patches * 2);
        for pair in cu.windows(2) {
            for _ in pair[0]..pair[1] {
                out.extend_from_slice(&[pair[0], pair[1]]);
            }
        }
        out
    }

    /// cos and sin (patches, head_dim / 2), rows in window order: frequency j < head_dim / 4
    /// turns with the patch row, the others with its column (`Qwen2_5_VLVisionRotaryEmbedding`,
    /// inverse frequencies over head_dim / 2 computed in f32 like torch).
    pub fn rope_tables(&self, head_dim: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
        let inv = rope::inv_freq(theta, head_dim / 2);
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(self.patches * half);
        let mut sin = Vec::with_capacity(self.patches * half);
        for &u in &self.window_index {
            for j in 0..self.merge_unit {
                let [r, c] = self.positions[u as usize * self.merge_unit + j];
                for axis in [r, c] {
                    for f in &inv {
                        let angle = axis as f32 * f;
                        cos.push(angle.cos());
                        sin.push(angle.sin());
                    }
                }
            }
        }
        (cos, sin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_windows_follow_get_window_index() {
        // 9x7 merged units (18x14 patches), windows of 4x4: columns 4+4+1, rows 4+3.
        let l = VisionLayout::new(&[[1, 14, 18]], 2, 112, 14).unwrap();
        assert_eq!(l.tokens(), 63);
        let sizes: Vec<u32> = l
            .cu_window_seqlens
            .windows(2)
            .map(|p| (p[1] - p[0]) / 4)
            .collect();
        assert_eq!(sizes, vec![16, 16, 4, 12, 12, 3]);
        // First window: units (0..4) x (0..4) of a 9-wide grid.
        assert_eq!(&l.window_index[..5], &[0, 1, 2, 3, 9]);
        // The third window is the 1-wide right edge: column 8 of rows 0..4.
        assert_eq!(&l.window_index[32..36], &[8, 17, 26, 35]);
        for (row, &u) in l.window_index.iter().enumerate() {
            assert_eq!(l.reverse_index[u as usize], row as u32);
        }
        assert_eq!(l.cu_seqlens, vec![0, 252]);
    }

    #[test]
    fn second_image_indices_continue() {
        let l = VisionLayout::new(&[[1, 4, 4], [1, 2, 4]], 2, 112, 14).unwrap();
        assert_eq!(l.tokens_per_image, vec![4, 2]);
        assert_eq!(l.window_index, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(l.cu_window_seqlens, vec![0, 16, 24]);
        assert_eq!(l.cu_seqlens, vec![0, 16, 24]);
        assert_eq!(l.segment_bounds(true)[32..36], [16, 24, 16, 24]);
        // Processor order: 2x2 merge groups, so patch 2 is row 1, col 0.
        assert_eq!(l.positions[2], [1, 0]);
        assert!(VisionLayout::new(&[[1, 3, 4]], 2, 112, 14).is_err());
    }
}
