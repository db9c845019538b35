use crate::error::{Error, Result};
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Recorder, Tensor, Weight, WeightFormat};

use super::{expect, u32_of, with_format};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    n: u32,
    eps: f32,
    _pad: u32,
}

const WG: u32 = 128;

/// out = RMSNorm(x) * weight over the last axis; x and out are (rows, n).
pub fn rms_norm(
    rec: &mut Recorder,
    x: &Tensor,
    weight: &Weight,
    eps: f32,
    out: &Tensor,
) -> Result<()> {
    let n = *x.shape.last().unwrap_or(&0);
    let rows = x.numel() / n.max(1);
    expect("rms_norm", "weight", &weight.shape, &[n])?;
    expect("rms_norm", "out", &out.shape, &x.shape)?;
    let part = weight.single_part("rms_norm")?;
    let key = with_format(
        PipelineKey::new(ShaderFamily::Norm, "rms_norm").value("WG", WG),
        weight.format,
    );
    let params = Params {
        rows: u32_of("rms_norm", rows)?,
        n: u32_of("rms_norm", n)?,
        eps,
        _pad: 0,
    };
    rec.dispatch(
        &key,
        &params,
        &[(1, &x.buffer), (2, &part.values), (3, &out.buffer)],
        [params.rows, 1, 1],
    )
}

/// out = LayerNorm(x) * weight + bias over the last axis (biased variance, as torch); x and out
/// are (rows, n). Weight and bias are f32 / f16 / bf16, each in its own format.
pub fn layer_norm(
    rec: &mut Recorder,
    x: &Tensor,
    weight: &Weight,
    bias: &Weight,
    eps: f32,
    out: &Tensor,
) -> Result<()> {
    let n = *x.shape.last().unwrap_or(&0);
    let rows = x.numel() / n.max(1);
    expect("layer_norm", "weight", &weight.shape, &[n])?;
    expect("layer_norm", "bias", &bias.shape, &[n])?;
    expect("layer_norm", "out", &out.shape, &x.shape)?;
    let b_define = match bias.format {
        WeightFormat::F32 => "B_F32",
        WeightFormat::F16 => "B_F16",
        WeightFormat::BF16 => "B_BF16",
        f => {
            return Err(Error::shape(
                "layer_norm",
                format!(
                    "bias {} is {f}; norm parameters stay f32/f16/bf16",
                    bias.name
                ),
            ));
        }
    };
    if weight.format.is_quantized() {
        return Err(Error::shape(
            "layer_norm",
            format!(
                "weight {} is {}; norm parameters stay f32/f16/bf16",
                weight.name, weight.format
            ),
        ));
    }
    let (w, b) = (
        weight.single_part("layer_norm")?,
        bias.single_part("layer_norm")?,
    );
    let key = with_format(
        PipelineKey::new(ShaderFamily::Norm, "layer_norm")
            .flag("LAYER_NORM")
            .flag("BIAS")
            .flag(b_define)
            .value("WG", WG),
        weight.format,
    );
    let params = Params {
        rows: u32_of("layer_norm", rows)?,
        n: u32_of("layer_norm", n)?,
        eps,
        _pad: 0,
    };
    rec.dispatch(
        &key,
        &params,
        &[
            (1, &x.buffer),
            (2, &w.values),
            (3, &out.buffer),
            (4, &b.values),
        ],
        [params.rows, 1, 1],
    )
}
