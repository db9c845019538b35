//! Per-step metrics: one row of `out/metrics.csv` and one log line per step.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepMetrics {
    /// 1-based step number.
    pub step: u64,
    pub reward_mean: f64,
    pub reward_std: f64,
    pub accuracy: f64,
    pub iou: f64,
    pub format: f64,
    pub length: f64,
    pub adv_mean: f64,
    pub adv_std: f64,
    pub adv_min: f64,
    pub adv_max: f64,
    /// Token mean of the k3 KL to the reference (the loss term).
    pub kl: f64,
    pub pg_loss: f64,
    pub loss: f64,
    pub clip_frac_high: f64,
    pub clip_frac_low: f64,
    pub ppo_kl: f64,
    pub grad_norm: f64,
    pub response_tokens: f64,
    pub rollout_tokens_per_s: f64,
    pub update_tokens_per_s: f64,
    pub rollout_s: f64,
    pub update_s: f64,
    pub upload_s: f64,
    pub step_s: f64,
    /// Mean reward per domain present in the step.
    pub reward_by_domain: BTreeMap<String, f64>,
}

/// The fixed columns; then `reward_<domain>` per domain of the dataset.
const COLUMNS: [&str; 25] = [
    "step",
    "reward_mean",
    "reward_std",
    "accuracy",
    "iou",
    "format",
    "length",
    "adv_mean",
    "adv_std",
    "adv_min",
    "adv_max",
    "kl",
    "pg_loss",
    "loss",
    "clip_frac_high",
    "clip_frac_low",
    "ppo_kl",
    "grad_norm",
    "response_tokens",
    "rollout_tokens_per_s",
    "update_tokens_per_s",
    "rollout_s",
    "update_s",
    "upload_s",
    "step_s",
];

/// Columns that depend on the machine's speed, not on the run (left out of resume comparisons).
pub const TIMING_COLUMNS: [&str; 6] = [
    "rollout_tokens_per_s",
    "update_tokens_per_s",
    "rollout_s",
    "update_s",
    "upload_s",
    "step_s",
];

impl StepMetrics {
    fn values(&self) -> [f64; 24] {
        [
            self.reward_mean,
            self.reward_std,
            self.accuracy,
            self.iou,
            self.format,
            self.length,
            self.adv_mean,
            self.adv_std,
            self.adv_min,
            self.adv_max,
            self.kl,
            self.pg_loss,
            self.loss,
            self.clip_frac_high,
            self.clip_frac_low,
            self.ppo_kl,
            self.grad_norm,
            self.response_tokens,
            self.rollout_tokens_per_s,
            self.update_tokens_per_s,
            self.rollout_s,
            self.update_s,
            self.upload_s,
            self.step_s,
        ]
    }

    /// The one-line summary printed per step.
    pub fn summary(&self) -> String {
        let domains: Vec<String> = self
            .reward_by_domain
            .iter()
            .map(|(d, r)| format!("{d} {r:.3}"))
            .collect();
        format!(
            "step {}: reward {:.4} ({}) adv {:+.2}..{:+.2} kl {:.2e} loss {:+.4} clip {:.3}/{:.3} \
             grad {:.3} | {:.0} tok/s rollout, {:.0} tok/s update, {:.1} s",
            self.step,
            self.reward_mean,
            domains.join(", "),
            self.adv_min,
            self.adv_max,
            self.kl,
            self.loss,
            self.clip_frac_high,
            self.clip_frac_low,
            self.grad_norm,
            self.rollout_tokens_per_s,
            self.update_tokens_per_s,
            self.step_s,
        )
    }
}

/// Appends rows to metrics.csv (header on creation), flushing each row.
pub struct MetricsFile {
    path: PathBuf,
    domains: Vec<String>,
}

impl MetricsFile {
    /// Opens `out/metrics.csv` for a run over `domains`. With `keep_steps` = Some(n) (resume) the
    /// rows after step n are dropped (a killed run may have logged a step it did not checkpoint);
    /// None starts a new file.
    pub fn open(out: &Path, domains: &[String], keep_steps: Option<u64>) -> Result<Self> {
        let path = out.join("metrics.csv");
        let header = Self::header(domains);
        let kept = match keep_steps {
            Some(n) if path.is_file() => {
                let text = String::from_utf8(crate::error::read(&path)?)
                    .map_err(|_| Error::Run(format!("{} is not text", path.display())))?;
                let mut lines = text.lines();
                if lines.next() != Some(header.as_str()) {
                    return Err(Error::Run(format!(
                        "{} has other columns than this run writes; it belongs to another run",
                        path.display()
                    )));
                }
                let rows: Vec<&str> = lines
                    .filter(|l| {
                        l.split(',')
                            .next()
                            .and_then(|s| s.parse::<u64>().ok())
                            .is_some_and(|s| s <= n)
                    })
                    .collect();
                rows.iter().map(|r| format!("{r}\n")).collect::<String>()
            }
            _ => String::new(),
        };
        crate::error::write_atomic(&path, format!("{header}\n{kept}").as_bytes())?;
        Ok(MetricsFile {
            path,
            domains: domains.to_vec(),
        })
    }

    fn header(domains: &[String]) -> String {
        let mut cols: Vec<String> = COLUMNS.iter().map(|s| s.to_string()).collect();
        cols.extend(domains.iter().map(|d| format!("reward_{}", csv_safe(d))));
        cols.join(",")
    }

    pub fn append(&mut self, m: &StepMetrics) -> Result<()> {
        let mut row = vec![m.step.to_string()];
        row.extend(m.values().iter().map(|v| format!("{v}")));
        for d in &self.domains {
            row.push(
                m.reward_by_domain
                    .get(d)
                    .map(|v| format!("{v}"))
                    .unwrap_or_default(),
            );
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        writeln!(f, "{}", row.join(",")).map_err(|e| Error::io(&self.path, e))?;
        f.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

fn csv_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
