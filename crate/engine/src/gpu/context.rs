//! Adapter choice and the device. We request the adapter's real limits (wgpu's defaults cap a
//! binding at 128 MiB) and shader-f16 where offered, and turn wgpu validation errors into
//! [`Error::Gpu`] instead of the default panic.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

use super::shader::PipelineCache;
use super::tuning::Tuning;

/// What `qoqmed adapters` prints and `--adapter N` picks from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

impl AdapterSummary {
    fn new(index: usize, info: &wgpu::AdapterInfo) -> Self {
        Self {
            index,
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
        }
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {}, {})",
            self.name, self.backend, self.device_type, self.driver
        )
    }
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// Kernel variants for this adapter; tests may change it to force a variant.
    pub tuning: Tuning,
    pub(crate) pipelines: PipelineCache,
    errors: Arc<Mutex<Vec<String>>>,
    arena: Mutex<Option<wgpu::Buffer>>,
    scratch: Mutex<Option<wgpu::Buffer>>,
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    // WGPU_BACKEND=vulkan|metal|dx12|gl narrows the search, as in every wgpu program.
    if let Some(backends) = wgpu::Backends::from_env() {
        desc.backends = backends;
    }
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu can see, in a stable order (the index `--adapter` takes).
pub async fn list_adapters() -> Vec<AdapterSummary> {
    let adapters = instance().enumerate_adapters(wgpu::Backends::all()).await;
    adapters
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterSummary::new(i, &a.get_info()))
        .collect()
}

impl Gpu {
    /// Opens adapter `index` from [`list_adapters`], or the high-performance default.
    pub async fn new(index: Option<usize>) -> Result<Self> {
        let instance = instance();
        let (adapter, summary_index) = match index {
            Some(i) => {
                let mut all = instance.enumerate_adapters(wgpu::Backends::all()).await;
                if i >= all.len() {
                    return Err(Error::Gpu(format!(
                        "adapter {i} does not exist: {} adapter(s) found; run `qoqmed adapters` to list them",
                        all.len()
                    )));
                }
                (all.swap_remove(i), i)
            }
            None => {
                let adapter = instance
                    .request_adapter(&wgpu::RequestAdapterOptions {
                        power_preference: wgpu::PowerPreference::HighPerformance,
                        force_fallback_adapter: false,
                        compatible_surface: None,
                        apply_limit_buckets: false,
                    })
                    .await
                    .map_err(|e| {
                        Error::Gpu(format!(
                            "no GPU adapter found ({e}). Install a Vulkan/Metal/DX12 driver; without a GPU, \
                             Mesa's software Vulkan driver works (Debian: apt-get install mesa-vulkan-drivers libvulkan1)"
                        ))
                    })?;
                (adapter, 0)
            }
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features() & (wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("qoqmed"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Gpu(format!("could not open {}: {e}", info.name)))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let lost = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            if reason == wgpu::DeviceLostReason::Destroyed {
                return;
            }
            if let Ok(mut v) = lost.lock() {
                v.push(format!(
                    "the GPU device was lost ({message}); this is usually the GPU running out of memory: \
                     try a smaller --max-context or a smaller model, and close other GPU programs"
                ));
            }
        });
        let mut summary = AdapterSummary::new(summary_index, &info);
        if index.is_none() {
            summary.index = usize::MAX;
        }
        Ok(Self {
            tuning: Tuning::for_adapter(&info, features),
            pipelines: PipelineCache::default(),
            device,
            queue,
            adapter: summary,
            limits,
            features,
            errors,
            arena: Mutex::new(None),
            scratch: Mutex::new(None),
        })
    }

    /// Fails with the first validation error wgpu reported since the last check. Called after each
    /// submit so a bad dispatch surfaces as an error with its pipeline label, not a crash.
    pub fn check_errors(&self) -> Result<()> {
        let mut errors = self
            .errors
            .lock()
            .map_err(|_| Error::Gpu("error sink poisoned".into()))?;
        if errors.is_empty() {
            return Ok(());
        }
        let all = std::mem::take(&mut *errors);
        Err(Error::Gpu(all.join("\n")))
    }

    /// The uniform arena, reused across steps and grown (doubling) when a step needs more.
    pub(crate) fn uniform_arena(&self, size: u64) -> Result<wgpu::Buffer> {
        let mut arena = self
            .arena
            .lock()
            .map_err(|_| Error::Gpu("uniform arena poisoned".into()))?;
        if let Some(buf) = arena.as_ref().filter(|b| b.size() >= size) {
            return Ok(buf.clone());
        }
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform arena"),
            size: size.next_power_of_two().max(64 * 1024),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        *arena = Some(buf.clone());
        Ok(buf)
    }

    /// A storage buffer of at least `size` bytes for an op's intermediate results (the split
    /// attention's partial outputs), reused across ops and steps and grown (doubling) when one
    /// needs more. Ops that share it in one command buffer run in dispatch order.
    pub(crate) fn scratch(&self, size: u64) -> Result<wgpu::Buffer> {
        let mut scratch = self
            .scratch
            .lock()
            .map_err(|_| Error::Gpu("scratch buffer poisoned".into()))?;
        if let Some(buf) = scratch.as_ref().filter(|b| b.size() >= size) {
            return Ok(buf.clone());
        }
        if size > self.max_binding() {
            return Err(Error::GpuLimit(format!(
                "an op needs {size} bytes of scratch, above the adapter's {} byte binding limit",
                self.max_binding()
            )));
        }
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("scratch"),
            size: size
                .next_power_of_two()
                .max(64 * 1024)
                .min(self.max_binding()),
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        *scratch = Some(buf.clone());
        Ok(buf)
    }

    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }
}
