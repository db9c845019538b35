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
// the R x TM tile unrolled with #for. Needs k % 32 == 0 and, for the broadcast, subgroups of a
// multiple of 8 lanes. NO_SG (CPU adapters without subgroups: SwiftShader in a browser): every
// lane loads the 8 vec4 of x itself (same address in every lane); still no barriers, which is what
// a CPU adapter pays most for (Chromium/SwiftShader, q4 2048 x 2048 GEMV: 83 ms split-K, 16.5 ms).

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
@group(0) @binding(2) var<storage, read> w0: array<vec4<u32>>;      // (n, k) packed, this part's rows
@group(0) @binding(3) var<storage, read_write> y: array<f32>;       // (m, y_stride)
#ifdef BIAS
@group(0) @binding(4) var<storage, read> bias: array<u32>;          // (y_stride) packed, B_* format
#endif
#ifdef W_QUANT
@group(0) @binding(5) var<storage, read> s0: array<u32>;            // (n, k / 32) f16 pairs
#endif
// GATE_UP: y = silu(x gate^T) * (x up^T) in one pass; w0/s0 hold gate's rows, w1/s1 up's.
#ifdef GATE_UP
@group(0) @binding(6) var<storage, read> w1: array<vec4<u32>>;      // (n, k) packed, up's part
#ifdef W_QUANT
@group(0) @binding(7) var<storage, read> s1: array<u32>;            // (n, k / 32) f16 pairs
#endif
#endif

#include bias

#for b in NW
// Group gi (= row * k / 32 + g) of the weight: 32 consecutive values of one row, as 8 vec4.
#ifdef W_QUANT
fn scale_of${b}(gi: u32) -> f32 {
    return unpack2x16float(s${b}[gi >> 1u])[gi & 1u];
}
#endif

#ifdef W_Q4
fn nibbles${b}(word: u32, shift: vec4<u32>, s: f32) -> vec4<f32> {
    return (vec4<f32>((vec4<u32>(word) >> shift) & vec4<u32>(15u)) - 8.0) * s;
}

fn wgroup${b}(gi: u32) -> array<vec4<f32>, 8> {
    let q = w${b}[gi];
    let s = scale_of${b}(gi);
    let lo = vec4<u32>(0u, 4u, 8u, 12u);
    let hi = vec4<u32>(16u, 20u, 24u, 28u);
    return array<vec4<f32>, 8>(
        nibbles${b}(q.x, lo, s), nibbles${b}(q.x, hi, s), nibbles${b}(q.y, lo, s), nibbles${b}(q.y, hi, s),
        nibbles${b}(q.z, lo, s), nibbles${b}(q.z, hi, s), nibbles${b}(q.w, lo, s), nibbles${b}(q.w, hi, s));
}
#endif

#ifdef W_Q8
fn bytes4${b}(word: u32, s: f32) -> vec4<f32> {
    // Each signed byte moved to the top of an i32, then arithmetic-shifted back down.
    let b = bitcast<vec4<i32>>(vec4<u32>(word) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
    return vec4<f32>(b) * s;
}

fn wgroup${b}(gi: u32) -> array<vec4<f32>, 8> {
    let a = w${b}[2u * gi];
    let b = w${b}[2u * gi + 1u];
    let s = scale_of${b}(gi);
    return array<vec4<f32>, 8>(
        bytes4${b}(a.x, s), bytes4${b}(a.y, s), bytes4${b}(a.z, s), bytes4${b}(a.w, s),
        bytes4${b}(b.x, s), bytes4${b}(b.y, s), bytes4${b}(b.z, s), bytes4${b}(b.w, s));
}
#endif

#ifdef W_F16
fn halves${b}(q: vec4<u32>) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(
        vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)),
        vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}
#endif

