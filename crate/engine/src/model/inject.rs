//! Feature injection into the language model (contract 5): rows of a GPU tensor replace the token
//! embeddings at given prompt positions, as transformers' `masked_scatter` of image features over
//! the `<|image_pad|>` runs (and QoQ-Med-Omni's ECG vector over `<|time_series_pad|>`). Recorded
//! in the same command buffer as the forward that reads the embeddings.

use crate::error::{Error, Result};
use crate::gpu::{Recorder, Tensor, ops};

/// Rows of `features` (rows, hidden) that replace the embeddings of prompt positions
/// `positions[r]` (cache rows counted from the start of the prompt), one row each, in order.
#[derive(Clone, Debug)]
pub struct Injection {
    pub features: Tensor,
    pub positions: Vec<usize>,
}

impl Injection {
    /// Every occurrence of `token_id` in `prompt` takes the next row of `features`, as
    /// transformers does; their counts must agree.
    pub fn at_token(prompt: &[u32], token_id: u32, features: Tensor) -> Result<Self> {
        let positions: Vec<usize> = prompt
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == token_id)
            .map(|(i, _)| i)
            .collect();
        let rows = features.shape.first().copied().unwrap_or(0);
        if positions.len() != rows {
            return Err(Error::Input(format!(
                "the prompt holds {} placeholder tokens (id {token_id}) but {rows} feature rows were given; \
                 the prompt and its inputs do not belong together",
                positions.len()
            )));
        }
        Ok(Self {
            features,
            positions,
        })
    }

    /// Records the replacement for a forward of `n` tokens at cache rows start..start + n whose
    /// embeddings are in `x` (n, hidden). Nothing is recorded when no position falls in the range.
    pub fn record(&self, rec: &mut Recorder, start: usize, n: usize, x: &Tensor) -> Result<()> {
        let hidden = x.shape.last().copied().unwrap_or(0);
        if self.features.shape.last() != Some(&hidden) {
            return Err(Error::shape(
                "injection",
                format!(
                    "features {:?} do not fit embeddings {:?}",
                    self.features.shape, x.shape
                ),
            ));
        }
        // One copy per injected row: ECGs are one row each. (Branch ecg's stand-in until the
        // vision branch's gather kernel lands.)
        for (row, &p) in self.positions.iter().enumerate() {
            if (start..start + n).contains(&p) {
                ops::copy(
                    rec,
                    &self.features,
                    row * hidden,
                    x,
                    (p - start) * hidden,
                    hidden,
                )?;
            }
        }
        Ok(())
    }
}
