// Causal grouped-query attention over the preallocated KV cache, for prefill (many queries) and
// decode (one). One workgroup per (query head, query token); keys are streamed in tiles of WG with an
// online softmax, so any context length fits in fixed workgroup memory. Query q_i sits at cache
// position start + i and sees keys 0..=start + i.

struct Params {
    n_q: u32,
    start: u32,
    heads: u32,
    kv_heads: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;          // (n_q, heads, HD)
@group(0) @binding(2) var<storage, read> k_cache: array<f32>;    // (max_ctx, kv_heads, HD)
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;    // (max_ctx, kv_heads, HD)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // (n_q, heads, HD)

const DPT: u32 = (HD + WG - 1u) / WG;  // output dims per thread

var<workgroup> q_s: array<f32, HD>;
var<workgroup> p_s: array<f32, WG>;
var<workgroup> red: array<f32, WG>;

fn reduce_max(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let h = wid.x;
    let i = wid.y;
    let kvh = h / (p.heads / p.kv_heads);
    let q_base = (i * p.heads + h) * HD;
    for (var d = lid; d < HD; d += WG) {
        q_s[d] = q[q_base + d];
    }
    workgroupBarrier();

    let n_keys = p.start + i + 1u;
    let kv_stride = p.kv_heads * HD;
    var m = -3.402823e38;
    var l = 0.0;
    var acc: array<f32, DPT>;
    for (var t0 = 0u; t0 < n_keys; t0 += WG) {
        let t = t0 + lid;
        var s = -3.402823e38;
        if (t < n_keys) {
            let k_base = t * kv_stride + kvh * HD;
            var dot = 0.0;
            for (var d = 0u; d < HD; d++) {
                dot += q_s[d] * k_cache[k_base + d];
            }
            s = dot * p.scale;
        }
        let m_new = max(m, reduce_max(lid, s));
        var e = 0.0;
        if (t < n_keys) {
            e = exp(s - m_new);
        }
        p_s[lid] = e;
        let tile_sum = reduce_sum(lid, e);
        let rescale = exp(m - m_new);
        l = l * rescale + tile_sum;
        let tile_len = min(WG, n_keys - t0);
        for (var j = 0u; j < DPT; j++) {
            let d = lid + j * WG;
            var a = acc[j] * rescale;
            if (d < HD) {
                for (var u = 0u; u < tile_len; u++) {
                    a += p_s[u] * v_cache[(t0 + u) * kv_stride + kvh * HD + d];
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
