//! Records a whole forward pass (or decode step) and submits it as ONE command buffer.
//! Op parameters go into a uniform arena written once per submit; dispatches run in one compute
//! pass, split only where a buffer copy sits between them.
//!
//! A decode session keeps one recorder for all its steps ([`Recorder::submit_and_reset`]): its
//! command list, arena bytes and a cache of bind groups are reused, so after the first step a
//! token records no bind group and grows no host buffer. Bind groups are keyed by pipeline,
//! buffers and uniform slot; the cache lives with the session, so it cannot keep another
//! session's buffers alive.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};

use super::Gpu;
use super::shader::PipelineKey;

enum Command {
    Dispatch {
        pipeline: Arc<wgpu::ComputePipeline>,
        label: Arc<str>,
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

/// Identifies a bind group: pipeline, uniform arena and slot, and the bound buffers.
#[derive(PartialEq, Eq, Hash)]
struct BindKey {
    pipeline: wgpu::ComputePipeline,
    arena: wgpu::Buffer,
    uniform: (u64, u64),
    buffers: Vec<(u32, wgpu::Buffer)>,
}

/// Bind groups built by one session's steps, reused while the same ops run on the same buffers.
#[derive(Default)]
pub struct BindCache {
    map: HashMap<BindKey, usize>,
    groups: Vec<wgpu::BindGroup>,
    /// Bind groups created so far (a decode step after the first should add none).
    pub created: usize,
}

impl BindCache {
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

pub struct Recorder<'g> {
    pub gpu: &'g Gpu,
    arena: Vec<u8>,
    commands: Vec<Command>,
    cache: Option<BindCache>,
    /// Per dispatch of the step being encoded: its bind group's index in the cache.
    slots: Vec<usize>,
}

/// Uniform slots are aligned to the device's dynamic-offset alignment (256 on most adapters).
fn slot_align(gpu: &Gpu) -> usize {
    gpu.limits.min_uniform_buffer_offset_alignment.max(16) as usize
}

impl<'g> Recorder<'g> {
    /// A one-shot recorder: bind groups are built at submit and dropped with it.
    pub fn new(gpu: &'g Gpu) -> Self {
        Self {
            gpu,
            arena: Vec::with_capacity(64 * 1024),
            commands: Vec::new(),
            cache: None,
            slots: Vec::new(),
        }
    }

    /// A recorder for many steps: bind groups are kept and reused across
    /// [`submit_and_reset`](Self::submit_and_reset) calls.
    pub fn cached(gpu: &'g Gpu) -> Self {
        Self {
            cache: Some(BindCache::default()),
            ..Self::new(gpu)
        }
    }

    /// This recorder (with what it already holds) turned into a [`cached`](Self::cached) one.
    pub fn with_cache(mut self) -> Self {
        self.cache.get_or_insert_with(BindCache::default);
        self
    }

    /// The bind-group cache of a [`cached`](Self::cached) recorder.
    pub fn cache(&self) -> Option<&BindCache> {
        self.cache.as_ref()
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
        let (pipeline, label) = self.gpu.pipeline_and_label(key)?;
        let align = slot_align(self.gpu);
        let offset = self.arena.len().div_ceil(align) * align;
        let bytes = bytemuck::bytes_of(params);
        self.arena.resize(offset, 0);
        self.arena.extend_from_slice(bytes);
        self.commands.push(Command::Dispatch {
            pipeline,
            label,
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
    pub fn submit(mut self) -> Result<()> {
        self.submit_and_reset().map(|_| ())
    }

    /// Submits what was recorded and empties the recorder for the next step, keeping its
    /// allocations and bind groups. Returns without waiting.
    pub fn submit_and_reset(&mut self) -> Result<wgpu::SubmissionIndex> {
        let gpu = self.gpu;
        let len = self.arena.len().max(16).div_ceil(16) * 16;
        self.arena.resize(len, 0);
        let arena = gpu.uniform_arena(len as u64)?;
        // Queue-ordered: lands after the previous step's commands, before this one's.
        gpu.queue.write_buffer(&arena, 0, &self.arena);

        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        let mut one_shot = BindCache::default();
        let cache = self.cache.as_mut().unwrap_or(&mut one_shot);
        let commands = std::mem::take(&mut self.commands);
        let mut i = 0;
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
            // Bind groups first (found or built), then the pass that uses them.
            let start = i;
            self.slots.clear();
            while let Some(Command::Dispatch {
                pipeline,
                label,
                buffers,
                uniform,
                ..
            }) = commands.get(i)
            {
                let key = BindKey {
                    pipeline: (**pipeline).clone(),
                    arena: arena.clone(),
                    uniform: *uniform,
                    buffers: buffers.clone(),
                };
                let slot = match cache.map.get(&key) {
                    Some(&slot) => slot,
                    None => {
                        let group = bind_group(gpu, pipeline, label, &arena, *uniform, buffers);
                        cache.groups.push(group);
                        cache.map.insert(key, cache.groups.len() - 1);
                        cache.created += 1;
                        cache.groups.len() - 1
                    }
                };
                self.slots.push(slot);
                i += 1;
            }
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            for (command, &slot) in commands[start..i].iter().zip(&self.slots) {
                let Command::Dispatch {
                    pipeline,
                    workgroups,
                    ..
                } = command
                else {
                    unreachable!("the loop above stopped at the first copy");
                };
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &cache.groups[slot], &[]);
                pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
            }
        }
        let index = gpu.queue.submit([encoder.finish()]);
        // Keep the command list's capacity for the next step.
        self.commands = commands;
        self.commands.clear();
        self.arena.clear();
        gpu.check_errors()?;
        Ok(index)
    }
}

fn bind_group(
    gpu: &Gpu,
    pipeline: &wgpu::ComputePipeline,
    label: &str,
    arena: &wgpu::Buffer,
    uniform: (u64, u64),
    buffers: &[(u32, wgpu::Buffer)],
) -> wgpu::BindGroup {
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: arena,
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
    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
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
