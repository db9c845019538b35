// Packed weight access, included by every shader that reads weights (layout: docs/weights.md).
// Weights stay packed in u32 words so the same bytes work with and without shader-f16; all math is
// f32. The including shader declares `w: array<u32>` (the values / codes plane of one part), for
// W_QUANT formats also `w_scales: array<u32>` (f16 scales, one per 32 values, 2 per word), and picks
// one of W_F32 / W_F16 / W_BF16 / W_Q8 / W_Q4. `i` is the element index within the part.

#ifdef W_F32
fn load_w(i: u32) -> f32 {
    return bitcast<f32>(w[i]);
}
#endif

#ifdef W_F16
fn load_w(i: u32) -> f32 {
    return unpack2x16float(w[i >> 1u])[i & 1u];
}
#endif

#ifdef W_BF16
fn load_w(i: u32) -> f32 {
    // bf16 is the top half of an f32; the even element sits in the low half of the word.
    let word = w[i >> 1u];
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
}
#endif

#ifdef W_QUANT
// Scale of group g (= element index / 32; rows hold whole groups).
fn w_scale(g: u32) -> f32 {
    return unpack2x16float(w_scales[g >> 1u])[g & 1u];
}
#endif

#ifdef W_Q8
fn load_w(i: u32) -> f32 {
    // Signed byte i % 4 of the word: shift it to the top, then arithmetic-shift it back down.
    let code = bitcast<i32>(w[i >> 2u] << (24u - 8u * (i & 3u))) >> 24u;
    return f32(code) * w_scale(i >> 5u);
}
#endif

#ifdef W_Q4
fn load_w(i: u32) -> f32 {
    let code = (w[i >> 3u] >> (4u * (i & 7u))) & 15u;
    return (f32(code) - 8.0) * w_scale(i >> 5u);
}
#endif
