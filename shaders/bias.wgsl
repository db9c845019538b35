// The bias of a linear layer, included by the matmul shaders, which declare `bias: array<u32>`
// under BIAS. A bias is never quantized and may have another format than its matrix:
// B_F32 / B_F16 / B_BF16.
#ifdef BIAS
fn bias_at(col: u32) -> f32 {
#ifdef B_F32
    return bitcast<f32>(bias[col]);
#endif
#ifdef B_F16
    return unpack2x16float(bias[col >> 1u])[col & 1u];
#endif
#ifdef B_BF16
    let word = bias[col >> 1u];
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (col & 1u) == 1u));
#endif
}
#else
fn bias_at(col: u32) -> f32 {
    return 0.0;
}
#endif
