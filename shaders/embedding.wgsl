// Token embedding gather: out[t, :] = table[ids[t], :]. Dispatched once per weight part; each
// dispatch writes only the tokens whose id falls in its rows row0..row1.

struct Params {
    n_tokens: u32,
    hidden: u32,
    row0: u32,
    row1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;        // (n_tokens)
@group(0) @binding(2) var<storage, read> w: array<u32>;          // (row1 - row0, hidden) packed
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // (n_tokens, hidden)
#ifdef W_QUANT
@group(0) @binding(5) var<storage, read> w_scales: array<u32>;   // (row1 - row0, hidden / 32) f16 pairs
#endif

#include weights

@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let t = gid.y;
    if (col >= p.hidden || t >= p.n_tokens) {
        return;
    }
    let id = ids[t];
    if (id < p.row0 || id >= p.row1) {
        return;
    }
    out[t * p.hidden + col] = load_w((id - p.row0) * p.hidden + col);
}
