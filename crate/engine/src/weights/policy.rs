//! Which format each tensor gets when a model is quantized (`qoqmed quantize`) or synthesised
//! (`qoqmed bench --config`): one rule for both, so a benchmark measures what users load.
//!
//! Language-model linears take the chosen format; the embedding and lm_head take q8 (a q4 head
//! costs measurable accuracy for 0.3 GB on the 7B; docs/quantization.md); the vision tower and
//! the ECG encoder stay f16; vectors (norms, biases) stay 16-bit; any matrix whose rows are not a
//! multiple of 32 values stays f16.

use crate::gpu::{GROUP, WeightFormat};

use super::DType;

/// What a tensor is, by its checkpoint name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `model.layers.N.{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj}.weight`.
    TextLinear,
    /// `model.embed_tokens.weight`, `lm_head.weight`.
    Head,
    /// `visual.*`, `time_series_embedding.*` matrices.
    Tower,
    /// Norm weights, biases, any 1-D tensor.
    Vector,
    /// Anything else.
    Other,
}

const LINEARS: [&str; 7] = [
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
];

pub fn role(name: &str, shape: &[usize]) -> Role {
    if shape.len() <= 1 {
        return Role::Vector;
    }
    let text = name
        .strip_prefix("model.language_model.")
        .or_else(|| name.strip_prefix("model."));
    if let Some(rest) = text.and_then(|t| t.strip_prefix("layers."))
        && let Some((layer, tail)) = rest.split_once('.')
        && layer.parse::<usize>().is_ok()
        && LINEARS.contains(&tail)
    {
        return Role::TextLinear;
    }
    if matches!(
        name,
        "model.embed_tokens.weight"
            | "model.language_model.embed_tokens.weight"
            | "lm_head.weight"
            | "model.lm_head.weight"
    ) {
        return Role::Head;
    }
    let tower = [
        "visual.",
        "model.visual.",
        "time_series_embedding.",
        "model.time_series_embedding.",
    ];
    if tower.iter().any(|p| name.starts_with(p)) {
        return Role::Tower;
    }
    Role::Other
}

/// The formats of one quantization: language-model linears, embedding + lm_head, towers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatPlan {
    pub linear: WeightFormat,
    pub head: WeightFormat,
    pub tower: WeightFormat,
}

impl FormatPlan {
    /// The defaults for `--format`: q4 -> linears q4, head q8; q8 -> all q8; 16/32-bit formats
    /// apply to every matrix. Towers are f16 unless the whole model is f32/bf16.
    pub fn for_format(format: WeightFormat) -> Self {
        let (head, tower) = match format {
            WeightFormat::Q4 | WeightFormat::Q8 => (WeightFormat::Q8, WeightFormat::F16),
            f => (f, f),
        };
        Self {
            linear: format,
            head,
            tower,
        }
    }

    /// The format of tensor `name` (`shape`, stored as `source` in the checkpoint).
    pub fn choose(&self, name: &str, shape: &[usize], source: DType) -> WeightFormat {
        let sixteen = |d: DType| match d {
            DType::F32 => WeightFormat::F16,
            d => WeightFormat::from(d),
        };
        let wanted = match role(name, shape) {
            Role::Vector => return sixteen(source),
            Role::TextLinear => self.linear,
            Role::Head => self.head,
            Role::Tower => self.tower,
            Role::Other => sixteen(source),
        };
        let k: usize = shape.iter().skip(1).product();
        if wanted.is_quantized() && (k == 0 || !k.is_multiple_of(GROUP)) {
            return WeightFormat::F16;
        }
        wanted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_defaults() {
        let plan = FormatPlan::for_format(WeightFormat::Q4);
        let c = |n: &str, s: &[usize], d| plan.choose(n, s, d);
        let m = [3584, 3584];
        assert_eq!(
            c("model.layers.3.mlp.up_proj.weight", &m, DType::BF16),
            WeightFormat::Q4
        );
        assert_eq!(
            c(
                "model.language_model.layers.0.self_attn.q_proj.weight",
                &m,
                DType::BF16
            ),
            WeightFormat::Q4
        );
        assert_eq!(
            c("model.layers.3.self_attn.q_proj.bias", &[3584], DType::BF16),
            WeightFormat::BF16
        );
        assert_eq!(
            c("model.layers.3.input_layernorm.weight", &[3584], DType::F32),
            WeightFormat::F16
        );
        assert_eq!(
            c("lm_head.weight", &[152064, 3584], DType::BF16),
            WeightFormat::Q8
        );
        assert_eq!(
            c("model.embed_tokens.weight", &[152064, 3584], DType::BF16),
            WeightFormat::Q8
        );
        assert_eq!(
            c(
                "visual.blocks.0.attn.qkv.weight",
                &[3840, 1280],
                DType::BF16
            ),
            WeightFormat::F16
        );
        assert_eq!(
            c(
                "time_series_embedding.linear.weight",
                &[3584, 768],
                DType::F32
            ),
            WeightFormat::F16
        );
        // Rows not a multiple of 32 stay f16 (the tiny fixture's hidden 16).
        assert_eq!(
            c("model.layers.0.mlp.up_proj.weight", &[48, 16], DType::BF16),
            WeightFormat::F16
        );
        assert_eq!(
            c("model.layers.x.mlp.up_proj.weight", &m, DType::BF16),
            WeightFormat::BF16
        );
        assert_eq!(
            FormatPlan::for_format(WeightFormat::F16).head,
            WeightFormat::F16
        );
    }
}
