// Next-token selection on the GPU, equal to crate/engine/src/sampler.rs given the same uniform
// random number: logit bias -> repetition penalty -> temperature -> top-k -> top-p -> a draw by
// inverse CDF in index order (greedy: the first maximum). Only the chosen id leaves the GPU.
//
// The vocabulary is cut into chunks of CHUNK scores, one workgroup each. top-k and top-p find
// their threshold by a radix select over the order-preserving u32 key of each score, 8 bits per
// level: `hist` counts (and for top-p weighs) each chunk's scores per digit, `select` (one
// workgroup) sums the chunks and picks the digit. Probability mass is exp(s - max) in 24.40 fixed
// point summed with integer atomics, so every sum is exact and independent of thread order.
// Each variant below is one entry point, chosen by define.

struct Params {
    n: u32,          // vocabulary size
    n_groups: u32,   // chunks of CHUNK scores
    n_bias: u32,     // (id, bias) pairs in `bias`
    level: u32,      // radix level of hist/select: 0 (top 8 bits) .. 3
    top_k: u32,      // 0: off
    flags: u32,      // 1 greedy, 2 penalty, 4 temperature
    penalty: f32,
    temperature: f32,
    cut: f32,        // 1 - top_p, as the CPU sampler computes it
    u: f32,          // this step's uniform random number in [0, 1)
    _pad0: u32,
    _pad1: u32,
}

const CHUNK: u32 = WG * 4u;
// state[] slots
const S_MAX: u32 = 0u;     // f32 bits of the largest processed score
const S_PREFIX: u32 = 1u;  // radix key built so far
const S_KREM: u32 = 2u;    // top-k: rank still to find inside the chosen digit
const S_ACC: u32 = 3u;     // top-p: fixed-point mass above the chosen digit (lo, hi at +1)
const S_P: u32 = 5u;       // top-p: fixed-point mass to reach (lo, hi at +1)
const S_FLOOR: u32 = 7u;   // key below which scores are out (top-k's threshold for top-p)
const S_THR: u32 = 8u;     // key below which scores are out of the draw
const S_BAD: u32 = 9u;     // a raw logit was not finite

@group(0) @binding(0) var<uniform> p: Params;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Order-preserving key: a < b as floats <=> key(a) < key(b) as u32 (finite values).
fn key_of(s: f32) -> u32 {
    let b = bitcast<u32>(s);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// w in [0, 1] as 24.40 fixed point (lo, hi): exact to 2^-40.
fn fixed(w: f32) -> vec2<u32> {
    let a = w * 256.0;
    let whole = floor(a);
    return vec2<u32>(u32((a - whole) * 4294967296.0), u32(whole));
}

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn ge64(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.y > b.y || (a.y == b.y && a.x >= b.x);
}

fn to_f32(a: vec2<u32>) -> f32 {
    return f32(a.y) * 4294967296.0 + f32(a.x);
}

fn from_f32(v: f32) -> vec2<u32> {
    let hi = floor(v / 4294967296.0);
    return vec2<u32>(u32(max(v - hi * 4294967296.0, 0.0)), u32(hi));
}

#ifdef PROCESS
@group(0) @binding(1) var<storage, read> logits: array<f32>;          // (n) raw logits of the last row
@group(0) @binding(2) var<storage, read> bias: array<u32>;            // (max(1, 2 * n_bias)) id, f32 bits
@group(0) @binding(3) var<storage, read> seen: array<u32>;            // (n) 1 where the id is in the history
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;    // (n) processed scores
@group(0) @binding(5) var<storage, read_write> partials: array<u32>;  // (n_groups, 2) max bits, argmax or ~0 if non-finite

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;
var<workgroup> bad: array<u32, WG>;

// bias -> repetition penalty -> temperature, in the CPU sampler's order and arithmetic.
@compute @workgroup_size(WG)
fn process(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = group_index(wid, nwg);
    var bv = -3.402823e38;
    var bi = 0xffffffffu;
    var nonfinite = 0u;
    for (var j = 0u; j < 4u; j++) {
        let i = g * CHUNK + j * WG + lid.x;
        if (i >= p.n) {
            break;
        }
        var s = logits[i];
        if ((bitcast<u32>(s) & 0x7f800000u) == 0x7f800000u) {
            nonfinite = 1u;
        }
        for (var b = 0u; b < p.n_bias; b++) {
            if (bias[2u * b] == i) {
                s = s + bitcast<f32>(bias[2u * b + 1u]);
            }
        }
        if ((p.flags & 2u) != 0u && seen[i] != 0u) {
            s = select(s / p.penalty, s * p.penalty, s < 0.0);
        }
        if ((p.flags & 4u) != 0u) {
            s = s / p.temperature;
        }
        scores[i] = s;
        if (s > bv || (s == bv && i < bi)) {
            bv = s;
            bi = i;
        }
    }
    best_v[lid.x] = bv;
    best_i[lid.x] = bi;
    bad[lid.x] = nonfinite;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid.x < s) {
            let v = best_v[lid.x + s];
            let i = best_i[lid.x + s];
            if (v > best_v[lid.x] || (v == best_v[lid.x] && i < best_i[lid.x])) {
                best_v[lid.x] = v;
                best_i[lid.x] = i;
            }
            bad[lid.x] = bad[lid.x] | bad[lid.x + s];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        partials[2u * g] = bitcast<u32>(best_v[0]);
        partials[2u * g + 1u] = select(best_i[0], 0xffffffffu, bad[0] != 0u);
    }
}
#endif

