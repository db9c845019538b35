// Elementwise ops over flat f32 arrays. Large arrays are dispatched as a 2-D grid of workgroups
// (the 65535-per-dimension cap), hence the row-major flattening of the global id.

struct Params {
    n: u32,
    src_offset: u32,
    dst_offset: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

#ifdef ADD
@group(0) @binding(1) var<storage, read_write> a: array<f32>;   // (n) accumulates in place
@group(0) @binding(2) var<storage, read> b: array<f32>;         // (n)

@compute @workgroup_size(WG)
fn add_inplace(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) {
        a[i] = a[i] + b[i];
    }
}
#endif

#ifdef SILU_MUL
@group(0) @binding(1) var<storage, read> gate: array<f32>;       // (n)
@group(0) @binding(2) var<storage, read> up: array<f32>;         // (n)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // (n)

@compute @workgroup_size(WG)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) {
        let g = gate[i];
        out[i] = g / (1.0 + exp(-g)) * up[i];
    }
}
#endif

#ifdef GELU
@group(0) @binding(1) var<storage, read> src: array<f32>;        // (n)
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;  // (n)

// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7): WGSL has no erf, and the vision merger
// and the ECG encoder use the exact (erf) GELU, not the tanh approximation.
fn erf(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-a * a));
}

@compute @workgroup_size(WG)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) {
        let x = src[i];
        dst[i] = 0.5 * x * (1.0 + erf(x * 0.70710678118654752));
    }
}
#endif

#ifdef COPY_F16
// Into an f16 tensor: one invocation per word, n and dst_offset in values, both even.
@group(0) @binding(1) var<storage, read> src: array<f32>;        // (>= src_offset + n)
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;  // (>= (dst_offset + n) / 2) f16 pairs

@compute @workgroup_size(WG)
fn copy_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (2u * i < p.n) {
        let s = p.src_offset + 2u * i;
        dst[p.dst_offset / 2u + i] = pack2x16float(vec2<f32>(src[s], src[s + 1u]));
    }
}
#endif

#ifdef COPY
@group(0) @binding(1) var<storage, read> src: array<f32>;        // (>= src_offset + n)
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;  // (>= dst_offset + n)

@compute @workgroup_size(WG)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n) {
        dst[p.dst_offset + i] = src[p.src_offset + i];
    }
}
#endif
