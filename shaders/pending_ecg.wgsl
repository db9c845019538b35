// TEMPORARY (branch ecg only): stand-ins for the lead's `ops::gelu` and AttnMask::LeadOrTime until
// they land on main; removed at that merge.

struct Params {
    n: u32,
    heads: u32,
    leads: u32,
    patches: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

#ifdef GELU
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// erf by Abramowitz-Stegun 7.1.26 is too coarse (1.5e-7 abs on erf, fine) -- use it for now.
fn erf_approx(x: f32) -> f32 {
    let s = sign(x);
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
    return s * y;
}

@compute @workgroup_size(64)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i < p.n) {
        let x = src[i];
        dst[i] = 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752));
    }
}
#endif

#ifdef ATTN
@group(0) @binding(1) var<storage, read> q: array<f32>;          // (n, heads, HD)
@group(0) @binding(2) var<storage, read> k: array<f32>;          // (n, heads, HD)
@group(0) @binding(3) var<storage, read> v: array<f32>;          // (n, heads, HD)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // (n, heads, HD)

// One thread per (query, head): walks the keys of the same lead, then the same time patch.
@compute @workgroup_size(64)
fn attention_lead_or_time(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.x;
    if (idx >= p.n * p.heads) {
        return;
    }
    let i = idx / p.heads;
    let h = idx % p.heads;
    let lead = i / p.patches;
    let tp = i % p.patches;
    let stride = p.heads * HD;
    let qb = i * stride + h * HD;
    var m = -3.402823e38;
    var l = 0.0;
    var acc: array<f32, HD>;
    for (var j = 0u; j < p.n; j++) {
        if (j / p.patches != lead && j % p.patches != tp) {
            continue;
        }
        let kb = j * stride + h * HD;
        var s = 0.0;
        for (var d = 0u; d < HD; d++) {
            s += q[qb + d] * k[kb + d];
        }
        s *= p.scale;
        let m_new = max(m, s);
        let r = exp(m - m_new);
        let e = exp(s - m_new);
        l = l * r + e;
        for (var d = 0u; d < HD; d++) {
            acc[d] = acc[d] * r + e * v[kb + d];
        }
        m = m_new;
    }
    for (var d = 0u; d < HD; d++) {
        out[qb + d] = acc[d] / l;
    }
}
#endif
