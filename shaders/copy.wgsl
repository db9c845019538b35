// Plain buffer copies, the bandwidth bound `qoqmed bench` states decode efficiency against: the
// best of several (one u32, one vec4<u32>, or PER vec4<u32> per thread), measured on the same
// adapter in the same run. A weak copy kernel would flatter every other number.

struct Params {
    n: u32,       // elements of the variant's type (u32 or vec4<u32>)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

#ifdef SCALAR
@group(0) @binding(1) var<storage, read> src: array<u32>;        // (n)
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;  // (n)

@compute @workgroup_size(WG)
fn copy_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i < p.n) {
        dst[i] = src[i];
    }
}
#endif

#ifdef VEC4
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;        // (n)
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;  // (n)

// Thread t of a workgroup copies elements base + t, base + t + WG, ... (PER of them): each pass
// over the workgroup stays contiguous, so loads coalesce.
@compute @workgroup_size(WG)
fn copy_vec4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let base = (wid.x + wid.y * nwg.x) * WG * PER;
    for (var j = 0u; j < PER; j++) {
        let i = base + j * WG + lid.x;
        if (i < p.n) {
            dst[i] = src[i];
        }
    }
}
#endif
