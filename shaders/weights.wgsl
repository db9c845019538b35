// Packed weight access, included by every shader that reads weights.
// Weights stay in the checkpoint's dtype on the GPU (f32, f16 or bf16), packed in u32 words so the
// same bytes work with and without shader-f16; all math is f32. The including shader declares
// `w: array<u32>` (the packed tensor) and picks one of W_F32 / W_F16 / W_BF16.

fn load_packed(word: u32, i: u32) -> f32 {
#ifdef W_F32
    return bitcast<f32>(word);
#endif
#ifdef W_F16
    return unpack2x16float(word)[i & 1u];
#endif
#ifdef W_BF16
    // bf16 is the top half of an f32; the even element sits in the low half of the word.
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
#endif
}

fn word_index(i: u32) -> u32 {
#ifdef W_F32
    return i;
#else
    return i >> 1u;
#endif
}

fn load_w(i: u32) -> f32 {
    return load_packed(w[word_index(i)], i);
}
