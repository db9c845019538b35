//! M-RoPE positions and rotation tables, computed on the CPU exactly as transformers does in f32,
//! and uploaded per step (a decode step's table is head_dim/2 floats).

/// A token's (temporal, height, width) position; text tokens use the same index on all axes.
pub type Position = [u32; 3];

/// `1 / theta^(2i / head_dim)` in f32, as transformers computes `inv_freq`.
pub fn inv_freq(theta: f64, head_dim: usize) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            let e = (2 * i) as f32 / head_dim as f32;
            1.0 / (theta as f32).powf(e)
        })
        .collect()
}

/// For each rotary frequency, the axis (0 = t, 1 = h, 2 = w) whose position drives it:
/// frequencies are split by `mrope_section` and chunk j takes axis j % 3.
pub fn frequency_axes(mrope_section: &[usize]) -> Vec<usize> {
    mrope_section
        .iter()
        .enumerate()
        .flat_map(|(j, &n)| std::iter::repeat_n(j % 3, n))
        .collect()
}

/// (cos, sin), each (tokens, head_dim/2), for the given positions.
pub fn tables(positions: &[Position], inv_freq: &[f32], axes: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let mut cos = Vec::with_capacity(positions.len() * inv_freq.len());
    let mut sin = Vec::with_capacity(cos.capacity());
    for pos in positions {
        for (f, axis) in inv_freq.iter().zip(axes) {
            let angle = pos[*axis] as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}

/// Positions of a text-only run starting at `start` (after `rope_delta` from earlier images).
pub fn text_positions(start: usize, n: usize, rope_delta: i64) -> Vec<Position> {
    (0..n)
        .map(|i| {
            let p = (start as i64 + i as i64 + rope_delta).max(0) as u32;
            [p, p, p]
        })
        .collect()
}

/// Positions for a prompt holding images, as Qwen2.5-VL's `get_rope_index`: text runs count up;
/// an image of merged grid (t, h, w) starting after s text positions gets (s + frame, s + row,
/// s + col); text after it resumes at max + 1. Returns the positions and
/// `rope_delta = max position + 1 - len`, which decoding adds to the cache position.
/// `grids` are the merged (t, h, w) of each image in order.
pub fn prompt_positions(
    ids: &[u32],
    image_token_id: u32,
    grids: &[[u32; 3]],
) -> Result<(Vec<Position>, i64), String> {
    let mut out = Vec::with_capacity(ids.len());
    let mut next: u32 = 0;
    let mut i = 0;
    let mut images = grids.iter();
    while i < ids.len() {
        if ids[i] != image_token_id {
            out.push([next; 3]);
            next += 1;
            i += 1;
            continue;
        }
        let [t, h, w] = *images.next().ok_or("more image placeholders than images")?;
        let n = (t * h * w) as usize;
        if i + n > ids.len() || ids[i..i + n].iter().any(|&x| x != image_token_id) {
            return Err(format!(
                "an image of {t}x{h}x{w} merged tokens needs {n} consecutive <|image_pad|> tokens"
            ));
        }
        for f in 0..t {
            for r in 0..h {
                for c in 0..w {
                    // Still images: transformers scales the frame index by second_per_grid_t = 0.
                    let _ = f;
                    out.push([next, next + r, next + c]);
                }
            }
        }
        next += t.max(h).max(w);
        i += n;
    }
    if images.next().is_some() {
        return Err("more images than image placeholders in the prompt".into());
    }
    let delta = next as i64 - ids.len() as i64;
    Ok((out, delta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_map_frequencies_to_axes() {
        assert_eq!(frequency_axes(&[2, 3, 3]), vec![0, 0, 1, 1, 1, 2, 2, 2]);
        assert_eq!(frequency_axes(&[16, 24, 24]).len(), 64);
    }

    #[test]
    fn image_positions_follow_get_rope_index() {
        // 2 text tokens, a 1x2x3 image, 2 text tokens.
        let img = 99;
        let ids = [1, 2, img, img, img, img, img, img, 3, 4];
        let (pos, delta) = prompt_positions(&ids, img, &[[1, 2, 3]]).unwrap();
        assert_eq!(pos[..2], [[0, 0, 0], [1, 1, 1]]);
        assert_eq!(pos[2], [2, 2, 2]);
        assert_eq!(pos[7], [2, 3, 4]);
        assert_eq!(pos[8], [5, 5, 5]);
        assert_eq!(delta, 7 - 10);
        assert!(prompt_positions(&ids, img, &[]).is_err());
        assert!(prompt_positions(&ids[..5], img, &[[1, 2, 3]]).is_err());
    }
}
