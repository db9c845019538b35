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
