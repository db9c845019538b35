// Linear layers, y = x W^T (+ b), W in the checkpoint's (out, in) layout.
// `matmul_vec_narrow` is the GEMV for k <= 128 (one thread per output); `matmul_vec` is the decode GEMV (one token: K split across the workgroup, ROWS outputs per
// workgroup so each x value is loaded once for several rows); `matmul_mat` is the prefill GEMM
// (64x64 output tiles, 4x4 per thread, K in steps of 16 through workgroup memory).

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
@group(0) @binding(1) var<storage, read> x: array<f32>;          // (m, k)
@group(0) @binding(2) var<storage, read> w: array<u32>;          // (n, k) packed, this part's rows
@group(0) @binding(3) var<storage, read_write> y: array<f32>;    // (m, y_stride)
#ifdef BIAS
@group(0) @binding(4) var<storage, read> bias: array<u32>;       // (y_stride) packed, B_* format
#endif
#ifdef W_QUANT
@group(0) @binding(5) var<storage, read> w_scales: array<u32>;   // (n, k / 32) f16 pairs
#endif

#include weights
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
