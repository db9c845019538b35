// Linear layers on adapters that run shaders on a CPU (lavapipe's llvmpipe; chosen from the
// adapter's device type and subgroup support, see gpu/tuning.rs): y = x W^T (+ b).
//
// Why this shape (measured, docs/performance-notes.md): llvmpipe runs a workgroup on one thread,
// 8 invocations per SIMD vector. A storage load whose address differs per invocation costs about as
// much as one whose address is the same for all, so every load should carry 16 bytes per lane; a
// loop iteration costs ~30 cycles of mask bookkeeping, so loops must hold a lot of work.
// Hence: lanes over weight rows (each lane R rows, one vec4<u32> load = a whole Q4 group of 32
// values), TM tokens per workgroup, x loaded one vec4 per lane (8 lanes = one 32-value group of one
// token) and handed to every lane by subgroupBroadcast (~8x cheaper than uniform loads there), and
// the R x TM tile unrolled with #for. Needs k % 32 == 0 and subgroups of a multiple of 8 lanes.

struct Params {
    m: u32,         // rows of x (tokens)
    n: u32,         // output features held by this weight part
    k: u32,         // input features
    y_stride: u32,  // output features of the whole weight (y's row length)
    col0: u32,      // first output feature of this part
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // (m, k)
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;       // (n, k) packed, this part's rows
@group(0) @binding(3) var<storage, read_write> y: array<f32>;       // (m, y_stride)
#ifdef BIAS
@group(0) @binding(4) var<storage, read> bias: array<u32>;          // (y_stride) packed, B_* format
#endif
#ifdef W_QUANT
@group(0) @binding(5) var<storage, read> w_scales: array<u32>;      // (n, k / 32) f16 pairs
#endif

#include bias

// Group gi (= row * k / 32 + g) of the weight: 32 consecutive values of one row, as 8 vec4.
#ifdef W_QUANT
fn scale_of(gi: u32) -> f32 {
    return unpack2x16float(w_scales[gi >> 1u])[gi & 1u];
}
#endif

#ifdef W_Q4
fn nibbles(word: u32, shift: vec4<u32>, s: f32) -> vec4<f32> {
    return (vec4<f32>((vec4<u32>(word) >> shift) & vec4<u32>(15u)) - 8.0) * s;
}

fn wgroup(gi: u32) -> array<vec4<f32>, 8> {
    let q = w[gi];
    let s = scale_of(gi);
    let lo = vec4<u32>(0u, 4u, 8u, 12u);
    let hi = vec4<u32>(16u, 20u, 24u, 28u);
    return array<vec4<f32>, 8>(
        nibbles(q.x, lo, s), nibbles(q.x, hi, s), nibbles(q.y, lo, s), nibbles(q.y, hi, s),
        nibbles(q.z, lo, s), nibbles(q.z, hi, s), nibbles(q.w, lo, s), nibbles(q.w, hi, s));
}
#endif

#ifdef W_Q8
fn bytes4(word: u32, s: f32) -> vec4<f32> {
    // Each signed byte moved to the top of an i32, then arithmetic-shifted back down.
    let b = bitcast<vec4<i32>>(vec4<u32>(word) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
    return vec4<f32>(b) * s;
}

fn wgroup(gi: u32) -> array<vec4<f32>, 8> {
    let a = w[2u * gi];
    let b = w[2u * gi + 1u];
    let s = scale_of(gi);
    return array<vec4<f32>, 8>(
        bytes4(a.x, s), bytes4(a.y, s), bytes4(a.z, s), bytes4(a.w, s),
        bytes4(b.x, s), bytes4(b.y, s), bytes4(b.z, s), bytes4(b.w, s));
}
#endif

#ifdef W_F16
fn halves(q: vec4<u32>) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(
        vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)),
        vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}
#endif