#ifdef FINISH
@group(0) @binding(1) var<storage, read> partials: array<u32>;        // (n_groups, 2) from process
@group(0) @binding(2) var<storage, read_write> state: array<u32>;     // (16)
@group(0) @binding(3) var<storage, read_write> out: array<u32>;       // (2) id, non-finite flag
@group(0) @binding(4) var<storage, read_write> next_ids: array<u32>;  // (1) the next step's input id
@group(0) @binding(5) var<storage, read_write> seen: array<u32>;      // (n)

// One thread: the chunks in order, so ties go to the lowest id as torch.argmax. Resets the
// thresholds; in greedy mode also emits the id.
@compute @workgroup_size(1)
fn finish() {
    var bv = -3.402823e38;
    var bi = 0u;
    var nonfinite = 0u;
    for (var g = 0u; g < p.n_groups; g++) {
        let v = bitcast<f32>(partials[2u * g]);
        let i = partials[2u * g + 1u];
        if (i == 0xffffffffu) {
            nonfinite = 1u;
        } else if (v > bv) {
            bv = v;
            bi = i;
        }
    }
    state[S_MAX] = bitcast<u32>(bv);
    state[S_FLOOR] = 0u;
    state[S_THR] = 0u;
    state[S_BAD] = nonfinite;
    if ((p.flags & 1u) != 0u) {
        out[0] = bi;
        out[1] = nonfinite;
        next_ids[0] = bi;
        seen[bi] = 1u;
    }
}
#endif

#ifdef HIST
@group(0) @binding(1) var<storage, read> scores: array<f32>;          // (n)
@group(0) @binding(2) var<storage, read> state: array<u32>;           // (16)
@group(0) @binding(3) var<storage, read_write> partials: array<u32>;  // (n_groups, 3, 256) count, mass lo, mass hi

var<workgroup> count: array<atomic<u32>, 256>;
var<workgroup> mass_lo: array<atomic<u32>, 256>;
var<workgroup> mass_hi: array<atomic<u32>, 256>;

