//! Kernel lab: times a stand-alone matmul WGSL file (read at run time, so variants need no
//! rebuild) on the current adapter and checks it against a CPU reference.
//!
//! cargo run --release -p qoqmed-engine --example wgsl_lab -- FILE.wgsl ENTRY \
//!     --format q4 --m 1 --n 2048 --k 2048 --groups 32,1,1 [--define ROWS=2]... [--reps 10]
//!
//! Bindings follow shaders/matmul.wgsl: 0 params {m, n, k, y_stride, col0}, 1 x (m, k) f32,
//! 2 w values plane, 3 y (m, n) f32, 5 w scales plane (q8/q4). Defines become `const NAME: u32`.

use qoqmed_engine::gpu::{Gpu, PipelineKey, ShaderFamily, Tensor, WeightFormat, read_buffer};
use qoqmed_engine::quant;
use web_time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of every thread of this process (ns), from /proc: on a shared machine the wall time
/// of a software adapter depends on the neighbours, its CPU time much less.
fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = &args[1];
    let entry = &args[2];
    let format = WeightFormat::parse(&arg(&args, "--format", "q4".to_string())).expect("format");
    let (m, n, k): (usize, usize, usize) = (
        arg(&args, "--m", 1),
        arg(&args, "--n", 2048),
        arg(&args, "--k", 2048),
    );
    let reps: usize = arg(&args, "--reps", 10);
    let groups: Vec<u32> = arg(&args, "--groups", "1,1,1".to_string())
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    // The engine's preprocessor (#ifdef, #include, #for): --define NAME=V or --define FLAG.
    let mut key = PipelineKey::new(ShaderFamily::MatmulRows, "lab");
    for (i, a) in args.iter().enumerate() {
        if a == "--define" {
            let d: &'static str = Box::leak(args[i + 1].clone().into_boxed_str());
            key = match d.split_once('=') {
                Some((name, v)) => key.value(name, v.parse().unwrap()),
                None => key.flag(d),
            };
        }
    }
    let src = key
        .source_of(&std::fs::read_to_string(file).unwrap())
        .unwrap();
    if args.iter().any(|a| a == "--print") {
        println!("{src}");
    }

    let gpu = pollster::block_on(Gpu::new(None)).unwrap();
    let mut seed = 12345u32;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed as f32 / u32::MAX as f32) * 2.0 - 1.0
    };
    let x: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
    let wv: Vec<f32> = (0..n * k).map(|_| rnd() * 0.1).collect();
    let planes = quant::quantize(format, &wv, k).unwrap();
    let wd = quant::dequantize(format, &planes.values, planes.scales.as_deref(), k).unwrap();

    let storage = |bytes: &[u8], label: &str| {
        let t = Tensor::zeros(&gpu, &[bytes.len().div_ceil(4).max(4)], label).unwrap();
        gpu.queue.write_buffer(&t.buffer, 0, &{
            let mut b = bytes.to_vec();
            b.resize(bytes.len().div_ceil(4) * 4, 0);
            b
        });
        t.buffer
    };
    let xb = storage(bytemuck::cast_slice(&x), "x");
    let wb = storage(&planes.values, "w");
    let sb = planes.scales.as_ref().map(|s| storage(s, "scales"));
    let y = Tensor::zeros(&gpu, &[m * n], "y").unwrap();
    let params: [u32; 8] = [m as u32, n as u32, k as u32, n as u32, 0, 0, 0, 0];
    let ub = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("params"),
        size: 32,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue
        .write_buffer(&ub, 0, bytemuck::cast_slice(&params));

    let module = gpu
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(file),
            source: wgpu::ShaderSource::Wgsl(src.clone().into()),
        });
    // An explicit layout, so a variant need not use every binding.
    let entry_of = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let storage_ro = wgpu::BufferBindingType::Storage { read_only: true };
    let mut layout_entries = vec![
        entry_of(0, wgpu::BufferBindingType::Uniform),
        entry_of(1, storage_ro),
        entry_of(2, storage_ro),
        entry_of(3, wgpu::BufferBindingType::Storage { read_only: false }),
    ];
    if planes.scales.is_some() {
        layout_entries.push(entry_of(5, storage_ro));
    }
    // Binding 4: the first 64 KiB of x as a uniform buffer (load-path experiments).
    layout_entries.push(entry_of(4, wgpu::BufferBindingType::Uniform));
    let xu = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("x uniform"),
        size: 65536,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let xbytes: &[u8] = bytemuck::cast_slice(&x);
    gpu.queue
        .write_buffer(&xu, 0, &xbytes[..xbytes.len().min(65536) / 16 * 16]);
    let bgl = gpu
        .device
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: None,
            entries: &layout_entries,
        });
    let layout = gpu
        .device
        .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
    let pipeline = gpu
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
    gpu.check_errors().unwrap();
    let mut entries = vec![
        wgpu::BindGroupEntry {
            binding: 0,
            resource: ub.as_entire_binding(),
        },
        wgpu::BindGroupEntry {
            binding: 1,
            resource: xb.as_entire_binding(),
        },
        wgpu::BindGroupEntry {
            binding: 2,
            resource: wb.as_entire_binding(),
        },
        wgpu::BindGroupEntry {
            binding: 3,
            resource: y.buffer.as_entire_binding(),
        },
    ];
    entries.push(wgpu::BindGroupEntry {
        binding: 4,
        resource: xu.as_entire_binding(),
    });
    if let Some(s) = &sb {
        entries.push(wgpu::BindGroupEntry {
            binding: 5,
            resource: s.as_entire_binding(),
        });
    }
    let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &bgl,
        entries: &entries,
    });
    let run = |count: usize| {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bg, &[]);
            for _ in 0..count {
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
            }
        }
        gpu.queue.submit([enc.finish()]);
        gpu.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
    };
    run(1);
    gpu.check_errors().unwrap();
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(
        &pollster::block_on(read_buffer(&gpu, &y.buffer, 0, (m * n * 4) as u64)).unwrap(),
    );
    let mut worst = 0f32;
    for i in 0..m.min(4) {
        for j in 0..n {
            let want: f64 = (0..k)
                .map(|t| x[i * k + t] as f64 * wd[j * k + t] as f64)
                .sum();
            let e = (got[i * n + j] - want as f32).abs();
            worst = if e.is_finite() {
                worst.max(e)
            } else {
                f32::INFINITY
            };
        }
    }
    let mut best = f64::INFINITY;
    let mut best_cpu = f64::INFINITY;
    for _ in 0..arg(&args, "--runs", 8) {
        let (t, c) = (Instant::now(), cpu_ns());
        run(reps);
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        best_cpu = best_cpu.min((cpu_ns() - c) as f64 * 1e-9 / reps as f64);
    }
    let bytes = planes.values.len() + planes.scales.as_ref().map_or(0, |s| s.len());
    println!(
        "{file} {entry} {format} m{m} n{n} k{k}: {:.3} ms (cpu {:.3} ms)  {:.2} GFLOP/s  {:.2} GB/s weights  max err {worst:.2e}",
        best * 1e3,
        best_cpu * 1e3,
        2.0 * (m * n * k) as f64 / best / 1e9,
        bytes as f64 / best / 1e9,
    );
}
