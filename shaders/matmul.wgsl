// Linear layers, y = x W^T (+ b), W in the checkpoint's (out, in) layout.
// `matmul_vec_narrow` is the GEMV for k <= 128 (one thread per output); `matmul_vec` is the decode
// GEMV for rows that are not whole 32-value groups (K split across the workgroup, ROWS outputs per
// workgroup so each x value is loaded once for several rows; rows of whole groups run
// matmul_rows.wgsl's `matmul_splitk`). `matmul_tiled` is the portable prefill GEMM (k % 4 == 0):
// tiles through workgroup memory, weights dequantised as the tile is loaded, a TM x TN register
// block per invocation; `matmul_mat` the GEMM for other k.
#ifdef F16_MATH
enable f16;
#endif

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
#ifdef TILED
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;    // (m, k / 4)
#ifdef W_F32
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;    // (n, k / 4) f32 x4, this part's rows
#endif
#ifdef W_16
@group(0) @binding(2) var<storage, read> w: array<vec2<u32>>;    // (n, k / 4) f16/bf16 x4
#endif
#ifdef W_QUANT
@group(0) @binding(2) var<storage, read> w: array<u32>;          // (n, k / 4) q8 x4, (n, k / 8) q4 x8
#endif
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;          // (m, k)
@group(0) @binding(2) var<storage, read> w: array<u32>;          // (n, k) packed, this part's rows
#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;    // (m, y_stride)
#ifdef BIAS
@group(0) @binding(4) var<storage, read> bias: array<u32>;       // (y_stride) packed, B_* format
#endif
#ifdef W_QUANT
@group(0) @binding(5) var<storage, read> w_scales: array<u32>;   // (n, k / 32) f16 pairs
#endif

#ifndef TILED
#include weights
#endif
#include bias

fn store_y(row: u32, col: u32, v: f32) {
    y[row * p.y_stride + p.col0 + col] = v + bias_at(p.col0 + col);
}

#ifdef VEC
var<workgroup> partial: array<f32, WG * ROWS>;

@compute @workgroup_size(WG)
fn matmul_vec(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let n0 = (wid.x + wid.y * nwg.x) * ROWS;
    let row = wid.z;
    var acc: array<f32, ROWS>;
    for (var kk = lid.x; kk < p.k; kk += WG) {
        let xv = x[row * p.k + kk];
        for (var r = 0u; r < ROWS; r++) {
            let col = min(n0 + r, p.n - 1u);
            acc[r] += xv * load_w(col * p.k + kk);
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        partial[r * WG + lid.x] = acc[r];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid.x < s) {
            for (var r = 0u; r < ROWS; r++) {
                partial[r * WG + lid.x] += partial[r * WG + lid.x + s];
            }
        }
        workgroupBarrier();
    }
    if (lid.x < ROWS) {
        let col = n0 + lid.x;
        if (col < p.n) {
            store_y(row, col, partial[lid.x * WG]);
        }
    }
}
#endif

#ifdef VEC_NARROW
// Narrow matrices (small k, e.g. a small model's lm_head): one thread per output, no reduction,
// so the cost is not dominated by per-workgroup barriers.
@compute @workgroup_size(WG)
fn matmul_vec_narrow(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let col = gid.x + gid.y * nwg.x * WG;
    let row = gid.z;
    if (col >= p.n) {
        return;
    }
    var acc = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        acc += x[row * p.k + kk] * load_w(col * p.k + kk);
    }
    store_y(row, col, acc);
}
#endif

#ifdef MAT
const TILE: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> xs: array<f32, 1024>;  // (TILE rows of x, TK)
var<workgroup> ws: array<f32, 1024>;  // (TILE rows of w, TK)

@compute @workgroup_size(16, 16)
fn matmul_mat(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let m0 = wid.y * TILE;
    let n0 = wid.x * TILE;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var r = 0u; r < 4u; r++) {
            let idx = li + r * 256u;
            let kk = k0 + idx % TK;
            let gm = m0 + idx / TK;
            let gn = n0 + idx / TK;
            var xv = 0.0;
            if (gm < p.m && kk < p.k) {
                xv = x[gm * p.k + kk];
            }
            xs[idx] = xv;
            var wv = 0.0;
            if (gn < p.n && kk < p.k) {
                wv = load_w(gn * p.k + kk);
            }
            ws[idx] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = xs[(lid.y * 4u + i) * TK + kk];
                b[i] = ws[(lid.x * 4u + i) * TK + kk];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let gm = m0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let gn = n0 + lid.x * 4u + j;
            if (gm < p.m && gn < p.n) {
                store_y(gm, gn, acc[i * 4u + j]);
            }
        }
    }
}
#endif

