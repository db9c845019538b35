// Vision-tower kernels (Qwen2.5-VL): the qkv split with the 2-D rotary embedding, and a row gather
// used both to un-permute the merger's window order and to write features into the prompt's
// embedding rows. (Attention over windows / whole images is attention.wgsl's MASK_SEGMENTS, GELU is
// elementwise.wgsl's.) Flat indices come from a 2-D grid of workgroups (65535 per dimension).

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

#ifdef QKV_ROPE
struct Params {
    n: u32,      // rows (patches)
    heads: u32,
    hd: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// transformers: qkv(x).reshape(n, 3, heads, hd); q and k rotated (rotate-half pairs i, i + hd/2)
// with per-patch tables whose first half of frequencies follows the patch row, the second its column.
@group(0) @binding(1) var<storage, read> qkv: array<f32>;       // (n, 3, heads, hd)
@group(0) @binding(2) var<storage, read> cos_t: array<f32>;     // (n, hd / 2)
@group(0) @binding(3) var<storage, read> sin_t: array<f32>;     // (n, hd / 2)
@group(0) @binding(4) var<storage, read_write> q: array<f32>;   // (n, heads, hd)
@group(0) @binding(5) var<storage, read_write> k: array<f32>;   // (n, heads, hd)
@group(0) @binding(6) var<storage, read_write> v: array<f32>;   // (n, heads, hd)

@compute @workgroup_size(WG)
fn qkv_rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = p.hd / 2u;
    let idx = flat_index(gid, nwg);
    if (idx >= p.n * p.heads * half) {
        return;
    }
    let i = idx % half;
    let h = (idx / half) % p.heads;
    let t = idx / (half * p.heads);
    let c = cos_t[t * half + i];
    let s = sin_t[t * half + i];
    let width = p.heads * p.hd;
    let src = t * 3u * width + h * p.hd + i;
    let dst = (t * p.heads + h) * p.hd + i;
    let q1 = qkv[src];
    let q2 = qkv[src + half];
    q[dst] = q1 * c - q2 * s;
    q[dst + half] = q2 * c + q1 * s;
    let k1 = qkv[src + width];
    let k2 = qkv[src + width + half];
    k[dst] = k1 * c - k2 * s;
    k[dst + half] = k2 * c + k1 * s;
    v[dst] = qkv[src + 2u * width];
    v[dst + half] = qkv[src + 2u * width + half];
}
#endif

#ifdef GATHER_ROWS
struct Params {
    n: u32,         // destination rows
    width: u32,     // values per row
    src_rows: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// dst row i = src row index[i]; an index of 0xffffffff leaves dst row i as it is (a prompt token
// that keeps its own embedding).
@group(0) @binding(1) var<storage, read> src: array<f32>;        // (src_rows, width)
@group(0) @binding(2) var<storage, read> index: array<u32>;      // (n)
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;  // (n, width)

@compute @workgroup_size(WG)
fn gather_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let width = p.width;
    let idx = flat_index(gid, nwg);
    if (idx >= p.n * width) {
        return;
    }
    let row = idx / width;
    let src_row = index[row];
    if (src_row != 0xffffffffu && src_row < p.src_rows) {
        dst[idx] = src[src_row * width + idx % width];
    }
}
#endif
