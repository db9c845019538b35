// Grouped-query attention with an online softmax: one workgroup per (query head, query row); keys
// are streamed in tiles of WG, so any key count fits in fixed workgroup memory. Which keys a query
// sees is the mask variant, chosen by a define:
//   MASK_CAUSAL     decoder over the KV cache: query i sits at row start + i, sees rows 0..=start + i
//   MASK_SEGMENTS   non-causal within a segment (vision windows / full attention): query i sees rows
//                   bounds[2i] .. bounds[2i + 1]
//   MASK_LEAD_TIME  ECG-JEPA: token a = lead * PATCHES + t sees the tokens of its own lead and of its
//                   own time patch in the other leads (the only unmasked pairs)
// Online softmax is order-independent, so each variant only enumerates its visible keys.

struct Params {
    n_q: u32,
    start: u32,     // MASK_CAUSAL: cache row of query 0
    heads: u32,
    kv_heads: u32,
    scale: f32,
    n_k: u32,       // rows of k / v
    leads: u32,     // MASK_LEAD_TIME
    patches: u32,   // MASK_LEAD_TIME: time patches per lead
}

@group(0) @binding(0) var<uniform> p: Params;
// KV_F16: k and v hold f16 pairs (the f16 KV cache), unpacked to f32 on load.
#ifdef SG_LANES
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;          // (n_q, heads, HD / 4)
#ifdef KV_F16
@group(0) @binding(2) var<storage, read> k_cache: array<vec2<u32>>;    // (n_k, kv_heads, HD / 4) f16 x4
@group(0) @binding(3) var<storage, read> v_cache: array<vec2<u32>>;    // (n_k, kv_heads, HD / 4) f16 x4
fn k_at(i: u32) -> vec4<f32> {
    let w = k_cache[i];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
fn v_at(i: u32) -> vec4<f32> {
    let w = v_cache[i];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
#else
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<f32>>;    // (n_k, kv_heads, HD / 4)
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<f32>>;    // (n_k, kv_heads, HD / 4)
fn k_at(i: u32) -> vec4<f32> {
    return k_cache[i];
}
fn v_at(i: u32) -> vec4<f32> {
    return v_cache[i];
}
#endif
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // (n_q, heads, HD / 4)
#else
@group(0) @binding(1) var<storage, read> q: array<f32>;          // (n_q, heads, HD)
#ifdef KV_F16
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;    // (n_k, kv_heads, HD / 2) f16 pairs
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;    // (n_k, kv_heads, HD / 2) f16 pairs
fn k_at(i: u32) -> f32 {
    return unpack2x16float(k_cache[i >> 1u])[i & 1u];
}
fn v_at(i: u32) -> f32 {
    return unpack2x16float(v_cache[i >> 1u])[i & 1u];
}
#else
@group(0) @binding(2) var<storage, read> k_cache: array<f32>;    // (n_k, kv_heads, HD)
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;    // (n_k, kv_heads, HD)
fn k_at(i: u32) -> f32 {
    return k_cache[i];
}
fn v_at(i: u32) -> f32 {
    return v_cache[i];
}
#endif
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // (n_q, heads, HD)
#endif
#ifdef MASK_SEGMENTS
@group(0) @binding(5) var<storage, read> bounds: array<u32>;     // (n_q, 2) [lo, hi) key rows
#endif

// How many keys query i sees, and the row of its j-th key.
fn key_count(i: u32) -> u32 {
#ifdef MASK_CAUSAL
    return min(p.start + i + 1u, p.n_k);
#endif
#ifdef MASK_SEGMENTS
    let hi = min(bounds[2u * i + 1u], p.n_k);
    return hi - min(bounds[2u * i], hi);
#endif
#ifdef MASK_LEAD_TIME
    return p.patches + p.leads - 1u;
#endif
}

fn key_row(i: u32, j: u32) -> u32 {
#ifdef MASK_CAUSAL
    return j;
#endif
#ifdef MASK_SEGMENTS
    return bounds[2u * i] + j;
#endif
#ifdef MASK_LEAD_TIME
    let lead = i / p.patches;
    let t = i % p.patches;
    if (j < p.patches) {
        return lead * p.patches + j;
    }
    // The same time patch in the other leads, skipping the query's own lead (counted above).
    let c = j - p.patches;
    return (c + select(0u, 1u, c >= lead)) * p.patches + t;
#endif
}

#ifndef SG_LANES
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

    let n_keys = key_count(i);
    let kv_stride = p.kv_heads * HD;
    var m = -3.402823e38;
    var l = 0.0;
    var acc: array<f32, DPT>;
    for (var t0 = 0u; t0 < n_keys; t0 += WG) {
        let t = t0 + lid;
        var s = -3.402823e38;
        if (t < n_keys) {
            let k_base = key_row(i, t) * kv_stride + kvh * HD;
            var dot = 0.0;
            for (var d = 0u; d < HD; d++) {
                dot += q_s[d] * k_at(k_base + d);
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
                    a += p_s[u] * v_at(key_row(i, t0 + u) * kv_stride + kvh * HD + d);
                }
            }
            acc[j] = a;
        }
        m = m_new;
        workgroupBarrier();
    }
    // A query that sees no key (an empty segment) writes zeros rather than 0/0.
    let inv_l = select(0.0, 1.0 / l, l > 0.0);
    for (var j = 0u; j < DPT; j++) {
        let d = lid + j * WG;
        if (d < HD) {
            out[q_base + d] = acc[j] * inv_l;
        }
    }
}
#endif