#ifdef W_BF16
fn halves${b}(q: vec4<u32>) -> array<vec4<f32>, 2> {
    // bf16 is the top half of an f32; the even element sits in the low half of the word.
    let lo = bitcast<vec4<f32>>(q << vec4<u32>(16u));
    let hi = bitcast<vec4<f32>>(q & vec4<u32>(0xffff0000u));
    return array<vec4<f32>, 2>(
        vec4<f32>(lo.x, hi.x, lo.y, hi.y), vec4<f32>(lo.z, hi.z, lo.w, hi.w));
}
#endif

#ifdef W_16
fn wgroup${b}(gi: u32) -> array<vec4<f32>, 8> {
    let a = halves${b}(w${b}[4u * gi]);
    let b = halves${b}(w${b}[4u * gi + 1u]);
    let c = halves${b}(w${b}[4u * gi + 2u]);
    let d = halves${b}(w${b}[4u * gi + 3u]);
    return array<vec4<f32>, 8>(a[0], a[1], b[0], b[1], c[0], c[1], d[0], d[1]);
}
#endif

#ifdef W_F32
fn wgroup${b}(gi: u32) -> array<vec4<f32>, 8> {
    let i = 8u * gi;
    return array<vec4<f32>, 8>(
        bitcast<vec4<f32>>(w${b}[i]), bitcast<vec4<f32>>(w${b}[i + 1u]),
        bitcast<vec4<f32>>(w${b}[i + 2u]), bitcast<vec4<f32>>(w${b}[i + 3u]),
        bitcast<vec4<f32>>(w${b}[i + 4u]), bitcast<vec4<f32>>(w${b}[i + 5u]),
        bitcast<vec4<f32>>(w${b}[i + 6u]), bitcast<vec4<f32>>(w${b}[i + 7u]));
}
#endif
#end

#ifndef SPLITK
// One workgroup: WG * R weight rows (lane li holds rows base + r * WG) by TM tokens from m0.
@compute @workgroup_size(WG)
fn matmul_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
#ifndef NO_SG
    @builtin(subgroup_invocation_id) sl: u32,
#endif
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
#ifdef NO_SG
    let lane = 0u;
#else
    let lane = sl % 8u;
#endif
#for t in TM
    let x${t} = min(m0 + ${t}u, p.m - 1u) * kv + lane;
#for r in R
    var acc${r}_${t} = 0.0;
#ifdef GATE_UP
    var up${r}_${t} = 0.0;
#endif
#end
#end
    for (var g = 0u; g < groups; g++) {
#for r in R
        let w${r} = wgroup0(row${r} + g);
#ifdef GATE_UP
        let u${r} = wgroup1(row${r} + g);
#endif
#end
#for t in TM
#ifdef NO_SG
        let xg${t} = x${t} + 8u * g;
        let xb${t} = array<vec4<f32>, 8>(
            x[xg${t}], x[xg${t} + 1u], x[xg${t} + 2u], x[xg${t} + 3u],
            x[xg${t} + 4u], x[xg${t} + 5u], x[xg${t} + 6u], x[xg${t} + 7u]);
#else
        let xl${t} = x[x${t} + 8u * g];
        let xb${t} = array<vec4<f32>, 8>(
            subgroupBroadcast(xl${t}, 0u), subgroupBroadcast(xl${t}, 1u),
            subgroupBroadcast(xl${t}, 2u), subgroupBroadcast(xl${t}, 3u),
            subgroupBroadcast(xl${t}, 4u), subgroupBroadcast(xl${t}, 5u),
            subgroupBroadcast(xl${t}, 6u), subgroupBroadcast(xl${t}, 7u));
#endif
#for r in R
        acc${r}_${t} += dot(w${r}[0], xb${t}[0]) + dot(w${r}[1], xb${t}[1])
            + dot(w${r}[2], xb${t}[2]) + dot(w${r}[3], xb${t}[3])
            + dot(w${r}[4], xb${t}[4]) + dot(w${r}[5], xb${t}[5])
            + dot(w${r}[6], xb${t}[6]) + dot(w${r}[7], xb${t}[7]);
#ifdef GATE_UP
        up${r}_${t} += dot(u${r}[0], xb${t}[0]) + dot(u${r}[1], xb${t}[1])
            + dot(u${r}[2], xb${t}[2]) + dot(u${r}[3], xb${t}[3])
            + dot(u${r}[4], xb${t}[4]) + dot(u${r}[5], xb${t}[5])
            + dot(u${r}[6], xb${t}[6]) + dot(u${r}[7], xb${t}[7]);
#endif
#end
#end
    }
