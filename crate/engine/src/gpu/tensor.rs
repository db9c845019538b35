//! GPU-resident tensors: f32 activations, and weights packed in their [`WeightFormat`], split into
//! parts below the adapter's binding limit.

use std::ops::Range;
use std::sync::Arc;

use crate::error::{Error, Result};

use super::{Gpu, WeightFormat};

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

    /// A tensor stored as f16, 2 per u32 word (the f16 KV cache): half the bytes of an f32 one.
    /// Ops that take it tell it apart by its buffer holding fewer than 4 bytes per element (see
    /// [`Tensor::is_f16`]), which is why it needs an even number of elements.
    pub fn zeros_f16(gpu: &Gpu, shape: &[usize], label: &str) -> Result<Self> {
        let numel: usize = shape.iter().product();
        if numel < 2 || !numel.is_multiple_of(2) {
            return Err(Error::shape(
                "f16 tensor",
                format!("{label}: {shape:?} must hold an even number (>= 2) of values"),
            ));
        }
        let size = padded(numel as u64 * 2);
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

    /// Whether this tensor's values are f16 pairs (made by [`Tensor::zeros_f16`]): every f32
    /// tensor's buffer holds at least 4 bytes per element.
    pub fn is_f16(&self) -> bool {
        self.buffer.size() < self.numel() as u64 * 4
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

/// The rows `rows` of a weight, in their own buffers (each below the binding limit).
#[derive(Clone, Debug)]
pub struct WeightPart {
    /// Output rows held by this part.
    pub rows: Range<usize>,
    /// Packed values / codes plane: (rows, k) in the format's layout.
    pub values: wgpu::Buffer,
    /// Q8/Q4: f16 scales plane (rows, k / 32), 2 per u32.
    pub scales: Option<wgpu::Buffer>,
}

/// A weight, packed in its [`WeightFormat`]; kernels unpack to f32. Split at row boundaries into
/// parts that each fit the adapter's storage-binding limit, transparently to the model code.
/// Row `r` of a 2-D+ weight is `shape[0]`'s index r with `k = shape[1..].product()` values; a 1-D
/// weight (norm, bias) is `n` rows of one value and always one part.
#[derive(Clone, Debug)]
pub struct Weight {
    pub name: String,
    pub shape: Vec<usize>,
    pub format: WeightFormat,
    pub parts: Vec<WeightPart>,
}

/// Rows whose plane bytes are a multiple of `align`, given `row` bytes per row.
fn rows_for_alignment(row: usize, align: usize) -> usize {
    if row == 0 { 1 } else { align / gcd(row, align) }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// Planes are padded to 16 bytes (vec4<u32> loads; storage buffers may not be empty).
fn plane_size(bytes: usize) -> u64 {
    (bytes.max(16).div_ceil(16) * 16) as u64
}

/// Largest piece one `write_buffer` stages, so a browser never stages a whole tensor at once.
const WRITE_PIECE: usize = 16 << 20;

impl Weight {
    /// GPU buffers split at row boundaries so every plane of every part fits the adapter's
    /// max_storage_buffer_binding_size (and max_buffer_size); nothing uploaded yet.
    pub fn alloc(gpu: &Gpu, name: &str, format: WeightFormat, shape: &[usize]) -> Result<Weight> {
        let limit = gpu.max_binding().min(gpu.limits.max_buffer_size);
        Self::alloc_with_part_limit(gpu, name, format, shape, limit)
    }

    /// [`Weight::alloc`] with parts of at most `max_part_bytes` per plane: what `alloc` does with
    /// the adapter's limit, and what tests use to split small weights.
    pub fn alloc_with_part_limit(
        gpu: &Gpu,
        name: &str,
        format: WeightFormat,
        shape: &[usize],
        max_part_bytes: u64,
    ) -> Result<Weight> {
        let plan = Self::plan_parts(name, format, shape, max_part_bytes).map_err(|e| match e {
            Error::GpuLimit(m) => Error::GpuLimit(format!("{m} on {}", gpu.adapter.name)),
            e => e,
        })?;
        let k: usize = shape.iter().skip(1).product();
        let (rb, sb) = (format.row_bytes(k), format.row_scale_bytes(k));
        let many = plan.len() > 1;
        let buffer = |plane: &str, rows: &Range<usize>, bytes: usize| {
            let label = if many {
                format!("{name}{plane}[rows {}..{}]", rows.start, rows.end)
            } else {
                format!("{name}{plane}")
            };
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&label),
                size: plane_size(bytes),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let parts = plan
            .into_iter()
            .map(|rows| WeightPart {
                values: buffer("", &rows, rows.len() * rb),
                scales: format
                    .is_quantized()
                    .then(|| buffer(".scales", &rows, rows.len() * sb)),
                rows,
            })
            .collect();
        Ok(Weight {
            name: name.to_string(),
            shape: shape.to_vec(),
            format,
            parts,
        })
    }

    /// The row ranges `alloc` would split a weight into with planes of at most `max_part_bytes`
    /// (balanced; each starts on a 16-byte boundary of both planes so kernels may load vec4<u32>).
    /// Size accounting uses it without touching the GPU.
    pub fn plan_parts(
        name: &str,
        format: WeightFormat,
        shape: &[usize],
        max_part_bytes: u64,
    ) -> Result<Vec<Range<usize>>> {
        let rows = *shape.first().unwrap_or(&0);
        let k: usize = shape.iter().skip(1).product();
        if rows == 0 || k == 0 {
            return Err(Error::format(
                name,
                format!("shape {shape:?} has no elements"),
            ));
        }
        format.check_row_len(name, shape)?;
        let (rb, sb) = (format.row_bytes(k), format.row_scale_bytes(k));
        let align = lcm(rows_for_alignment(rb, 16), rows_for_alignment(sb, 16));
        let max_rows = (max_part_bytes / 16 * 16) as usize / rb / align * align;
        if max_rows == 0 || (shape.len() == 1 && rows > max_rows) {
            return Err(Error::GpuLimit(format!(
                "`{name}` ({shape:?} {format}, {:.1} MiB) cannot be split into buffers of at most \
                 {:.1} MiB; use a smaller model or an adapter with larger storage bindings",
                (rows * (rb + sb)) as f64 / 1048576.0,
                max_part_bytes as f64 / 1048576.0,
            )));
        }
        let n_parts = rows.div_ceil(max_rows);
        let per_part = rows.div_ceil(n_parts).div_ceil(align) * align;
        Ok((0..rows)
            .step_by(per_part)
            .map(|r0| r0..(r0 + per_part).min(rows))
            .collect())
    }

    /// GPU bytes of a weight of this format and shape split at `max_part_bytes`, before
    /// allocating it (padding included; equals `gpu_bytes()` after `alloc`).
    pub fn planned_gpu_bytes(
        name: &str,
        format: WeightFormat,
        shape: &[usize],
        max_part_bytes: u64,
    ) -> Result<u64> {
        let k: usize = shape.iter().skip(1).product();
        let (rb, sb) = (format.row_bytes(k), format.row_scale_bytes(k));
        Ok(Self::plan_parts(name, format, shape, max_part_bytes)?
            .iter()
            .map(|r| plane_size(r.len() * rb) + if sb > 0 { plane_size(r.len() * sb) } else { 0 })
            .sum())
    }

    /// alloc + write_rows of the whole tensor.
    pub fn upload(
        gpu: &Gpu,
        name: &str,
        format: WeightFormat,
        shape: &[usize],
        values: &[u8],
        scales: Option<&[u8]>,
    ) -> Result<Weight> {
        let w = Self::alloc(gpu, name, format, shape)?;
        let expected = w.rows() * format.row_bytes(w.row_len());
        if values.len() != expected {
            return Err(Error::format(
                name,
                format!(
                    "{} bytes for shape {shape:?} {format}, expected {expected}",
                    values.len()
                ),
            ));
        }
        w.write_rows(gpu, 0, values, scales)?;
        Ok(w)
    }

    /// Rows (`shape[0]`).
    pub fn rows(&self) -> usize {
        self.shape[0]
    }

    /// Values per row (`shape[1..]`'s product; 1 for a 1-D weight).
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// `write_rows` pieces start (and, except the last, end) at multiples of this many rows, so
    /// every piece covers whole u32 words of both planes.
    pub fn write_align_rows(&self) -> usize {
        let k = self.row_len();
        lcm(
            rows_for_alignment(self.format.row_bytes(k), 4),
            rows_for_alignment(self.format.row_scale_bytes(k), 4),
        )
    }

    /// Writes rows row0.. given as this format's plane bytes (docs/weights.md); the range may
    /// cross parts, so a loader can stream a tensor piece by piece.
    pub fn write_rows(
        &self,
        gpu: &Gpu,
        row0: usize,
        values: &[u8],
        scales: Option<&[u8]>,
    ) -> Result<()> {
        let k = self.row_len();
        let (rb, sb) = (self.format.row_bytes(k), self.format.row_scale_bytes(k));
        let bad = |msg: String| Err(Error::format(&self.name, msg));
        if !values.len().is_multiple_of(rb) {
            return bad(format!(
                "{} bytes are not whole {} rows of {rb} bytes",
                values.len(),
                self.format
            ));
        }
        let n = values.len() / rb;
        let end = row0 + n;
        if end > self.rows() {
            return bad(format!(
                "rows {row0}..{end} written to a tensor of {} rows",
                self.rows()
            ));
        }
        match (scales, self.format.is_quantized()) {
            (Some(s), true) if s.len() != n * sb => {
                return bad(format!(
                    "{} scale bytes for {n} rows, expected {}",
                    s.len(),
                    n * sb
                ));
            }
            (None, true) => return bad(format!("{} rows need their scales", self.format)),
            (Some(_), false) => return bad(format!("{} takes no scales", self.format)),
            _ => {}
        }
        let wa = self.write_align_rows();
        if !row0.is_multiple_of(wa) || (!end.is_multiple_of(wa) && end != self.rows()) {
            return bad(format!(
                "rows {row0}..{end}: pieces must start and end at multiples of {wa} rows (the                  last piece may end at the last row)"
            ));
        }
        for part in &self.parts {
            let (lo, hi) = (row0.max(part.rows.start), end.min(part.rows.end));
            if lo >= hi {
                continue;
            }
            let local = lo - part.rows.start;
            write_plane(
                gpu,
                &part.values,
                local * rb,
                &values[(lo - row0) * rb..(hi - row0) * rb],
            );
            if let (Some(buf), Some(s)) = (&part.scales, scales) {
                write_plane(gpu, buf, local * sb, &s[(lo - row0) * sb..(hi - row0) * sb]);
            }
        }
        Ok(())
    }

    /// Bytes of GPU memory this weight holds (padding included).
    pub fn gpu_bytes(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| p.values.size() + p.scales.as_ref().map_or(0, |s| s.size()))
            .sum()
    }

    /// Bytes of values and scales: what reading the whole weight once touches.
    pub fn data_bytes(&self) -> u64 {
        let k = self.row_len();
        (self.rows() * (self.format.row_bytes(k) + self.format.row_scale_bytes(k))) as u64
    }

    /// The single part of a weight that ops need whole (norms, biases).
    pub fn single_part(&self, op: &'static str) -> Result<&WeightPart> {
        match &self.parts[..] {
            [p] => Ok(p),
            _ => Err(Error::shape(
                op,
                format!(
                    "{} is split into {} buffers; this op takes it whole",
                    self.name,
                    self.parts.len()
                ),
            )),
        }
    }
}

/// `offset` is word-aligned (write_rows checks it); a tail that ends mid-word is zero-padded,
/// which only happens at the end of a tensor, inside the buffer's padding.
fn write_plane(gpu: &Gpu, buffer: &wgpu::Buffer, offset: usize, bytes: &[u8]) {
    let whole = bytes.len() / 4 * 4;
    for start in (0..whole).step_by(WRITE_PIECE) {
        let end = (start + WRITE_PIECE).min(whole);
        gpu.queue
            .write_buffer(buffer, (offset + start) as u64, &bytes[start..end]);
    }
    if whole < bytes.len() {
        let mut tail = [0u8; 4];
        tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
        gpu.queue
            .write_buffer(buffer, (offset + whole) as u64, &tail);
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
    map_read_with(gpu, staging, None, |bytes| bytes.to_vec()).await
}

/// [`map_read`] that waits only for submission `after` when given (later submissions keep running,
/// as the decode loop's next step does) and hands the mapped bytes to `read` instead of copying
/// them out.
pub async fn map_read_with<T>(
    gpu: &Gpu,
    staging: &wgpu::Buffer,
    after: Option<wgpu::SubmissionIndex>,
    read: impl FnOnce(&[u8]) -> T,
) -> Result<T> {
    let (tx, rx) = futures_channel::oneshot::channel();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(r);
        }
    });
    gpu.device
        .poll(wgpu::PollType::Wait {
            submission_index: after,
            timeout: None,
        })
        .map_err(|e| {
            Error::Gpu(format!(
                "waiting for the GPU failed: {e} (a lost device often means out of GPU memory)"
            ))
        })?;
    rx.await
        .map_err(|_| Error::Gpu("GPU readback was cancelled (device lost?)".into()))?
        .map_err(|e| Error::Gpu(format!("could not map a readback buffer: {e}")))?;
    let value = {
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("could not read a mapped buffer: {e}")))?;
        read(&view)
    };
    staging.unmap();
    gpu.check_errors()?;
    Ok(value)
}