#ifdef W_BF16
fn halves(q: vec4<u32>) -> array<vec4<f32>, 2> {
    // bf16 is the top half of an f32; the even element sits in the low half of the word.
    let lo = bitcast<vec4<f32>>(q << vec4<u32>(16u));
    let hi = bitcast<vec4<f32>>(q & vec4<u32>(0xffff0000u));
    return array<vec4<f32>, 2>(
        vec4<f32>(lo.x, hi.x, lo.y, hi.y), vec4<f32>(lo.z, hi.z, lo.w, hi.w));
}
#endif

#ifdef W_16
fn wgroup(gi: u32) -> array<vec4<f32>, 8> {
    let a = halves(w[4u * gi]);
    let b = halves(w[4u * gi + 1u]);
    let c = halves(w[4u * gi + 2u]);
    let d = halves(w[4u * gi + 3u]);
    return array<vec4<f32>, 8>(a[0], a[1], b[0], b[1], c[0], c[1], d[0], d[1]);
}
#endif

#ifdef W_F32
fn wgroup(gi: u32) -> array<vec4<f32>, 8> {
    let i = 8u * gi;
    return array<vec4<f32>, 8>(
        bitcast<vec4<f32>>(w[i]), bitcast<vec4<f32>>(w[i + 1u]),
        bitcast<vec4<f32>>(w[i + 2u]), bitcast<vec4<f32>>(w[i + 3u]),
        bitcast<vec4<f32>>(w[i + 4u]), bitcast<vec4<f32>>(w[i + 5u]),
        bitcast<vec4<f32>>(w[i + 6u]), bitcast<vec4<f32>>(w[i + 7u]));
}
#endif

// One workgroup: WG * R weight rows (lane li holds rows base + r * WG) by TM tokens from m0.
@compute @workgroup_size(WG)
fn matmul_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_invocation_id) sl: u32,
) {
    let groups = p.k / 32u;
    let kv = p.k / 4u;
    let m0 = wid.y * TM;
    let base = wid.x * WG * R + li;
    // Lanes beyond n or m compute on clamped rows and store nothing: control flow stays uniform,
    // which subgroupBroadcast needs.
#for r in R
    let row${r} = min(base + ${r}u * WG, p.n - 1u) * groups;
#end
    let lane = sl % 8u;
#for t in TM
    let x${t} = min(m0 + ${t}u, p.m - 1u) * kv + lane;
#for r in R
    var acc${r}_${t} = 0.0;
#end
#end
    for (var g = 0u; g < groups; g++) {
#for r in R
        let w${r} = wgroup(row${r} + g);
#end
#for t in TM
        let xl${t} = x[x${t} + 8u * g];
        let xb${t} = array<vec4<f32>, 8>(
            subgroupBroadcast(xl${t}, 0u), subgroupBroadcast(xl${t}, 1u),
            subgroupBroadcast(xl${t}, 2u), subgroupBroadcast(xl${t}, 3u),
            subgroupBroadcast(xl${t}, 4u), subgroupBroadcast(xl${t}, 5u),
            subgroupBroadcast(xl${t}, 6u), subgroupBroadcast(xl${t}, 7u));
#for r in R
        acc${r}_${t} += dot(w${r}[0], xb${t}[0]) + dot(w${r}[1], xb${t}[1])
            + dot(w${r}[2], xb${t}[2]) + dot(w${r}[3], xb${t}[3])
            + dot(w${r}[4], xb${t}[4]) + dot(w${r}[5], xb${t}[5])
            + dot(w${r}[6], xb${t}[6]) + dot(w${r}[7], xb${t}[7]);
#end
#end
    }
#for r in R
    if (base + ${r}u * WG < p.n) {
        let col = p.col0 + base + ${r}u * WG;
        let b = bias_at(col);
#for t in TM
        if (m0 + ${t}u < p.m) {
            y[(m0 + ${t}u) * p.y_stride + col] = acc${r}_${t} + b;
        }
#end
    }
#end
}