#for r in R
    if (base + ${r}u * WG < p.n) {
        let col = p.col0 + base + ${r}u * WG;
        let b = bias_at(col);
#for t in TM
        if (m0 + ${t}u < p.m) {
#ifdef GATE_UP
            let gv = acc${r}_${t};
            y[(m0 + ${t}u) * p.y_stride + col] = gv / (1.0 + exp(-gv)) * up${r}_${t};
#else
            y[(m0 + ${t}u) * p.y_stride + col] = acc${r}_${t} + b;
#endif
        }
#end
    }
#end
}
#endif

#ifdef SPLITK
// The portable decode GEMV (one token) for rows of whole groups, every adapter: R rows per
// workgroup, the row's 32-value groups split over the WG invocations (neighbouring invocations
// read neighbouring 16-byte words), each group decoded by the same loaders as above, partial sums
// reduced through workgroup memory (browsers have no subgroups). SG_REDUCE (GPUs with subgroups):
// each subgroup first sums its lanes with subgroupAdd, so one barrier and one value per subgroup
// replace the log2(WG)-step tree.
var<workgroup> red: array<f32, WG * R>;  // (R, WG) partial sums; SG_REDUCE: (R, subgroups)

@compute @workgroup_size(WG)
fn matmul_splitk(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
#ifdef SG_REDUCE
    @builtin(subgroup_invocation_id) sl: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
#endif
) {
    let groups = p.k / 32u;
    let n0 = (wid.x + wid.y * nwg.x) * R;
#for r in R
    let row${r} = min(n0 + ${r}u, p.n - 1u) * groups;
    var acc${r} = 0.0;
#end
    for (var g = li; g < groups; g += WG) {
        let xb = 8u * g;
        let xv = array<vec4<f32>, 8>(x[xb], x[xb + 1u], x[xb + 2u], x[xb + 3u],
                                     x[xb + 4u], x[xb + 5u], x[xb + 6u], x[xb + 7u]);
#for r in R
        let w${r} = wgroup0(row${r} + g);
        acc${r} += dot(w${r}[0], xv[0]) + dot(w${r}[1], xv[1]) + dot(w${r}[2], xv[2])
            + dot(w${r}[3], xv[3]) + dot(w${r}[4], xv[4]) + dot(w${r}[5], xv[5])
            + dot(w${r}[6], xv[6]) + dot(w${r}[7], xv[7]);
#end
    }
#ifdef SG_REDUCE
#for r in R
    let sum${r} = subgroupAdd(acc${r});
#end
    if (sl == 0u) {
#for r in R
        red[${r}u * WG + sg] = sum${r};
#end
    }
    workgroupBarrier();
    if (li < R && n0 + li < p.n) {
        var total = 0.0;
        for (var i = 0u; i < nsg; i++) {
            total += red[li * WG + i];
        }
        let col = p.col0 + n0 + li;
        y[col] = total + bias_at(col);
    }
#else
#for r in R
    red[${r}u * WG + li] = acc${r};
#end
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
#for r in R
            red[${r}u * WG + li] += red[${r}u * WG + li + s];
#end
        }
        workgroupBarrier();
    }
    if (li < R && n0 + li < p.n) {
        let col = p.col0 + n0 + li;
        y[col] = red[li * WG] + bias_at(col);
    }
#endif
}
#endif
