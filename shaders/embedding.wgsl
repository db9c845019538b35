// Token embedding gather: out[t, :] = table[ids[t], :].

struct Params {
    n_tokens: u32,
    hidden: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;        // (n_tokens)
@group(0) @binding(2) var<storage, read> w: array<u32>;          // (vocab, hidden) packed
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // (n_tokens, hidden)

#include weights

@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let t = gid.y;
    if (col >= p.hidden || t >= p.n_tokens) {
        return;
    }
    out[t * p.hidden + col] = load_w(ids[t] * p.hidden + col);
}
