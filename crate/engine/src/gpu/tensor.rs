//! GPU-resident tensors: f32 activations, and weights kept packed in their checkpoint dtype.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::weights::DType;

use super::Gpu;

/// An f32 activation buffer, row-major with `shape`.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub buffer: wgpu::Buffer,
    pub shape: Vec<usize>,
}

/// Storage buffers may not be empty and copies move whole u32 words.
fn padded(bytes: u64) -> u64 {
    bytes.max(4).div_ceil(4) * 4
}

impl Tensor {
    pub fn zeros(gpu: &Gpu, shape: &[usize], label: &str) -> Result<Self> {
        let numel: usize = shape.iter().product();
        let size = padded(numel as u64 * 4);
        check_binding(gpu, label, size)?;
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Self {
            buffer,
            shape: shape.to_vec(),
        })
    }

    pub fn from_f32(gpu: &Gpu, data: &[f32], shape: &[usize], label: &str) -> Result<Self> {
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(Error::shape(
                "tensor upload",
                format!("{label}: {} values for shape {shape:?}", data.len()),
            ));
        }
        let t = Self::zeros(gpu, shape, label)?;
        if !data.is_empty() {
            gpu.queue
                .write_buffer(&t.buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(t)
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The same buffer seen with another shape of the same size.
    pub fn view(&self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.numel() {
            return Err(Error::shape(
                "view",
                format!("{:?} cannot be viewed as {shape:?}", self.shape),
            ));
        }
        Ok(Tensor {
            buffer: self.buffer.clone(),
            shape: shape.to_vec(),
        })
    }

    /// Copies the tensor back (async: the browser cannot block on the GPU).
    pub async fn to_vec(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let bytes = read_buffer(gpu, &self.buffer, 0, self.numel() as u64 * 4).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

/// A weight matrix or vector, packed as stored in the checkpoint; kernels unpack to f32.
#[derive(Clone, Debug)]
pub struct Weight {
    pub name: String,
    pub buffer: wgpu::Buffer,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

/// The WGSL define that selects this dtype's loader in `shaders/weights.wgsl`.
pub fn dtype_define(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "W_F32",
        DType::F16 => "W_F16",
        DType::BF16 => "W_BF16",
    }
}

impl Weight {
    pub fn upload(
        gpu: &Gpu,
        name: &str,
        dtype: DType,
        shape: &[usize],
        bytes: &[u8],
    ) -> Result<Self> {
        let numel: usize = shape.iter().product();
        let expected = numel * dtype.size_in_bytes();
        if bytes.len() != expected {
            return Err(Error::format(
                name,
                format!(
                    "{} bytes for shape {shape:?} {dtype:?}, expected {expected}",
                    bytes.len()
                ),
            ));
        }
        let size = padded(bytes.len() as u64);
        check_binding(gpu, name, size)?;
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // Streamed in pieces so a browser never stages a whole tensor at once.
        const PIECE: usize = 16 << 20;
        let whole = bytes.len() / 4 * 4;
        for start in (0..whole).step_by(PIECE) {
            let end = (start + PIECE).min(whole);
            gpu.queue
                .write_buffer(&buffer, start as u64, &bytes[start..end]);
        }
        if whole < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
            gpu.queue.write_buffer(&buffer, whole as u64, &tail);
        }
        Ok(Self {
            name: name.to_string(),
            buffer,
            shape: shape.to_vec(),
            dtype,
        })
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

fn check_binding(gpu: &Gpu, label: &str, size: u64) -> Result<()> {
    if size > gpu.max_binding() || size > gpu.limits.max_buffer_size {
        return Err(Error::GpuLimit(format!(
            "`{label}` needs a {:.1} MiB buffer but {} binds at most {:.1} MiB; use a smaller model, \
             a shorter --max-context, or an adapter with larger storage bindings",
            size as f64 / 1048576.0,
            gpu.adapter.name,
            gpu.max_binding().min(gpu.limits.max_buffer_size) as f64 / 1048576.0
        )));
    }
    Ok(())
}

/// Reads `size` bytes of `src` at `offset` through a staging buffer.
pub async fn read_buffer(gpu: &Gpu, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
    let staging = staging_buffer(gpu, size);
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("readback"),
        });
    encoder.copy_buffer_to_buffer(src, offset, &staging, 0, padded(size));
    gpu.queue.submit([encoder.finish()]);
    let mut bytes = map_read(gpu, &staging).await?;
    bytes.truncate(size as usize);
    Ok(bytes)
}

pub fn staging_buffer(gpu: &Gpu, size: u64) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("staging"),
        size: padded(size),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Maps a MAP_READ buffer after the work writing it was submitted. Natively `poll` drives the
/// callback; on the web `poll` is a no-op and the browser resolves the mapping while we await.
pub async fn map_read(gpu: &Gpu, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
    let (tx, rx) = futures_channel::oneshot::channel();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(r);
        }
    });
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| {
            Error::Gpu(format!(
                "waiting for the GPU failed: {e} (a lost device often means out of GPU memory)"
            ))
        })?;
    rx.await
        .map_err(|_| Error::Gpu("GPU readback was cancelled (device lost?)".into()))?
        .map_err(|e| Error::Gpu(format!("could not map a readback buffer: {e}")))?;
    let bytes = staging
        .get_mapped_range(..)
        .map_err(|e| Error::Gpu(format!("could not read a mapped buffer: {e}")))?
        .to_vec();
    staging.unmap();
    gpu.check_errors()?;
    Ok(bytes)
}
