// Grouped-query softmax attention, scale folded into q, online softmax. Which keys a query sees is
// the mask variant, chosen by a define:
//   MASK_CAUSAL     decoder over the KV cache: query i sits at row start + i, sees rows 0..=start + i
//   MASK_SEGMENTS   non-causal within a segment (vision windows / full attention): query i sees rows
//                   bounds[2i] .. bounds[2i + 1]
//   MASK_LEAD_TIME  ECG-JEPA: token a = lead * PATCHES + t sees the tokens of its own lead and of its
//                   own time patch in the other leads (the only unmasked pairs)
// Online softmax is order-independent, so every kernel only enumerates (a superset of) the visible
// keys. Three kernels (ops/attention.rs picks them from gpu::Tuning):
//   attention_tiled  the portable kernel (browsers, GPUs): a block of BQ (query row, head) pairs of
//                    one KV head per workgroup, K/V tiles of BK keys through workgroup memory, so the
//                    G = heads / kv_heads query heads of a KV head and neighbouring query rows share
//                    every K/V load. SPLIT: the block's keys are also split over the workgroups'
//                    z index (flash-decoding: one query row over a long cache still fills the GPU);
//                    each split writes its unnormalised output, max and sum, and attention_merge
//                    combines them.
//   attention_sg     CPU adapters with subgroups: one 8-lane subgroup per (query row, KV head).

