//! Run folders and checkpoints.
//!
//! ```text
//! out/config.toml                     the configuration the run started with
//! out/metrics.csv                     one row per step
//! out/checkpoints/step-000010/        adapter_model.safetensors + adapter_config.json (LoRA, PEFT
//!                                     names) or policy.safetensors (full fine-tune),
//!                                     optimizer.bpk (burn's AdamW state), state.json
//! out/checkpoints/latest              the name of the newest complete checkpoint
//! ```
//! A checkpoint is written to `step-N.partial` and renamed, and `latest` is replaced atomically
//! after it, so a run killed at any moment resumes from the last complete one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, read, write_atomic};
use crate::policy::Policy;
use crate::step::Optimizer;
use crate::tensors::{HostTensor, read_f32, serialize};

/// Checkpoints kept on disk (older ones are deleted after a newer one is complete).
pub const KEEP: usize = 3;

/// One question's rewards in one step: what DRPO's accumulated statistics are rebuilt from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GroupLog {
    pub id: String,
    pub domain: String,
    #[serde(with = "exact_f64")]
    pub rewards: Vec<f64>,
    #[serde(with = "exact_f64")]
    pub kl: Vec<f64>,
}

/// f64s stored as their bit patterns: serde_json's default float parser may land one ulp off for
/// 17-digit decimals, and a resumed run replays these values into DRPO's statistics bit for bit.
mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|x| x.to_bits())
            .collect::<Vec<u64>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(f64::from_bits)
            .collect())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    /// Steps completed.
    pub step: u64,
    /// Per completed step, its groups (replayed into a fresh `DrpoState` on resume).
    pub history: Vec<Vec<GroupLog>>,
}

pub fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

fn step_name(step: u64) -> String {
    format!("step-{step:06}")
}

/// Writes checkpoint `state.step`.
pub fn save(out: &Path, policy: &Policy, optim: &Optimizer, state: &RunState) -> Result<PathBuf> {
    let root = checkpoints_dir(out);
    let name = step_name(state.step);
    let dir = root.join(&name);
    let tmp = root.join(format!("{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;

    let tensors: Vec<(String, HostTensor)> = policy
        .trainable_tensors()?
        .into_iter()
        .map(|(n, shape, v)| (n, HostTensor::f32(shape, &v)))
        .collect();
    let file = if policy.lora.rank > 0 {
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": policy.lora.rank,
            "lora_alpha": policy.lora.alpha,
            "lora_dropout": policy.lora.dropout,
            "target_modules": policy.lora.targets,
            "bias": "none",
        });
        std::fs::write(tmp.join("adapter_config.json"), config.to_string())
            .map_err(|e| Error::io(tmp.join("adapter_config.json"), e))?;
        "adapter_model.safetensors"
    } else {
        "policy.safetensors"
    };
    let bytes = serialize(&tensors, None)?;
    std::fs::write(tmp.join(file), bytes).map_err(|e| Error::io(tmp.join(file), e))?;
    let opt = tmp.join("optimizer.bpk");
    optim.inner.save(&opt).map_err(|e| {
        Error::Run(format!(
            "saving the optimizer state to {}: {e:?}",
            opt.display()
        ))
    })?;
    let json = serde_json::to_vec(state).map_err(|e| Error::Run(e.to_string()))?;
    std::fs::write(tmp.join("state.json"), json)
        .map_err(|e| Error::io(tmp.join("state.json"), e))?;

    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
    write_atomic(&root.join("latest"), name.as_bytes())?;
    prune(&root, state.step)?;
    Ok(dir)
}

/// Deletes complete checkpoints older than the newest [`KEEP`].
fn prune(root: &Path, newest: u64) -> Result<()> {
    let entries = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
    let mut steps: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("step-"))
                .and_then(|n| n.parse().ok())
        })
        .filter(|&s| s <= newest)
        .collect();
    steps.sort_unstable();
    let drop = steps.len().saturating_sub(KEEP);
    for s in &steps[..drop] {
        let d = root.join(step_name(*s));
        std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    Ok(())
}

/// The newest complete checkpoint of a run folder, if any.
pub fn latest(out: &Path) -> Result<Option<PathBuf>> {
    let root = checkpoints_dir(out);
    let pointer = root.join("latest");
    if !pointer.is_file() {
        return Ok(None);
    }
    let name = String::from_utf8(read(&pointer)?)
        .map_err(|_| Error::Run(format!("{} is not text", pointer.display())))?;
    let dir = root.join(name.trim());
    if !dir.join("state.json").is_file() {
        return Err(Error::Run(format!(
            "{} names {}, which is not a complete checkpoint",
            pointer.display(),
            dir.display()
        )));
    }
    Ok(Some(dir))
}

pub fn load_state(dir: &Path) -> Result<RunState> {
    let bytes = read(&dir.join("state.json"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Run(format!("{}: {e}", dir.join("state.json").display())))
}

/// The saved trainable tensors of a checkpoint.
pub fn load_tensors(dir: &Path) -> Result<crate::policy::HostTensors> {
    for file in ["adapter_model.safetensors", "policy.safetensors"] {
        let path = dir.join(file);
        if path.is_file() {
            return read_f32(&path);
        }
    }
    Err(Error::Run(format!(
        "{} holds neither adapter_model.safetensors nor policy.safetensors",
        dir.display()
    )))
}

/// Loads a checkpoint's weights into `policy` and its optimizer state into `optim`.
pub fn restore(dir: &Path, policy: &mut Policy, optim: &mut Optimizer) -> Result<RunState> {
    policy.load_trainable(load_tensors(dir)?)?;
    let opt = dir.join("optimizer.bpk");
    let inner = std::mem::replace(&mut optim.inner, burn::optim::AdamWConfig::new().init());
    optim.inner = inner
        .load(&opt)
        .map_err(|e| Error::Run(format!("loading {}: {e:?}", opt.display())))?;
    load_state(dir)
}
