//! A linear layer in the checkpoint's layout (`weight` is (out, in), as Hugging Face stores it)
//! with an optional LoRA adapter: y = x W^T + b + (alpha / r) * dropout(x) A^T B^T.
//!
//! burn 0.22 ships a LoRA reparameterizer, but it composes the dense weight W + s A B on every
//! forward and keeps it (and a weight-shaped gradient) for the backward: for a 7B model that is a
//! second copy of every adapted matrix. Here the adapter stays two thin matmuls, and it has the
//! dropout PEFT puts on the adapter's input.

use burn::module::{Module, Param, ParamId};
use burn::tensor::{Distribution, Tensor};

/// What a forward computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Add the LoRA adapters (false = the frozen base = the reference policy).
    pub adapters: bool,
    /// Apply LoRA dropout (training forwards only).
    pub dropout: bool,
}

impl Mode {
    pub const TRAIN: Mode = Mode {
        adapters: true,
        dropout: true,
    };
    /// The current policy without dropout (scoring, parity tests).
    pub const POLICY: Mode = Mode {
        adapters: true,
        dropout: false,
    };
    pub const REFERENCE: Mode = Mode {
        adapters: false,
        dropout: false,
    };
}

#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,         // (out, in)
    pub bias: Option<Param<Tensor<1>>>,   // (out)
    pub lora_a: Option<Param<Tensor<2>>>, // (rank, in)
    pub lora_b: Option<Param<Tensor<2>>>, // (out, rank)
    /// alpha / rank.
    pub scale: f64,
    pub dropout: f64,
}

impl Linear {
    /// `x`: (m, in) -> (m, out).
    pub fn forward(&self, x: Tensor<2>, mode: Mode) -> Tensor<2> {
        let mut y = x.clone().matmul(self.weight.val().transpose());
        if let Some(b) = &self.bias {
            y = y + b.val().unsqueeze::<2>();
        }
        if let (true, Some(a), Some(b)) = (mode.adapters, &self.lora_a, &self.lora_b) {
            let x = if mode.dropout && self.dropout > 0.0 {
                let keep = 1.0 - self.dropout;
                let mask =
                    Tensor::<2>::random(x.shape(), Distribution::Bernoulli(keep), &x.device());
                x * mask.div_scalar(keep)
            } else {
                x
            };
            let low = x.matmul(a.val().transpose());
            y = y + low.matmul(b.val().transpose()).mul_scalar(self.scale);
        }
        y
    }

    /// W + scale * B A: the weight the engine runs for the current policy, (out, in).
    pub fn merged_weight(&self) -> Tensor<2> {
        let w = self.weight.val();
        match (&self.lora_a, &self.lora_b) {
            (Some(a), Some(b)) => w + b.val().matmul(a.val()).mul_scalar(self.scale),
            _ => w,
        }
    }

    pub fn has_adapter(&self) -> bool {
        self.lora_a.is_some()
    }
}

/// Allocates deterministic parameter ids so an optimizer state saved by one process maps onto the
/// parameters rebuilt by another (burn's own ids are random per process).
pub struct Ids(u64);

impl Ids {
    pub fn new() -> Self {
        Ids(1)
    }

    pub fn param<const D: usize>(&mut self, t: Tensor<D>, trainable: bool) -> Param<Tensor<D>> {
        let id = ParamId::from(self.0);
        self.0 += 1;
        Param::initialized(id, t).set_require_grad(trainable)
    }
}

impl Default for Ids {
    fn default() -> Self {
        Self::new()
    }
}
