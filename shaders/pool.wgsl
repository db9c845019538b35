// Mean over the rows of a (rows, n) matrix: the ECG encoder pools its tokens into one vector.
// One thread per column walks down the rows, so reads of neighbouring threads are contiguous;
// rows are few (400 tokens), columns many (768 features).

struct Params {
    rows: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // (rows, n)
@group(0) @binding(2) var<storage, read_write> out: array<f32>;  // (n)

@compute @workgroup_size(WG)
fn mean_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.n) {
        return;
    }
    var acc = 0.0;
    for (var i = 0u; i < p.rows; i++) {
        acc += x[i * p.n + j];
    }
    out[j] = acc / f32(p.rows);
}