// Per chunk: how many scores (and, with MASS, how much exp(s - max)) fall in each 8-bit digit at
// this level, among scores at or above the floor whose higher digits equal the prefix.
@compute @workgroup_size(WG)
fn hist(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = group_index(wid, nwg);
    atomicStore(&count[lid.x], 0u);
    atomicStore(&mass_lo[lid.x], 0u);
    atomicStore(&mass_hi[lid.x], 0u);
    workgroupBarrier();
    let shift = 24u - 8u * p.level;
    let prefix = state[S_PREFIX];
    let floor_key = state[S_FLOOR];
    let mx = bitcast<f32>(state[S_MAX]);
    for (var j = 0u; j < 4u; j++) {
        let i = g * CHUNK + j * WG + lid.x;
        if (i >= p.n) {
            break;
        }
        let s = scores[i];
        let key = key_of(s);
        if (key < floor_key || (p.level > 0u && (key >> (shift + 8u)) != (prefix >> (shift + 8u)))) {
            continue;
        }
        let bin = (key >> shift) & 255u;
        atomicAdd(&count[bin], 1u);
#ifdef MASS
        let w = fixed(exp(s - mx));
        let old = atomicAdd(&mass_lo[bin], w.x);
        atomicAdd(&mass_hi[bin], w.y + select(0u, 1u, old + w.x < old));
#endif
    }
    workgroupBarrier();
    let base = g * 768u;
    partials[base + lid.x] = atomicLoad(&count[lid.x]);
    partials[base + 256u + lid.x] = atomicLoad(&mass_lo[lid.x]);
    partials[base + 512u + lid.x] = atomicLoad(&mass_hi[lid.x]);
}
#endif

#ifdef SELECT
@group(0) @binding(1) var<storage, read> partials: array<u32>;        // (n_groups, 3, 256) from hist
@group(0) @binding(2) var<storage, read_write> state: array<u32>;     // (16)

var<workgroup> bin_count: array<u32, 256>;
var<workgroup> bin_mass: array<vec2<u32>, 256>;

// Sums the chunks per digit (thread = digit), then walks the digits from the top: top-k stops at
// the digit holding the k-th largest score, top-p (MASS) at the digit where the mass above
// reaches (1 - cut) of the total. At level 3 the prefix is the threshold key.
@compute @workgroup_size(256)
fn select_digit(@builtin(local_invocation_id) lid: vec3<u32>) {
    var c = 0u;
    var m = vec2<u32>(0u, 0u);
    for (var g = 0u; g < p.n_groups; g++) {
        let base = g * 768u;
        c += partials[base + lid.x];
        m = add64(m, vec2<u32>(partials[base + 256u + lid.x], partials[base + 512u + lid.x]));
    }
    bin_count[lid.x] = c;
    bin_mass[lid.x] = m;
    workgroupBarrier();
    if (lid.x != 0u) {
        return;
    }
    let shift = 24u - 8u * p.level;
    var prefix = state[S_PREFIX];
    if (p.level == 0u) {
        prefix = 0u;
    }
#ifdef MASS
    var acc = vec2<u32>(state[S_ACC], state[S_ACC + 1u]);
    var goal = vec2<u32>(state[S_P], state[S_P + 1u]);
    if (p.level == 0u) {
        var total = vec2<u32>(0u, 0u);
        for (var b = 0u; b < 256u; b++) {
            total = add64(total, bin_mass[b]);
        }
        goal = from_f32((1.0 - p.cut) * to_f32(total));
        acc = vec2<u32>(0u, 0u);
    }
    var chosen = 0u;
    for (var b = 255; b >= 0; b--) {
        let bu = u32(b);
        if (bin_count[bu] == 0u) {
            continue;
        }
        chosen = bu;
        let next = add64(acc, bin_mass[bu]);
        if (ge64(next, goal)) {
            break;
        }
        acc = next;
    }
    state[S_ACC] = acc.x;
    state[S_ACC + 1u] = acc.y;
    state[S_P] = goal.x;
    state[S_P + 1u] = goal.y;
    prefix = prefix | (chosen << shift);
    if (p.level == 3u) {
        state[S_THR] = prefix;
    }
#else
    var k = state[S_KREM];
    if (p.level == 0u) {
        k = p.top_k;
    }
    var chosen = 0u;
    var above = 0u;
    for (var b = 255; b >= 0; b--) {
        let bu = u32(b);
        if (bin_count[bu] == 0u) {
            continue;
        }
        chosen = bu;
        if (above + bin_count[bu] >= k) {
            break;
        }
        above += bin_count[bu];
    }
    state[S_KREM] = k - above;
    prefix = prefix | (chosen << shift);
    if (p.level == 3u) {
        state[S_FLOOR] = prefix;
        state[S_THR] = prefix;
    }
#endif
    state[S_PREFIX] = prefix;
}
#endif

