//! Records a whole forward pass (or decode step) and submits it as ONE command buffer.
//! Op parameters go into a uniform arena written once per submit; dispatches run in one compute
//! pass, split only where a buffer copy sits between them.

use std::sync::Arc;

use crate::error::{Error, Result};

use super::Gpu;
use super::shader::PipelineKey;

enum Command {
    Dispatch {
        pipeline: Arc<wgpu::ComputePipeline>,
        label: String,
        /// (binding index, buffer); binding 0 is always the op's uniform slot.
        buffers: Vec<(u32, wgpu::Buffer)>,
        uniform: (u64, u64),
        workgroups: [u32; 3],
    },
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    },
}

pub struct Recorder<'g> {
    pub gpu: &'g Gpu,
    arena: Vec<u8>,
    commands: Vec<Command>,
}

/// Uniform slots are aligned to the device's dynamic-offset alignment (256 on most adapters).
fn slot_align(gpu: &Gpu) -> usize {
    gpu.limits.min_uniform_buffer_offset_alignment.max(16) as usize
}

impl<'g> Recorder<'g> {
    pub fn new(gpu: &'g Gpu) -> Self {
        Self {
            gpu,
            arena: Vec::with_capacity(64 * 1024),
            commands: Vec::new(),
        }
    }

    /// Queues one dispatch. `params` is the op's uniform struct; `buffers` are bindings 1.. in order.
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        key: &PipelineKey,
        params: &P,
        buffers: &[(u32, &wgpu::Buffer)],
        workgroups: [u32; 3],
    ) -> Result<()> {
        let max = self.gpu.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            return Err(Error::GpuLimit(format!(
                "{} needs {workgroups:?} workgroups, the adapter allows {max} per dimension",
                key.label()
            )));
        }
        if workgroups.contains(&0) {
            return Ok(());
        }
        let pipeline = self.gpu.pipeline(key)?;
        let align = slot_align(self.gpu);
        let offset = self.arena.len().div_ceil(align) * align;
        let bytes = bytemuck::bytes_of(params);
        self.arena.resize(offset, 0);
        self.arena.extend_from_slice(bytes);
        self.commands.push(Command::Dispatch {
            pipeline,
            label: key.label(),
            buffers: buffers.iter().map(|(i, b)| (*i, (*b).clone())).collect(),
            uniform: (offset as u64, bytes.len() as u64),
            workgroups,
        });
        Ok(())
    }

    pub fn copy(
        &mut self,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    ) {
        self.commands.push(Command::Copy {
            src: src.clone(),
            src_offset,
            dst: dst.clone(),
            dst_offset,
            size,
        });
    }

    /// Encodes everything into one command buffer and submits it. Returns without waiting.
    pub fn submit(self) -> Result<()> {
        let gpu = self.gpu;
        let mut padded = self.arena;
        padded.resize(padded.len().max(16).div_ceil(16) * 16, 0);
        let arena = gpu.uniform_arena(padded.len() as u64)?;
        // Queue-ordered: lands after the previous step's commands, before this one's.
        gpu.queue.write_buffer(&arena, 0, &padded);

        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        let mut i = 0;
        let commands = self.commands;
        while i < commands.len() {
            if let Command::Copy {
                src,
                src_offset,
                dst,
                dst_offset,
                size,
            } = &commands[i]
            {
                encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size);
                i += 1;
                continue;
            }
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            while let Some(Command::Dispatch {
                pipeline,
                label,
                buffers,
                uniform,
                workgroups,
            }) = commands.get(i)
            {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &arena,
                        offset: uniform.0,
                        size: wgpu::BufferSize::new(uniform.1),
                    }),
                }];
                for (binding, buffer) in buffers {
                    entries.push(wgpu::BindGroupEntry {
                        binding: *binding,
                        resource: buffer.as_entire_binding(),
                    });
                }
                let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(label),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &entries,
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
                i += 1;
            }
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.check_errors()
    }
}

/// Splits `groups` workgroups over x and y when it exceeds the per-dimension cap; shaders recover
/// the flat index as `x + y * num_workgroups.x`.
pub fn grid(groups: u32, max: u32) -> [u32; 3] {
    if groups <= max {
        [groups, 1, 1]
    } else {
        let y = groups.div_ceil(max);
        [groups.div_ceil(y), y, 1]
    }
}