#ifdef TILED
// The workgroup is 16 x 16 invocations over an output tile of 16 TM tokens by 16 TN weight rows;
// invocation (tx, ty) holds tokens ty + 16 i and rows tx + 16 j (strided, so neighbouring
// invocations read neighbouring tile rows and store neighbouring outputs). K advances 16 values
// per step: both tiles are (rows, 4 vec4) in workgroup memory, padded to 5 vec4 a row so the
// strided reads fall in different banks; each vec4 pair read feeds a 4-term dot product.
const BK4: u32 = 4u;     // vec4 of k per step
const PAD4: u32 = 5u;    // vec4 per tile row in workgroup memory
const MT: u32 = 16u * TM;
const NT: u32 = 16u * TN;
#ifdef F16_MATH
// f16 tiles (half the workgroup memory traffic, packed f16 math where the GPU has it), each
// 4-term product summed in f16 and added to f32 accumulators.
alias tile4 = vec4<f16>;
#else
alias tile4 = vec4<f32>;
#endif
var<workgroup> xs: array<tile4, MT * PAD4>;   // (16 TM tokens, 4 + 1 pad) vec4 of x
var<workgroup> ws: array<tile4, NT * PAD4>;   // (16 TN rows, 4 + 1 pad) vec4 of W, dequantised

#ifdef W_QUANT
fn scale4(e: u32) -> f32 {
    let g = e >> 5u;
    return unpack2x16float(w_scales[g >> 1u])[g & 1u];
}
#endif

// Elements e .. e + 3 (e % 4 == 0) of this part's values plane.
fn w4(e: u32) -> vec4<f32> {
#ifdef W_F32
    return bitcast<vec4<f32>>(w[e >> 2u]);
#endif
#ifdef W_F16
    let q = w[e >> 2u];
    return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
#endif
#ifdef W_BF16
    // bf16 is the top half of an f32; the even element sits in the low half of the word.
    let q = w[e >> 2u];
    return vec4<f32>(bitcast<f32>(q.x << 16u), bitcast<f32>(q.x & 0xffff0000u),
                     bitcast<f32>(q.y << 16u), bitcast<f32>(q.y & 0xffff0000u));
#endif
#ifdef W_Q8
    // Each signed byte moved to the top of an i32, then arithmetic-shifted back down.
    let b = bitcast<vec4<i32>>(vec4<u32>(w[e >> 2u]) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
    return vec4<f32>(b) * scale4(e);
#endif
#ifdef W_Q4
    let word = w[e >> 3u] >> ((e & 4u) * 4u);
    let c = (vec4<u32>(word) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
    return (vec4<f32>(c) - 8.0) * scale4(e);
#endif
}

@compute @workgroup_size(16, 16)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let m0 = wid.y * MT;
    let n0 = wid.x * NT;
    let k4 = p.k / 4u;
    // The register block is unrolled (#for): software adapters do not unroll loops and keep
    // loop-indexed arrays in memory. The k loop stays a loop: unrolling it too (4x the code) made
    // SwiftShader's shader compile in Chromium take seconds longer for no gain on lavapipe.
#for i in TM
#for j in TN
    var acc${i}_${j} = 0.0;
#end
#end
    for (var k0 = 0u; k0 < k4; k0 += BK4) {
        // Each invocation loads XV = TM / 4 vec4 of x and WV = TN / 4 of W (4 per tile row).
#for c in XV
        {
            let t = li / BK4 + 64u * ${c}u;
            let kc = k0 + li % BK4;
            var v = vec4<f32>(0.0);
            if (m0 + t < p.m && kc < k4) {
                v = x[(m0 + t) * k4 + kc];
            }
            xs[t * PAD4 + li % BK4] = tile4(v);
        }
#end
#for c in WV
        {
            let r = li / BK4 + 64u * ${c}u;
            let kc = k0 + li % BK4;
            var v = vec4<f32>(0.0);
            if (n0 + r < p.n && kc < k4) {
                v = w4(((n0 + r) * k4 + kc) * 4u);
            }
            ws[r * PAD4 + li % BK4] = tile4(v);
        }
#end
        workgroupBarrier();
        for (var kc = 0u; kc < BK4; kc++) {
#for j in TN
            let b${j} = ws[(lid.x + 16u * ${j}u) * PAD4 + kc];
#end
#for i in TM
            let a${i} = xs[(lid.y + 16u * ${i}u) * PAD4 + kc];
#for j in TN
            acc${i}_${j} += f32(dot(a${i}, b${j}));
#end
#end
        }
        workgroupBarrier();
    }
#for i in TM
#for j in TN
    if (m0 + lid.y + 16u * ${i}u < p.m && n0 + lid.x + 16u * ${j}u < p.n) {
        store_y(m0 + lid.y + 16u * ${i}u, n0 + lid.x + 16u * ${j}u, acc${i}_${j});
    }
#end
#end
}
#endif
