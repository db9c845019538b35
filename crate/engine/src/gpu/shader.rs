//! WGSL variants and the pipeline cache. Shader files live in `shaders/` (one per op family) and
//! are embedded with `include_str!`, so native and web ship the same bytes. Variants come from a
//! tiny preprocessor: `#ifdef NAME` / `#ifndef NAME` / `#else` / `#endif`, `#include weights`,
//! valued defines emitted as `const NAME: u32 = value;`, and `#for i in N` ... `#end` (N a literal
//! or a valued define), which repeats its lines with `${i}` replaced by 0..N: software adapters
//! compile WGSL loops into masked loops that cost more than their bodies, so hot kernels unroll.

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
    MatmulRows,
    Sample,
    Copy,
    Vision,
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
            Self::MatmulRows => include_str!("../../../../shaders/matmul_rows.wgsl"),
            Self::Sample => include_str!("../../../../shaders/sample.wgsl"),
            Self::Copy => include_str!("../../../../shaders/copy.wgsl"),
            Self::Vision => include_str!("../../../../shaders/vision.wgsl"),
            Self::Pool => include_str!("../../../../shaders/pool.wgsl"),
        }
    }
}

fn include(name: &str) -> Option<&'static str> {
    match name {
        "weights" => Some(include_str!("../../../../shaders/weights.wgsl")),
        "bias" => Some(include_str!("../../../../shaders/bias.wgsl")),
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
        self.source_of(self.family.source())
    }

    /// `text` preprocessed with this key's defines (the kernel lab feeds shader files through it).
    pub fn source_of(&self, text: &str) -> Result<String> {
        let defined = |n: &str| self.defines.iter().any(|(d, _)| *d == n);
        let mut body = String::new();
        preprocess(text, &defined, &mut body, &self.label())?;
        // WGSL wants `enable` directives (e.g. `enable f16;`) before any declaration.
        let (enables, rest): (Vec<&str>, Vec<&str>) = body
            .lines()
            .partition(|l| l.trim_start().starts_with("enable "));
        let mut out = String::new();
        for line in enables {
            out.push_str(line);
            out.push('\n');
        }
        let body = rest.join("\n");
        for (name, v) in &self.defines {
            if let Some(v) = v {
                out.push_str(&format!("const {name}: u32 = {v}u;\n"));
            }
        }
        let value = |n: &str| {
            self.defines
                .iter()
                .find(|(d, _)| *d == n)
                .and_then(|(_, v)| *v)
        };
        expand_for(&body, &value, &mut out, &self.label())?;
        Ok(out)
    }
}

/// Expands `#for i in N` ... `#end` blocks (nested ones too), replacing `${i}` in their lines.
fn expand_for(
    src: &str,
    value: &dyn Fn(&str) -> Option<u32>,
    out: &mut String,
    label: &str,
) -> Result<()> {
    let bad = |msg: String| Error::Gpu(format!("shader {label}: {msg}"));
    let lines: Vec<&str> = src.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        if let Some(rest) = t.strip_prefix("#for ") {
            let (var, count) = rest
                .split_once(" in ")
                .ok_or_else(|| bad(format!("`{t}`: expected `#for i in N`")))?;
            let (var, count) = (var.trim(), count.trim());
            let n = match count.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    value(count).ok_or_else(|| bad(format!("`{t}`: {count} is not defined")))?
                }
            };
            // The matching #end: nested #for blocks stay in the body for the recursive expansion.
            let mut depth = 1;
            let mut j = i + 1;
            while j < lines.len() {
                let u = lines[j].trim();
                if u.starts_with("#for ") {
                    depth += 1;
                } else if u == "#end" {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                j += 1;
            }
            if depth != 0 {
                return Err(bad(format!("`{t}` without #end")));
            }
            let body = lines[i + 1..j].join("\n");
            let pattern = format!("${{{var}}}");
            for k in 0..n {
                expand_for(&body.replace(&pattern, &k.to_string()), value, out, label)?;
            }
            i = j + 1;
        } else if t == "#end" {
            return Err(bad("#end without #for".into()));
        } else {
            out.push_str(lines[i]);
            out.push('\n');
            i += 1;
        }
    }
    Ok(())
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

/// A compiled pipeline and its label.
type Compiled = (Arc<wgpu::ComputePipeline>, Arc<str>);

#[derive(Default)]
pub(crate) struct PipelineCache {
    map: Mutex<HashMap<PipelineKey, Compiled>>,
}

impl Gpu {
    /// The pipeline for `key`, compiled on first use.
    pub fn pipeline(&self, key: &PipelineKey) -> Result<Arc<wgpu::ComputePipeline>> {
        self.pipeline_and_label(key).map(|(p, _)| p)
    }

    /// The pipeline for `key` and its label, without formatting the label again.
    pub fn pipeline_and_label(&self, key: &PipelineKey) -> Result<Compiled> {
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
        let entry = (Arc::new(pipeline), Arc::<str>::from(label));
        map.insert(key.clone(), entry.clone());
        Ok(entry)
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
    fn for_blocks_unroll_with_nesting() {
        let mut out = String::new();
        let value = |n: &str| (n == "R").then_some(2);
        let src = "a\n#for r in R\n#for t in 3\nx${r}_${t} = ${r};\n#end\n#end\nb";
        expand_for(src, &value, &mut out, "t").unwrap();
        assert_eq!(
            out,
            "a\nx0_0 = 0;\nx0_1 = 0;\nx0_2 = 0;\nx1_0 = 1;\nx1_1 = 1;\nx1_2 = 1;\nb\n"
        );
        assert!(expand_for("#for r in Q\n#end", &value, &mut out, "t").is_err());
        assert!(expand_for("#for r in 2\nx", &value, &mut out, "t").is_err());
        assert!(expand_for("#end", &value, &mut out, "t").is_err());
    }

    #[test]
    fn preprocessor_rejects_unbalanced() {
        let mut out = String::new();
        assert!(preprocess("#ifdef A\nx", &|_| true, &mut out, "t").is_err());
        assert!(preprocess("#endif", &|_| true, &mut out, "t").is_err());
    }
}
