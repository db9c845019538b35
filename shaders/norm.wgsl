// RMSNorm over the last axis: out = x * rsqrt(mean(x^2) + eps) * weight. One workgroup per row.

struct Params {
    rows: u32,
    n: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // (rows, n)
@group(0) @binding(2) var<storage, read> w: array<u32>;          // (n) packed
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // (rows, n)

#include weights

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x;
    let base = row * p.n;
    var acc = 0.0;
    for (var i = lid.x; i < p.n; i += WG) {
        let v = x[base + i];
        acc += v * v;
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid.x < s) {
            partial[lid.x] += partial[lid.x + s];
        }
        workgroupBarrier();
    }
    let scale = inverseSqrt(partial[0] / f32(p.n) + p.eps);
    for (var i = lid.x; i < p.n; i += WG) {
        out[base + i] = x[base + i] * scale * load_w(i);
    }
}

#ifdef LAYER_NORM
// LayerNorm with bias (the ECG encoder): out = (x - mean) * rsqrt(var + eps) * weight + bias,
// biased variance as torch; two passes over the row so the variance does not cancel.
@group(0) @binding(4) var<storage, read> bias: array<u32>;      // (n) packed, B_F32 / B_F16 / B_BF16

#include bias

fn row_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = wid.x * p.n;
    var acc = 0.0;
    for (var i = lid.x; i < p.n; i += WG) {
        acc += x[base + i];
    }
    let mean = row_sum(lid.x, acc) / f32(p.n);
    acc = 0.0;
    for (var i = lid.x; i < p.n; i += WG) {
        let d = x[base + i] - mean;
        acc += d * d;
    }
    let scale = inverseSqrt(row_sum(lid.x, acc) / f32(p.n) + p.eps);
    for (var i = lid.x; i < p.n; i += WG) {
        out[base + i] = (x[base + i] - mean) * scale * load_w(i) + bias_at(i);
    }
}
#endif
