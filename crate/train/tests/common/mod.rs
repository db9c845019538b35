//! Shared helpers of the trainer's GPU tests: fixture paths, goldens, policies.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use qoqmed_engine::config::ModelConfig;
use qoqmed_engine::model::rope::Position;
use qoqmed_engine::weights::{ModelFiles, WeightStore};
use qoqmed_train::policy::{LoraSpec, Policy};
use safetensors::{Dtype, SafeTensors};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

pub fn lora(rank: usize) -> LoraSpec {
    LoraSpec {
        rank,
        alpha: 2.0 * rank.max(1) as f64,
        dropout: 0.0,
        targets: qoqmed_train::config::ALL_TARGETS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        seed: 7,
    }
}

pub fn load_policy(model: &str, spec: LoraSpec, device: &Device) -> (Policy, ModelConfig) {
    let files = ModelFiles::from_dir(&model_dir(model)).unwrap();
    let cfg = ModelConfig::from_json(&files.config).unwrap();
    let store = pollster::block_on(WeightStore::open(files.weights)).unwrap();
    (Policy::load(&store, &cfg.text, spec, device).unwrap(), cfg)
}

pub struct Golden {
    bytes: Vec<u8>,
}

impl Golden {
    pub fn load(model: &str, case: &str) -> Self {
        let path = fixtures()
            .join("goldens")
            .join(model)
            .join(format!("{case}.safetensors"));
        Golden {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    pub fn f32(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("golden {name}: {e}"));
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (v, t.shape().to_vec())
    }

    pub fn i64(&self, name: &str) -> Vec<i64> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("golden {name}: {e}"));
        assert_eq!(t.dtype(), Dtype::I64, "{name}");
        t.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    pub fn ids(&self) -> Vec<u32> {
        self.i64("input_ids")
            .into_iter()
            .map(|v| v as u32)
            .collect()
    }

    /// position_ids (3, seq) as one (t, h, w) per token.
    pub fn positions(&self) -> Vec<Position> {
        let p = self.i64("position_ids");
        let n = p.len() / 3;
        (0..n)
            .map(|i| [p[i] as u32, p[n + i] as u32, p[2 * n + i] as u32])
            .collect()
    }
}

/// max |a - b| and whether every element is within atol + rtol |b|; a failure names the worst.
pub fn assert_close(what: &str, a: &[f32], b: &[f32], atol: f32, rtol: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let mut worst = (0.0f32, 0usize);
    let mut bad = 0;
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let d = (x - y).abs();
        // NaN counts as out of tolerance and as the worst.
        let within = d <= atol + rtol * y.abs();
        if !within {
            bad += 1;
        }
        if d.is_nan() || worst.0.is_nan() || d > worst.0 {
            worst = (d, i);
        }
    }
    assert!(
        bad == 0,
        "{what}: {bad} of {} values out of tolerance; max |diff| {} at {} ({} vs {})",
        a.len(),
        worst.0,
        worst.1,
        a[worst.1],
        b[worst.1]
    );
    worst.0
}