#ifdef SG_LANES
// Adapters that run shaders on a CPU, with subgroups (gpu/tuning.rs): one 8-lane subgroup per
// (query row, KV head) holds the G = heads / kv_heads query heads of that KV head (GQA: every key
// and value row is loaded once for all of them). Lane l holds vec4 slots l, l + 8, ... of a head
// row (VPL of them), so every load is a vec4 and a dot product is one subgroupAdd; the online
// softmax walks the visible keys one by one, with no workgroup memory and no barriers (both are
// expensive on llvmpipe, see docs/performance-notes.md). Keys enumerate as in the kernel above.
const NV: u32 = HD / 4u;  // vec4 per head row

@compute @workgroup_size(8)
fn attention_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) sl: u32) {
    let kvh = wid.x;
    let i = wid.y;
    let lane = sl % 8u;
    // Slots past the row end load a clamped slot and count as zero, so control flow stays uniform.
#for c in VPL
    let d${c} = min(lane + 8u * ${c}u, NV - 1u);
    let on${c} = lane + 8u * ${c}u < NV;
#end
#for h in G
    let qrow${h} = (i * p.heads + kvh * G + ${h}u) * NV;
#for c in VPL
    let q${h}_${c} = select(vec4<f32>(0.0), q[qrow${h} + d${c}] * p.scale, on${c});
    var o${h}_${c} = vec4<f32>(0.0);
#end
    var m${h} = -3.402823e38;
    var l${h} = 0.0;
#end
    let n_keys = key_count(i);
    for (var j = 0u; j < n_keys; j++) {
        let kv = (key_row(i, j) * p.kv_heads + kvh) * NV;
#for c in VPL
        let k${c} = k_at(kv + d${c});
        let v${c} = v_at(kv + d${c});
#end
#for h in G
        var part${h} = 0.0;
#for c in VPL
        part${h} += dot(q${h}_${c}, k${c});
#end
        let s${h} = subgroupAdd(part${h});
        let mn${h} = max(m${h}, s${h});
        let old${h} = exp(m${h} - mn${h});
        let e${h} = exp(s${h} - mn${h});
        l${h} = l${h} * old${h} + e${h};
        m${h} = mn${h};
#for c in VPL
        o${h}_${c} = o${h}_${c} * old${h} + e${h} * v${c};
#end
#end
    }
    // A query that sees no key (an empty segment) writes zeros rather than 0/0.
#for h in G
    let inv${h} = select(0.0, 1.0 / l${h}, l${h} > 0.0);
#for c in VPL
    if (on${c}) {
        out[qrow${h} + d${c}] = o${h}_${c} * inv${h};
    }
#end
#end
}
#endif