struct Params {
    n_q: u32,
    start: u32,     // MASK_CAUSAL: cache row of query 0
    heads: u32,
    kv_heads: u32,
    scale: f32,
    n_k: u32,       // rows of k / v
    leads: u32,     // MASK_LEAD_TIME
    patches: u32,   // MASK_LEAD_TIME: time patches per lead
    splits: u32,    // SPLIT / MERGE: key splits per block
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
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
#endif

#ifdef TILED
@group(0) @binding(1) var<storage, read> q: array<f32>;          // (n_q, heads, HD)
// VEC4 (HD % 4 == 0): K/V rows are read as vec4 (f32) or 4 f16 (KV_F16); else value by value.
#ifdef VEC4
#ifdef KV_F16
@group(0) @binding(2) var<storage, read> k_cache: array<vec2<u32>>;   // (n_k, kv_heads, HD / 4) f16 x4
@group(0) @binding(3) var<storage, read> v_cache: array<vec2<u32>>;   // (n_k, kv_heads, HD / 4) f16 x4
fn k4(i: u32) -> vec4<f32> {
    let w = k_cache[i];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
fn v4(i: u32) -> vec4<f32> {
    let w = v_cache[i];
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
#else
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<f32>>;   // (n_k, kv_heads, HD / 4)
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<f32>>;   // (n_k, kv_heads, HD / 4)
fn k4(i: u32) -> vec4<f32> {
    return k_cache[i];
}
fn v4(i: u32) -> vec4<f32> {
    return v_cache[i];
}
#endif
// Slot c of key row `row`, KV head `kvh`.
fn k_slot(row: u32, kvh: u32, c: u32) -> vec4<f32> {
    return k4((row * p.kv_heads + kvh) * HD4 + c);
}
fn v_slot(row: u32, kvh: u32, c: u32) -> vec4<f32> {
    return v4((row * p.kv_heads + kvh) * HD4 + c);
}
#else
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
// Slot c (values 4c .. 4c + 3, zero past HD) of key row `row`, KV head `kvh`.
fn k_slot(row: u32, kvh: u32, c: u32) -> vec4<f32> {
    let base = (row * p.kv_heads + kvh) * HD;
    var r = vec4<f32>(0.0);
    for (var u = 0u; u < 4u; u++) {
        if (4u * c + u < HD) {
            r[u] = k_at(base + 4u * c + u);
        }
    }
    return r;
}
fn v_slot(row: u32, kvh: u32, c: u32) -> vec4<f32> {
    let base = (row * p.kv_heads + kvh) * HD;
    var r = vec4<f32>(0.0);
    for (var u = 0u; u < 4u; u++) {
        if (4u * c + u < HD) {
            r[u] = v_at(base + 4u * c + u);
        }
    }
    return r;
}
#endif
#ifdef SPLIT
// (splits, n_q, heads, HD) unnormalised outputs, then (splits, n_q, heads, 2) running max and sum.
@group(0) @binding(6) var<storage, read_write> part: array<f32>;
#else
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // (n_q, heads, HD)
#endif
#endif

#ifdef MERGE
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // (n_q, heads, HD)
@group(0) @binding(6) var<storage, read> part: array<f32>;       // as SPLIT writes it
#endif

#ifdef MASK_SEGMENTS
@group(0) @binding(5) var<storage, read> bounds: array<u32>;     // (n_q, 2) [lo, hi) key rows
#endif

#ifdef SG_LANES
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
#endif

#ifdef TILED
const WG: u32 = 64u;
const DP: u32 = WG / BQ;                  // invocations per (query row, head) pair
const HD4: u32 = (HD + 3u) / 4u;          // vec4 slots per head row
const DPT: u32 = (HD4 + DP - 1u) / DP;    // slots per invocation: c * DP + its index
const NONE: u32 = 0xffffffffu;            // no key row / no query row
const NEG: f32 = -1e30;                   // score of a masked key

// Phases of one tile (4 barriers): K tile in; partial dot products; scores (masked) and V tile in
// (same buffer) and the next tile's key rows; online-softmax update of every pair's output.
var<workgroup> kv_s: array<vec4<f32>, BK * HD4>;  // (BK, HD4) the tile's K rows, then its V rows
var<workgroup> part_s: array<f32, WG * BK>;        // (BQ, DP, BK) partial dot products
var<workgroup> score_s: array<f32, BQ * BK>;       // (BQ, BK) scaled scores, NEG where masked
var<workgroup> rows_s: array<u32, 2u * BK>;        // (2, BK) key rows of this tile and the next
var<workgroup> qrow_s: array<u32, BQ>;             // (BQ) query row of each pair, NONE past n_q
#ifdef MASK_SEGMENTS
var<workgroup> qlo_s: array<u32, BQ>;              // (BQ) first visible key row of each pair
var<workgroup> qhi_s: array<u32, BQ>;              // (BQ) end of its visible key rows
#endif

// The keys a block of query rows i_lo..=i_hi may see, as a list enumerated by `key_at`:
// causal and segments a range from `lo`; lead/time, per lead, the whole lead if it holds one of
// the block's rows, else the block's time patches [ta, ta + w) of that lead.
struct Keys {
    count: u32,
    lo: u32,
    la: u32,   // MASK_LEAD_TIME: first and last lead of the block
    lb: u32,
    ta: u32,
    w: u32,
}

fn block_keys(i_lo: u32, i_hi: u32) -> Keys {
    var r = Keys(0u, 0u, 0u, 0u, 0u, 0u);
#ifdef MASK_CAUSAL
    r.count = min(p.start + i_hi + 1u, p.n_k);
#endif
#ifdef MASK_SEGMENTS
    var lo = p.n_k;
    var hi = 0u;
    for (var i = i_lo; i <= i_hi; i++) {
        let b1 = min(bounds[2u * i + 1u], p.n_k);
        let b0 = min(bounds[2u * i], b1);
        if (b0 < b1) {
            lo = min(lo, b0);
            hi = max(hi, b1);
        }
    }
    r.lo = lo;
    r.count = select(0u, hi - lo, hi > lo);
#endif
#ifdef MASK_LEAD_TIME
    r.la = i_lo / p.patches;
    r.lb = i_hi / p.patches;
    // Rows of one lead: their time patches; across leads the patches wrap, so all of them.
    r.ta = select(0u, i_lo % p.patches, r.la == r.lb);
    r.w = select(p.patches, i_hi % p.patches + 1u - r.ta, r.la == r.lb);
    r.count = (p.leads - (r.lb - r.la + 1u)) * r.w + (r.lb - r.la + 1u) * p.patches;
#endif
    return r;
}

fn key_at(r: Keys, v: u32) -> u32 {
#ifdef MASK_LEAD_TIME
    let before = r.la * r.w;
    let own = (r.lb - r.la + 1u) * p.patches;
    if (v < before) {
        return (v / r.w) * p.patches + r.ta + v % r.w;
    }
    if (v < before + own) {
        return r.la * p.patches + (v - before);
    }
    let c = v - before - own;
    return (r.lb + 1u + c / r.w) * p.patches + r.ta + c % r.w;
#else
    return r.lo + v;
#endif
}

// Whether query row i (pair slot sq of the block) sees key row `row`.
fn visible(sq: u32, i: u32, row: u32) -> bool {
#ifdef MASK_CAUSAL
    return row <= p.start + i;
#endif
#ifdef MASK_SEGMENTS
    return row >= qlo_s[sq] && row < qhi_s[sq];
#endif
#ifdef MASK_LEAD_TIME
    return row / p.patches == i / p.patches || row % p.patches == i % p.patches;
#endif
}

@compute @workgroup_size(WG)
fn attention_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let kvh = wid.x;
    let split = wid.z;
    let pairs = p.n_q * G;
    // Pair = query row * G + head within the KV head's group.
    let pair0 = wid.y * BQ;
    let i_lo = pair0 / G;
    let i_hi = (min(pair0 + BQ, pairs) - 1u) / G;
    let sq = li / DP;
    let dp = li % DP;
    let pair = pair0 + sq;
    let live = pair < pairs;
    let i = min(pair, pairs - 1u) / G;
    let h = kvh * G + pair % G;

    if (li < BQ) {
        let pi = pair0 + li;
        qrow_s[li] = select(NONE, pi / G, pi < pairs);
#ifdef MASK_SEGMENTS
        let qi = min(pi, pairs - 1u) / G;
        qhi_s[li] = min(bounds[2u * qi + 1u], p.n_k);
        qlo_s[li] = bounds[2u * qi];
#endif
    }
    var qv: array<vec4<f32>, DPT>;
    var o: array<vec4<f32>, DPT>;
    let q_base = (i * p.heads + h) * HD;
    for (var c = 0u; c < DPT; c++) {
        let s = dp + c * DP;
        var v = vec4<f32>(0.0);
        for (var u = 0u; u < 4u; u++) {
            if (live && 4u * s + u < HD) {
                v[u] = q[q_base + 4u * s + u] * p.scale;
            }
        }
        qv[c] = v;
        o[c] = vec4<f32>(0.0);
    }

    // This split's share of the block's keys, in whole tiles.
    let keys = block_keys(i_lo, i_hi);
    let chunk = ((keys.count + p.splits - 1u) / p.splits + BK - 1u) / BK * BK;
    let v_begin = min(split * chunk, keys.count);
    let v_end = min(v_begin + chunk, keys.count);
    if (li < BK) {
        rows_s[li] = select(NONE, key_at(keys, v_begin + li), v_begin + li < v_end);
    }
    var m = NEG;
    var l = 0.0;
    var cur = 0u;
    workgroupBarrier();
    for (var t0 = v_begin; t0 < v_end; t0 += BK) {
        for (var e = li; e < BK * HD4; e += WG) {
            let row = rows_s[cur + e / HD4];
            kv_s[e] = select(vec4<f32>(0.0), k_slot(min(row, p.n_k - 1u), kvh, e % HD4), row != NONE);
        }
        workgroupBarrier();
        for (var j = 0u; j < BK; j++) {
            var acc = 0.0;
            for (var c = 0u; c < DPT; c++) {
                let s = dp + c * DP;
                if (s < HD4) {
                    acc += dot(qv[c], kv_s[j * HD4 + s]);
                }
            }
            part_s[li * BK + j] = acc;
        }
        workgroupBarrier();
        for (var e = li; e < BQ * BK; e += WG) {
            let eq = e / BK;
            let j = e % BK;
            var s = 0.0;
            for (var d = 0u; d < DP; d++) {
                s += part_s[(eq * DP + d) * BK + j];
            }
            let row = rows_s[cur + j];
            let qi = qrow_s[eq];
            let seen = row != NONE && qi != NONE && visible(eq, qi, row);
            score_s[e] = select(NEG, s, seen);
        }
        for (var e = li; e < BK * HD4; e += WG) {
            let row = rows_s[cur + e / HD4];
            kv_s[e] = select(vec4<f32>(0.0), v_slot(min(row, p.n_k - 1u), kvh, e % HD4), row != NONE);
        }
        let next = BK - cur;
        if (li < BK) {
            let v = t0 + BK + li;
            rows_s[next + li] = select(NONE, key_at(keys, v), v < v_end);
        }
        workgroupBarrier();
        var mt = m;
        for (var j = 0u; j < BK; j++) {
            mt = max(mt, score_s[sq * BK + j]);
        }
        let rescale = exp(m - mt);
        var pj: array<f32, BK>;
        var lt = 0.0;
        for (var j = 0u; j < BK; j++) {
            let s = score_s[sq * BK + j];
            pj[j] = select(0.0, exp(s - mt), s > 0.5 * NEG);
            lt += pj[j];
        }
        l = l * rescale + lt;
        m = mt;
        for (var c = 0u; c < DPT; c++) {
            let s = min(dp + c * DP, HD4 - 1u);
            var a = o[c] * rescale;
            for (var j = 0u; j < BK; j++) {
                a += pj[j] * kv_s[j * HD4 + s];
            }
            o[c] = a;
        }
        cur = next;
        workgroupBarrier();
    }
    if (!live) {
        return;
    }
#ifdef SPLIT
    let slot = (split * p.n_q + i) * p.heads + h;
    for (var c = 0u; c < DPT; c++) {
        let s = dp + c * DP;
        for (var u = 0u; u < 4u; u++) {
            if (4u * s + u < HD) {
                part[slot * HD + 4u * s + u] = o[c][u];
            }
        }
    }
    if (dp == 0u) {
        let ml = p.splits * p.n_q * p.heads * HD;
        part[ml + 2u * slot] = m;
        part[ml + 2u * slot + 1u] = l;
    }
#else
    // A query that sees no key (an empty segment) writes zeros rather than 0/0.
    let inv_l = select(0.0, 1.0 / l, l > 0.0);
    for (var c = 0u; c < DPT; c++) {
        let s = dp + c * DP;
        for (var u = 0u; u < 4u; u++) {
            if (4u * s + u < HD) {
                out[q_base + 4u * s + u] = o[c][u] * inv_l;
            }
        }
    }
#endif
}
#endif

#ifdef MERGE
const NEG: f32 = -1e30;

// One invocation per output value: the splits' outputs weighted by exp(max_s - max) and
// normalised by the likewise weighted sums.
@compute @workgroup_size(64)
fn attention_merge(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let slots = p.n_q * p.heads;
    if (idx >= slots * HD) {
        return;
    }
    let slot = idx / HD;
    let ml = p.splits * slots * HD;
    var mx = NEG;
    for (var s = 0u; s < p.splits; s++) {
        mx = max(mx, part[ml + 2u * (s * slots + slot)]);
    }
    var sum = 0.0;
    var acc = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let at = s * slots + slot;
        let w = exp(part[ml + 2u * at] - mx);
        sum += w * part[ml + 2u * at + 1u];
        acc += w * part[at * HD + idx % HD];
    }
    out[idx] = select(0.0, acc / sum, sum > 0.0);
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
