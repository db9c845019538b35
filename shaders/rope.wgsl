// Rotary position embedding, rotate-half convention (pairs i and i + head_dim/2).
// cos/sin come precomputed per token from the CPU: M-RoPE's sections pick, per frequency, which
// of the (t, h, w) positions drives it, so the kernel does not need to know about sections.
// `rope_to_cache` rotates K and writes it straight into the KV cache at the cursor.

struct Params {
    n_tokens: u32,
    heads: u32,
    head_dim: u32,
    dst_offset: u32,  // elements; rope_to_cache only
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> cos_t: array<f32>;      // (n_tokens, head_dim / 2)
@group(0) @binding(2) var<storage, read> sin_t: array<f32>;      // (n_tokens, head_dim / 2)
#ifdef IN_PLACE
@group(0) @binding(3) var<storage, read_write> x: array<f32>;    // (n_tokens, heads, head_dim)
#else
@group(0) @binding(3) var<storage, read> x: array<f32>;          // (n_tokens, heads, head_dim)
#ifdef DST_F16
@group(0) @binding(4) var<storage, read_write> dst: array<u32>;  // cache (max_ctx, heads, head_dim / 2) f16 pairs
#else
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;  // cache (max_ctx, heads, head_dim)
#endif
#endif

#ifdef DST_F16
// One invocation per two adjacent pairs (2j, 2j + half) and (2j + 1, 2j + 1 + half), so it owns
// whole f16 words of the cache; head_dim % 4 == 0.
@compute @workgroup_size(WG)
fn rope_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = p.head_dim / 2u;
    let j = gid.x;
    let h = gid.y;
    let t = gid.z;
    if (2u * j >= half || h >= p.heads || t >= p.n_tokens) {
        return;
    }
    let i = 2u * j;
    let c = vec2<f32>(cos_t[t * half + i], cos_t[t * half + i + 1u]);
    let s = vec2<f32>(sin_t[t * half + i], sin_t[t * half + i + 1u]);
    let base = (t * p.heads + h) * p.head_dim;
    let x1 = vec2<f32>(x[base + i], x[base + i + 1u]);
    let x2 = vec2<f32>(x[base + i + half], x[base + i + half + 1u]);
    let out = (p.dst_offset + base) / 2u;
    dst[out + j] = pack2x16float(x1 * c - x2 * s);
    dst[out + half / 2u + j] = pack2x16float(x2 * c + x1 * s);
}
#else

@compute @workgroup_size(WG)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = p.head_dim / 2u;
    let i = gid.x;
    let h = gid.y;
    let t = gid.z;
    if (i >= half || h >= p.heads || t >= p.n_tokens) {
        return;
    }
    let c = cos_t[t * half + i];
    let s = sin_t[t * half + i];
    let base = (t * p.heads + h) * p.head_dim;
    let x1 = x[base + i];
    let x2 = x[base + i + half];
#ifdef IN_PLACE
    x[base + i] = x1 * c - x2 * s;
    x[base + i + half] = x2 * c + x1 * s;
#else
    dst[p.dst_offset + base + i] = x1 * c - x2 * s;
    dst[p.dst_offset + base + i + half] = x2 * c + x1 * s;
#endif
}
#endif
