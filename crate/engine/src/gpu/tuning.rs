//! Which kernel variants an adapter gets, chosen from its properties (device type, features,
//! subgroup sizes), never from vendor names. Measurements behind the choices:
//! docs/performance-notes.md.

/// Kernel variant choices for one adapter. Public and mutable so tests can force every variant
/// on any adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// The adapter runs shaders on the CPU (lavapipe/llvmpipe, SwiftShader, WARP).
    pub cpu: bool,
    /// Smallest subgroup size, when the SUBGROUP feature is enabled.
    pub subgroup: Option<u32>,
    /// Linear layers on `matmul_rows` (lanes over weight rows, no reductions, no barriers): CPU
    /// adapters (lavapipe; SwiftShader in a browser).
    pub matmul_rows: bool,
    /// matmul_rows spreads x with subgroupBroadcast (subgroups of a multiple of 8 lanes); without
    /// it every lane reads x itself (5x faster than the portable GEMV on SwiftShader all the same).
    pub rows_broadcast: bool,
    /// Attention as one 8-lane subgroup per (query, KV head) with vec4 loads and no barriers
    /// (`attention_sg`): CPU adapters with subgroups of a multiple of 8 lanes.
    pub attention_sg: bool,
    /// The portable attention splits a block's keys over several workgroups (flash-decoding)
    /// when too few workgroups would run, each split taking at least this many keys. Tests lower
    /// it to split small caches.
    pub attention_split_keys: u32,
    /// The portable decode GEMV reduces through subgroups before workgroup memory: adapters with
    /// subgroups that are not CPUs (CPU adapters run matmul_rows instead).
    pub gemv_subgroup: bool,
    /// The portable prefill GEMM holds its tiles in f16 and multiplies in f16 (sums stay f32):
    /// adapters with shader-f16 that are not CPUs (a CPU converts f16 math to f32 anyway).
    pub gemm_f16: bool,
}

impl Tuning {
    pub fn for_adapter(info: &wgpu::AdapterInfo, features: wgpu::Features) -> Self {
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        let subgroup = features
            .contains(wgpu::Features::SUBGROUP)
            .then_some(info.subgroup_min_size);
        let lanes8 = cpu && subgroup.is_some_and(|s| s >= 8 && s.is_power_of_two());
        Self {
            cpu,
            subgroup,
            matmul_rows: cpu,
            rows_broadcast: lanes8,
            attention_sg: lanes8,
            attention_split_keys: 128,
            gemv_subgroup: !cpu && subgroup.is_some(),
            gemm_f16: !cpu && features.contains(wgpu::Features::SHADER_F16),
        }
    }

    /// The portable kernels only (what a browser without subgroups runs).
    pub fn portable() -> Self {
        Self {
            cpu: false,
            subgroup: None,
            matmul_rows: false,
            rows_broadcast: false,
            attention_sg: false,
            attention_split_keys: 128,
            gemv_subgroup: false,
            gemm_f16: false,
        }
    }
}
