//! A micro-batch of (prompt, completion) sequences laid out for one forward: prompts left-padded
//! so every completion starts at the same column (only those columns go through the head),
//! completions right-padded. Built on the CPU; M-RoPE tables come from the engine's rope module,
//! so burn and the engine rotate by bit-identical angles.

use burn::tensor::Tensor;
use qoqmed_engine::model::rope::{self, Position};

use crate::error::{Error, Result};

/// Additive mask for keys a query may not see. Finite, so a fully padded row stays finite.
const MASKED: f32 = -1e30;

pub struct Sequence<'a> {
    pub prompt: &'a [u32],
    /// M-RoPE positions of the prompt ([`rope::prompt_positions`]).
    pub positions: &'a [Position],
    /// Added to a completion token's cache position (nonzero after images).
    pub rope_delta: i64,
    pub completion: &'a [u32],
}

/// Embedding rows replaced by features (image / ECG tokens from the engine's encoders).
pub struct Override {
    pub features: Tensor<2>, // (rows, hidden)
    /// (batch * len): 0 keeps the token embedding, k > 0 takes `features` row k - 1.
    pub row_of: Vec<i32>,
}

pub struct Inputs {
    pub batch: usize,
    /// Columns per sequence: the longest prompt + the longest completion - 1 (the last completion
    /// token is only a target).
    pub len: usize,
    pub completion_len: usize,
    /// Left padding of each sequence.
    pub pad: Vec<usize>,
    pub ids: Vec<i32>,     // (batch, len)
    pub cos: Vec<f32>,     // (batch, len, head_dim) = cat(freqs, freqs)
    pub sin: Vec<f32>,     // (batch, len, head_dim)
    pub mask: Vec<f32>,    // (batch, len, len) 0 or MASKED
    pub targets: Vec<i32>, // (batch, completion_len)
    pub valid: Vec<f32>,   // (batch, completion_len) 1 for a real completion token
    pub overrides: Option<Override>,
}

impl Inputs {
    pub fn new(seqs: &[Sequence<'_>], inv_freq: &[f32], axes: &[usize]) -> Result<Self> {
        if seqs.is_empty() {
            return Err(Error::Run("an empty batch".into()));
        }
        let p = seqs.iter().map(|s| s.prompt.len()).max().unwrap_or(0);
        let c = seqs.iter().map(|s| s.completion.len()).max().unwrap_or(0);
        if seqs
            .iter()
            .any(|s| s.prompt.is_empty() || s.positions.len() != s.prompt.len())
        {
            return Err(Error::Run(
                "every sequence needs a prompt with one position per token".into(),
            ));
        }
        let len = p + c.saturating_sub(1);
        let half = inv_freq.len();
        let hd = 2 * half;
        let b = seqs.len();
        let mut inputs = Inputs {
            batch: b,
            len,
            completion_len: c,
            pad: Vec::with_capacity(b),
            ids: vec![0; b * len],
            cos: vec![0.0; b * len * hd],
            sin: vec![0.0; b * len * hd],
            mask: vec![MASKED; b * len * len],
            targets: vec![0; b * c],
            valid: vec![0.0; b * c],
            overrides: None,
        };
        for (i, s) in seqs.iter().enumerate() {
            let pad = p - s.prompt.len();
            inputs.pad.push(pad);
            let fed = s.completion.len().saturating_sub(1);
            let mut positions: Vec<Position> = s.positions.to_vec();
            positions.extend(rope::text_positions(s.prompt.len(), fed, s.rope_delta));
            let (cos, sin) = rope::tables(&positions, inv_freq, axes);
            let tokens = s.prompt.iter().chain(&s.completion[..fed]);
            for (j, &id) in tokens.enumerate() {
                let col = pad + j;
                inputs.ids[i * len + col] = id as i32;
                let src = &cos[j * half..(j + 1) * half];
                let dst = (i * len + col) * hd;
                inputs.cos[dst..dst + half].copy_from_slice(src);
                inputs.cos[dst + half..dst + hd].copy_from_slice(src);
                let src = &sin[j * half..(j + 1) * half];
                inputs.sin[dst..dst + half].copy_from_slice(src);
                inputs.sin[dst + half..dst + hd].copy_from_slice(src);
            }
            for row in 0..len {
                for col in pad..=row {
                    inputs.mask[(i * len + row) * len + col] = 0.0;
                }
            }
            for (j, &t) in s.completion.iter().enumerate() {
                inputs.targets[i * c + j] = t as i32;
                inputs.valid[i * c + j] = 1.0;
            }
        }
        Ok(inputs)
    }

    /// The column of sequence `i`'s prompt token `j` (for feature overrides).
    pub fn column(&self, i: usize, j: usize) -> usize {
        self.pad[i] + j
    }

    /// Real completion tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.valid.iter().filter(|&&v| v > 0.0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_left_pads_prompts_and_aligns_completions() {
        let inv = rope::inv_freq(10000.0, 4);
        let axes = rope::frequency_axes(&[1, 1, 0]);
        let (p1, _) = rope::prompt_positions(&[5, 6, 7], 99, &[]).unwrap();
        let (p2, _) = rope::prompt_positions(&[8], 99, &[]).unwrap();
        let seqs = [
            Sequence {
                prompt: &[5, 6, 7],
                positions: &p1,
                rope_delta: 0,
                completion: &[1, 2],
            },
            Sequence {
                prompt: &[8],
                positions: &p2,
                rope_delta: 0,
                completion: &[3, 4, 9],
            },
        ];
        let x = Inputs::new(&seqs, &inv, &axes).unwrap();
        assert_eq!((x.len, x.completion_len), (5, 3));
        assert_eq!(x.ids, vec![5, 6, 7, 1, 0, 0, 0, 8, 3, 4]);
        assert_eq!(x.targets, vec![1, 2, 0, 3, 4, 9]);
        assert_eq!(x.valid, vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
        // Sequence 1's first real token (column 2) sees only itself; its pads see nothing.
        let row = |i: usize, r: usize| &x.mask[(i * 5 + r) * 5..(i * 5 + r + 1) * 5];
        assert_eq!(row(1, 2), &[MASKED, MASKED, 0.0, MASKED, MASKED]);
        assert_eq!(row(1, 4), &[MASKED, MASKED, 0.0, 0.0, 0.0]);
        assert!(row(1, 0).iter().all(|&m| m == MASKED));
        // Its completion token 3 (column 3) is at text position 1.
        let hd = 4;
        let at = |i: usize, col: usize| x.cos[(i * 5 + col) * hd];
        assert_eq!(at(1, 3), (1.0f32 * inv[0]).cos());
        assert_eq!(at(0, 3), (3.0f32 * inv[0]).cos());
    }
}
