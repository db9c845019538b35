// Greedy pick on the GPU so decode reads back one u32 instead of the vocabulary's logits.
// Ties go to the lowest index, as torch.argmax.

struct Params {
    n: u32,
    offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;     // (>= offset + n)
@group(0) @binding(2) var<storage, read_write> out: array<u32>;  // (1)

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(WG)
fn argmax(@builtin(local_invocation_id) lid: vec3<u32>) {
    var bv = -3.402823e38;
    var bi = 0xffffffffu;
    for (var i = lid.x; i < p.n; i += WG) {
        let v = logits[p.offset + i];
        if (better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    best_v[lid.x] = bv;
    best_i[lid.x] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid.x < s && better(best_v[lid.x + s], best_i[lid.x + s], best_v[lid.x], best_i[lid.x])) {
            best_v[lid.x] = best_v[lid.x + s];
            best_i[lid.x] = best_i[lid.x + s];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        out[0] = best_i[0];
    }
}
