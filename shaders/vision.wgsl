// Vision-tower kernels (Qwen2.5-VL): the qkv split with the 2-D rotary embedding, attention over
// variable-length segments (windows / whole images), exact GELU for the patch merger, and a row
// gather used both to un-permute the merger's window order and to write features into the prompt's
// embedding rows. Flat indices come from a 2-D grid of workgroups (65535 per dimension).

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

#ifdef QKV_ROPE
struct Params {
    n: u32,      // rows (patches)
    heads: u32,
    hd: u32,     // head dim (qkv_rope)
    scale: f32,  // attention: 1 / sqrt(head_dim)
}

@group(0) @binding(0) var<uniform> p: Params;
// transformers: qkv(x).reshape(n, 3, heads, hd); q and k rotated (rotate-half pairs i, i + hd/2)
// with per-patch tables whose first half of frequencies follows the patch row, the second its column.
@group(0) @binding(1) var<storage, read> qkv: array<f32>;       // (n, 3, heads, hd)
@group(0) @binding(2) var<storage, read> cos_t: array<f32>;     // (n, hd / 2)
@group(0) @binding(3) var<storage, read> sin_t: array<f32>;     // (n, hd / 2)
@group(0) @binding(4) var<storage, read_write> q: array<f32>;   // (n, heads, hd)
@group(0) @binding(5) var<storage, read_write> k: array<f32>;   // (n, heads, hd)
@group(0) @binding(6) var<storage, read_write> v: array<f32>;   // (n, heads, hd)

@compute @workgroup_size(WG)
fn qkv_rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = p.hd / 2u;
    let idx = flat_index(gid, nwg);
    if (idx >= p.n * p.heads * half) {
        return;
    }
    let i = idx % half;
    let h = (idx / half) % p.heads;
    let t = idx / (half * p.heads);
    let c = cos_t[t * half + i];
    let s = sin_t[t * half + i];
    let width = p.heads * p.hd;
    let src = t * 3u * width + h * p.hd + i;
    let dst = (t * p.heads + h) * p.hd + i;
    let q1 = qkv[src];
    let q2 = qkv[src + half];
    q[dst] = q1 * c - q2 * s;
    q[dst + half] = q2 * c + q1 * s;
    let k1 = qkv[src + width];
    let k2 = qkv[src + width + half];
    k[dst] = k1 * c - k2 * s;
    k[dst + half] = k2 * c + k1 * s;
    v[dst] = qkv[src + 2u * width];
    v[dst + half] = qkv[src + 2u * width + half];
}
#endif

#ifdef ATTN_SEGMENTS
struct Params {
    n: u32,      // rows (patches)
    heads: u32,
    hd: u32,     // head dim (qkv_rope)
    scale: f32,  // attention: 1 / sqrt(head_dim)
}

@group(0) @binding(0) var<uniform> p: Params;
// Non-causal attention where query row i sees key rows bounds[i].x .. bounds[i].y (its window or
// its image). One workgroup per (head, query); keys stream through in tiles of WG with an online
// softmax, so a 2,700-patch image never materialises a score matrix.
@group(0) @binding(1) var<storage, read> q: array<f32>;            // (n, heads, HD)
@group(0) @binding(2) var<storage, read> k: array<f32>;            // (n, heads, HD)
@group(0) @binding(3) var<storage, read> v: array<f32>;            // (n, heads, HD)
@group(0) @binding(4) var<storage, read> bounds: array<vec2<u32>>; // (n) [lo, hi) key rows
@group(0) @binding(5) var<storage, read_write> out: array<f32>;    // (n, heads, HD)

const DPT: u32 = (HD + WG - 1u) / WG;  // output dims per thread

var<workgroup> q_s: array<f32, HD>;
var<workgroup> p_s: array<f32, WG>;
var<workgroup> red: array<f32, WG>;

fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), is_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn attention_segments(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
) {
    let lid = lid3.x;
    let flat = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so the early exit keeps barriers in uniform control flow.
    if (flat >= p.n * p.heads) {
        return;
    }
    let h = flat % p.heads;
    let i = flat / p.heads;
    let stride = p.heads * HD;
    let q_base = i * stride + h * HD;
    for (var d = lid; d < HD; d += WG) {
        q_s[d] = q[q_base + d];
    }
    workgroupBarrier();
    let lo = bounds[i].x;
    let hi = bounds[i].y;
    var m = -3.402823e38;
    var l = 0.0;
    var acc: array<f32, DPT>;
    for (var t0 = lo; t0 < hi; t0 += WG) {
        let t = t0 + lid;
        var s = -3.402823e38;
        if (t < hi) {
            let k_base = t * stride + h * HD;
            var dot = 0.0;
            for (var d = 0u; d < HD; d++) {
                dot += q_s[d] * k[k_base + d];
            }
            s = dot * p.scale;
        }
        let m_new = max(m, reduce(lid, s, true));
        var e = 0.0;
        if (t < hi) {
            e = exp(s - m_new);
        }
        p_s[lid] = e;
        let tile_sum = reduce(lid, e, false);
        let rescale = exp(m - m_new);
        l = l * rescale + tile_sum;
        let tile_len = min(WG, hi - t0);
        for (var j = 0u; j < DPT; j++) {
            let d = lid + j * WG;
            var a = acc[j] * rescale;
            if (d < HD) {
                for (var u = 0u; u < tile_len; u++) {
                    a += p_s[u] * v[(t0 + u) * stride + h * HD + d];
                }
            }
            acc[j] = a;
        }
        m = m_new;
        workgroupBarrier();
    }
    for (var j = 0u; j < DPT; j++) {
        let d = lid + j * WG;
        if (d < HD) {
            out[q_base + d] = acc[j] / l;
        }
    }
}
#endif

#ifdef GELU
struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Exact GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) as torch's nn.GELU(). WGSL has no erf:
// erfc by Numerical Recipes' Chebyshev fit (fractional error < 1.2e-7 everywhere).
@group(0) @binding(1) var<storage, read_write> x: array<f32>;   // (n) in place

fn erf(v: f32) -> f32 {
    let z = abs(v);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let erfc = t * exp(-z * z + poly);
    return select(erfc - 1.0, 1.0 - erfc, v >= 0.0);
}

@compute @workgroup_size(WG)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) {
        let v = x[i];
        x[i] = 0.5 * v * (1.0 + erf(v * 0.70710678118654752));
    }
}
#endif

#ifdef GATHER_ROWS
struct Params {
    n: u32,         // destination rows
    width: u32,     // values per row
    src_rows: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// dst row i = src row index[i]; an index of 0xffffffff leaves dst row i as it is (a prompt token
// that keeps its own embedding).
@group(0) @binding(1) var<storage, read> src: array<f32>;        // (src_rows, width)
@group(0) @binding(2) var<storage, read> index: array<u32>;      // (n)
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;  // (n, width)

@compute @workgroup_size(WG)
fn gather_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let width = p.width;
    let idx = flat_index(gid, nwg);
    if (idx >= p.n * width) {
        return;
    }
    let row = idx / width;
    let src_row = index[row];
    if (src_row != 0xffffffffu && src_row < p.src_rows) {
        dst[idx] = src[src_row * width + idx % width];
    }
}
#endif