#ifdef DRAW_MASS
@group(0) @binding(1) var<storage, read> scores: array<f32>;          // (n)
@group(0) @binding(2) var<storage, read> state: array<u32>;           // (16)
@group(0) @binding(3) var<storage, read_write> partials: array<u32>;  // (n_groups, 2) kept mass lo, hi

var<workgroup> lo: atomic<u32>;
var<workgroup> hi: atomic<u32>;

// Per chunk: the fixed-point mass of the scores kept by top-k / top-p.
@compute @workgroup_size(WG)
fn draw_mass(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = group_index(wid, nwg);
    if (lid.x == 0u) {
        atomicStore(&lo, 0u);
        atomicStore(&hi, 0u);
    }
    workgroupBarrier();
    let thr = state[S_THR];
    let mx = bitcast<f32>(state[S_MAX]);
    for (var j = 0u; j < 4u; j++) {
        let i = g * CHUNK + j * WG + lid.x;
        if (i >= p.n) {
            break;
        }
        let s = scores[i];
        if (key_of(s) < thr) {
            continue;
        }
        let w = fixed(exp(s - mx));
        let old = atomicAdd(&lo, w.x);
        atomicAdd(&hi, w.y + select(0u, 1u, old + w.x < old));
    }
    workgroupBarrier();
    if (lid.x == 0u) {
        partials[2u * g] = atomicLoad(&lo);
        partials[2u * g + 1u] = atomicLoad(&hi);
    }
}
#endif

#ifdef DRAW_PICK
@group(0) @binding(1) var<storage, read> scores: array<f32>;          // (n)
@group(0) @binding(2) var<storage, read> state: array<u32>;           // (16)
@group(0) @binding(3) var<storage, read> partials: array<u32>;        // (n_groups, 2) from draw_mass
@group(0) @binding(4) var<storage, read_write> out: array<u32>;       // (2) id, non-finite flag
@group(0) @binding(5) var<storage, read_write> next_ids: array<u32>;  // (1) the next step's input id
@group(0) @binding(6) var<storage, read_write> seen: array<u32>;      // (n)

// One thread: goal = u * total kept mass; the first id (in index order) whose running mass
// exceeds it, as the CPU's inverse-CDF draw. Chunks are skipped by their mass, then one chunk is
// scanned score by score with the same arithmetic draw_mass used.
@compute @workgroup_size(1)
fn draw_pick() {
    var total = vec2<u32>(0u, 0u);
    for (var g = 0u; g < p.n_groups; g++) {
        total = add64(total, vec2<u32>(partials[2u * g], partials[2u * g + 1u]));
    }
    var goal = from_f32(p.u * to_f32(total));
    if (ge64(goal, total)) {
        // u * total rounded up to the total: the last kept id, as the CPU's rounding fallback.
        goal = select(vec2<u32>(total.x - 1u, total.y), vec2<u32>(0xffffffffu, total.y - 1u), total.x == 0u);
    }
    let thr = state[S_THR];
    let mx = bitcast<f32>(state[S_MAX]);
    var acc = vec2<u32>(0u, 0u);
    var id = 0u;
    for (var g = 0u; g < p.n_groups; g++) {
        let next = add64(acc, vec2<u32>(partials[2u * g], partials[2u * g + 1u]));
        if (ge64(goal, next)) {
            acc = next;
            continue;
        }
        // The goal lies in this chunk: scan it in index order.
        for (var j = 0u; j < CHUNK; j++) {
            let i = g * CHUNK + j;
            if (i >= p.n) {
                break;
            }
            let s = scores[i];
            if (key_of(s) < thr) {
                continue;
            }
            acc = add64(acc, fixed(exp(s - mx)));
            if (!ge64(goal, acc)) {
                id = i;
                break;
            }
        }
        break;
    }
    out[0] = id;
    out[1] = state[S_BAD];
    next_ids[0] = id;
    seen[id] = 1u;
}
#endif
