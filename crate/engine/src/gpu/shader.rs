//! WGSL variants and the pipeline cache. Shader files live in `shaders/` (one per op family) and
//! are embedded with `include_str!`, so native and web ship the same bytes. Variants come from a
//! tiny preprocessor: `#ifdef NAME` / `#ifndef NAME` / `#else` / `#endif`, `#include weights`, and
//! valued defines emitted as `const NAME: u32 = value;`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

use super::Gpu;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaderFamily {
    Embedding,
    Norm,
    Matmul,
    Rope,
    Attention,
    Elementwise,
    Argmax,
    Pool,
}

impl ShaderFamily {
    fn source(self) -> &'static str {
        match self {
            Self::Embedding => include_str!("../../../../shaders/embedding.wgsl"),
            Self::Norm => include_str!("../../../../shaders/norm.wgsl"),
            Self::Matmul => include_str!("../../../../shaders/matmul.wgsl"),
            Self::Rope => include_str!("../../../../shaders/rope.wgsl"),
            Self::Attention => include_str!("../../../../shaders/attention.wgsl"),
            Self::Elementwise => include_str!("../../../../shaders/elementwise.wgsl"),
            Self::Argmax => include_str!("../../../../shaders/argmax.wgsl"),
            Self::Pool => include_str!("../../../../shaders/pool.wgsl"),
        }
    }
}

fn include(name: &str) -> Option<&'static str> {
    match name {
        "weights" => Some(include_str!("../../../../shaders/weights.wgsl")),
        _ => None,
    }
}

/// Identifies one compiled pipeline. Its readable form (e.g. `matmul_vec.W_BF16.BIAS.WG=64`) is the
/// wgpu label of the module and pipeline, so a validation error names the exact variant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub family: ShaderFamily,
    pub entry: &'static str,
    /// Sorted by name; `None` = a flag for `#ifdef`, `Some(v)` = also `const NAME: u32 = v;`.
    pub defines: Vec<(&'static str, Option<u32>)>,
}

impl PipelineKey {
    pub fn new(family: ShaderFamily, entry: &'static str) -> Self {
        Self {
            family,
            entry,
            defines: Vec::new(),
        }
    }

    pub fn flag(mut self, name: &'static str) -> Self {
        self.defines.push((name, None));
        self.defines.sort();
        self
    }

    pub fn value(mut self, name: &'static str, v: u32) -> Self {
        self.defines.push((name, Some(v)));
        self.defines.sort();
        self
    }

    pub fn label(&self) -> String {
        let mut s = self.entry.to_string();
        for (name, v) in &self.defines {
            match v {
                Some(v) => s.push_str(&format!(".{name}={v}")),
                None => s.push_str(&format!(".{name}")),
            }
        }
        s
    }

    /// The WGSL text of this variant.
    pub fn source(&self) -> Result<String> {
        let mut out = String::new();
        for (name, v) in &self.defines {
            if let Some(v) = v {
                out.push_str(&format!("const {name}: u32 = {v}u;\n"));
            }
        }
        let defined = |n: &str| self.defines.iter().any(|(d, _)| *d == n);
        preprocess(self.family.source(), &defined, &mut out, &self.label())?;
        Ok(out)
    }
}

fn preprocess(
    src: &str,
    defined: &dyn Fn(&str) -> bool,
    out: &mut String,
    label: &str,
) -> Result<()> {
    // Each stack entry: (this branch is emitted, some branch of this #if was taken).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let active = |stack: &[(bool, bool)]| stack.iter().all(|(on, _)| *on);
    let bad = |msg: String| Error::Gpu(format!("shader {label}: {msg}"));
    for line in src.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("#ifdef ") {
            let on = defined(name.trim());
            stack.push((on, on));
        } else if let Some(name) = t.strip_prefix("#ifndef ") {
            let on = !defined(name.trim());
            stack.push((on, on));
        } else if t == "#else" {
            let top = stack
                .last_mut()
                .ok_or_else(|| bad("#else without #ifdef".into()))?;
            *top = (!top.1, true);
        } else if t == "#endif" {
            stack
                .pop()
                .ok_or_else(|| bad("#endif without #ifdef".into()))?;
        } else if let Some(name) = t.strip_prefix("#include ") {
            if active(&stack) {
                let inc =
                    include(name.trim()).ok_or_else(|| bad(format!("unknown include `{name}`")))?;
                preprocess(inc, defined, out, label)?;
            }
        } else if active(&stack) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err(bad("unterminated #ifdef".into()));
    }
    Ok(())
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    map: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

impl Gpu {
    /// The pipeline for `key`, compiled on first use.
    pub fn pipeline(&self, key: &PipelineKey) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut map = self
            .pipelines
            .map
            .lock()
            .map_err(|_| Error::Gpu("pipeline cache poisoned".into()))?;
        if let Some(p) = map.get(key) {
            return Ok(p.clone());
        }
        let label = key.label();
        let source = key.source()?;
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some(key.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[],
                    // Every kernel writes its workgroup memory before reading it; zeroing it costs
                    // real time on some drivers.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        self.check_errors()?;
        let pipeline = Arc::new(pipeline);
        map.insert(key.clone(), pipeline.clone());
        Ok(pipeline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocessor_selects_branches_and_emits_consts() {
        let key = PipelineKey::new(ShaderFamily::Matmul, "matmul_vec")
            .flag("VEC")
            .flag("W_BF16")
            .value("WG", 64);
        let src = key.source().unwrap();
        assert!(src.starts_with("const WG: u32 = 64u;\n"));
        assert!(src.contains("fn matmul_vec"));
        assert!(!src.contains("fn matmul_mat"));
        assert!(!src.contains("var<storage, read> bias"));
        assert!(src.contains("word & 0xffff0000u"));
        assert!(!src.contains("unpack2x16float"));
        assert!(!src.contains('#'));
        assert_eq!(key.label(), "matmul_vec.VEC.WG=64.W_BF16");
    }

    #[test]
    fn preprocessor_rejects_unbalanced() {
        let mut out = String::new();
        assert!(preprocess("#ifdef A\nx", &|_| true, &mut out, "t").is_err());
        assert!(preprocess("#endif", &|_| true, &mut out, "t").is_err());
    }
}
