use crate::error::{Error, Result};
use crate::gpu::shader::{PipelineKey, ShaderFamily};
use crate::gpu::{Recorder, Tensor};

use super::{expect, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    n: u32,
    _pad: [u32; 2],
}

const WG: u32 = 64;

/// out (n) = the mean of x's rows; x is (rows, n).
pub fn mean_rows(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
    let [rows, n] = x.shape[..] else {
        return Err(Error::shape(
            "mean_rows",
            format!("x has shape {:?}, expected (rows, n)", x.shape),
        ));
    };
    if rows == 0 {
        return Err(Error::shape("mean_rows", "x has no rows to average"));
    }
    expect("mean_rows", "out", &[out.numel()], &[n])?;
    let params = Params {
        rows: u32_of("mean_rows", rows)?,
        n: u32_of("mean_rows", n)?,
        _pad: [0; 2],
    };
    let key = PipelineKey::new(ShaderFamily::Pool, "mean_rows").value("WG", WG);
    rec.dispatch(
        &key,
        &params,
        &[(1, &x.buffer), (2, &out.buffer)],
        [params.n.div_ceil(WG), 1, 1],
    )
}
