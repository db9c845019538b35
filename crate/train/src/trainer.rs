//! The training loop: per step, rollouts from the engine, rewards, GRPO / DRPO advantages,
//! reference log-probs, the PPO update in burn, the new policy uploaded to the engine, a metrics
//! row, and a checkpoint every `checkpoint_every` steps.
//!
//! Everything random is a pure function of (seed, step, position): the data order, each
//! rollout's sampling seed and each micro-batch's dropout seed. A resumed run therefore replays
//! exactly the steps an uninterrupted run would have taken.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;
use qoqmed_engine::chat::Instruction;
use qoqmed_rl::{DrpoState, Group, Mask, Region, Weights, advantages, score};
use std::time::Instant;

use crate::checkpoint::{self, GroupLog, RunState};
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::loss::LossConfig;
use crate::metrics::{MetricsFile, StepMetrics};
use crate::policy::{LoraSpec, Mode, Policy};
use crate::rollout::{Engine, Prompt, RolloutParams};
use crate::step::{Optimizer, Sample, UpdateConfig, score as score_log_probs, update};

pub struct Trainer {
    pub cfg: TrainConfig,
    pub dataset: Dataset,
    prompts: Vec<Prompt>,
    pub engine: Engine,
    pub policy: Policy,
    /// Full fine-tune only: the frozen base (with LoRA, the base is the policy without adapters).
    reference: Option<Policy>,
    optim: Optimizer,
    drpo: DrpoState,
    history: Vec<Vec<GroupLog>>,
    /// Steps completed.
    pub step: u64,
    weights: Weights,
    masks: HashMap<usize, Mask>,
    metrics: MetricsFile,
}

/// splitmix64 of a few values: independent seeds per (run seed, step, slot, rollout).
pub fn mix(parts: &[u64]) -> u64 {
    let mut h = 0x853c_49e6_748f_ea9bu64;
    for &p in parts {
        h ^= p.wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

impl Trainer {
    /// Checks the data and the run folder, loads the model into burn and the engine, and with
    /// `resume` continues from the run's newest checkpoint. `log` receives progress lines.
    pub fn new(cfg: TrainConfig, resume: bool, log: &mut dyn FnMut(&str)) -> Result<Self> {
        let dataset = Dataset::load(&cfg.data)?;
        let latest = prepare_out(&cfg, resume)?;
        let weights = cfg
            .reward_weights()
            .map_err(|m| Error::Run(format!("config: {m}")))?;
        let mut masks = HashMap::new();
        for (i, e) in dataset.examples.iter().enumerate() {
            if let Some(path) = &e.segmentation {
                let mask =
                    Mask::from_png(&crate::error::read(path)?).map_err(|err| Error::Data {
                        file: dataset.file.clone(),
                        line: e.line,
                        message: format!("segmentation_path {}: {err}", path.display()),
                    })?;
                masks.insert(i, mask);
            }
        }

        let (engine, mut files) = Engine::new(&cfg.model, cfg.adapter)?;
        log(&format!("engine: {}", engine.gpu.adapter));
        let instruction = if cfg.instruction == "qoq" {
            Instruction::Qoq
        } else {
            Instruction::None
        };
        let mut prompts = Vec::with_capacity(dataset.examples.len());
        for e in &dataset.examples {
            let p = engine.prompt(e, cfg.system.as_deref(), instruction)?;
            if p.ids.len() > cfg.max_prompt_tokens {
                return Err(Error::Data {
                    file: dataset.file.clone(),
                    line: e.line,
                    message: format!(
                        "the prompt has {} tokens, more than max_prompt_tokens = {}",
                        p.ids.len(),
                        cfg.max_prompt_tokens
                    ),
                });
            }
            prompts.push(p);
        }

        let store = pollster::block_on(qoqmed_engine::weights::WeightStore::open(std::mem::take(
            &mut files.weights,
        )))?;
        let device = if cfg.gradient_checkpointing {
            Device::default().autodiff().gradient_checkpointing()
        } else {
            Device::default().autodiff()
        };
        let text = engine.config.text.clone();
        let t = Instant::now();
        let policy = Policy::load(&store, &text, LoraSpec::from_config(&cfg), &device)?;
        let reference = if cfg.is_lora() {
            None
        } else {
            let spec = LoraSpec {
                rank: 0,
                ..LoraSpec::from_config(&cfg)
            };
            Some(Policy::load(&store, &text, spec, &device.clone().without_autodiff())?.detached())
        };
        log(&format!(
            "policy: {} layers in burn ({}), loaded in {:.1} s",
            text.num_hidden_layers,
            if cfg.is_lora() {
                format!(
                    "LoRA rank {} on {}",
                    cfg.lora_rank,
                    cfg.lora_targets.join(", ")
                )
            } else {
                "full fine-tune".into()
            },
            t.elapsed().as_secs_f64()
        ));

        let mut optim = Optimizer::new(cfg.learning_rate, cfg.weight_decay, cfg.max_grad_norm);
        let mut trainer_policy = policy;
        let (step, history) = match &latest {
            Some(dir) => {
                let state = checkpoint::restore(dir, &mut trainer_policy, &mut optim)?;
                log(&format!(
                    "resuming after step {} from {}",
                    state.step,
                    dir.display()
                ));
                (state.step, state.history)
            }
            None => (0, Vec::new()),
        };
        // DRPO's accumulated statistics are rebuilt by replaying the logged reward groups.
        let mut drpo = DrpoState::new();
        let options = cfg.advantage_options();
        for groups in &history {
            let view: Vec<Group<'_>> = groups
                .iter()
                .map(|g| Group {
                    id: &g.id,
                    domain: &g.domain,
                    rewards: &g.rewards,
                    kl: Some(&g.kl),
                })
                .collect();
            advantages(&mut drpo, &view, &options)?;
        }
        let mut domains: Vec<String> = dataset.examples.iter().map(|e| e.domain.clone()).collect();
        domains.sort();
        domains.dedup();
        let metrics = MetricsFile::open(&cfg.out, &domains, latest.as_ref().map(|_| step))?;

        let mut trainer = Trainer {
            cfg,
            dataset,
            prompts,
            engine,
            policy: trainer_policy,
            reference,
            optim,
            drpo,
            history,
            step,
            weights,
            masks,
            metrics,
        };
        let t = Instant::now();
        trainer.engine.upload(&trainer.policy)?;
        log(&format!(
            "rollout copy uploaded to the engine in {:.2} s",
            t.elapsed().as_secs_f64()
        ));
        Ok(trainer)
    }

    /// Runs the remaining steps; `on_step` sees each step's metrics.
    pub fn run(&mut self, on_step: &mut dyn FnMut(&StepMetrics)) -> Result<()> {
        while self.step < self.cfg.steps {
            let m = self.train_step()?;
            on_step(&m);
            if self.step.is_multiple_of(self.cfg.checkpoint_every) || self.step == self.cfg.steps {
                self.checkpoint()?;
            }
        }
        Ok(())
    }

    pub fn checkpoint(&self) -> Result<std::path::PathBuf> {
        checkpoint::save(
            &self.cfg.out,
            &self.policy,
            &self.optim,
            &RunState {
                step: self.step,
                history: self.history.clone(),
            },
        )
    }

    /// One step: rollouts, rewards, advantages, update, upload.
    pub fn train_step(&mut self) -> Result<StepMetrics> {
        let cfg = &self.cfg;
        let t_step = Instant::now();
        let g = cfg.group_size;
        let chosen = self
            .dataset
            .step_indices(cfg.seed, self.step, cfg.prompts_per_step);
        let params = RolloutParams {
            temperature: cfg.temperature,
            top_p: cfg.top_p,
            top_k: cfg.top_k,
            max_new_tokens: cfg.max_new_tokens,
        };

        let t = Instant::now();
        let mut rollouts = Vec::with_capacity(chosen.len() * g);
        for (slot, &ex) in chosen.iter().enumerate() {
            for r in 0..g {
                let seed = mix(&[cfg.seed, self.step, slot as u64, r as u64]);
                rollouts.push(self.engine.rollout(&self.prompts[ex], &params, seed)?);
            }
        }
        // The rollout copy is rebuilt from the updated policy after the update: drop it now so it
        // and the update's activations are never on the GPU together.
        self.engine.release();
        let rollout_s = t.elapsed().as_secs_f64();
        let new_tokens: usize = rollouts.iter().map(|r| r.tokens.len()).sum();

        // Rewards.
        let mut breakdowns = Vec::with_capacity(rollouts.len());
        for (i, r) in rollouts.iter().enumerate() {
            let ex_index = chosen[i / g];
            let ex = &self.dataset.examples[ex_index];
            let region = Region {
                mask: self.masks.get(&ex_index),
                bbox: ex.bbox,
            };
            breakdowns.push(score(&r.text, &ex.answer, region, &self.weights));
        }
        let rewards: Vec<f64> = breakdowns.iter().map(|b| b.overall).collect();

        // Reference log-probs (the frozen base), and each rollout's summed k3 KL for DRPO's
        // optional KL damping.
        let mut samples: Vec<Sample> = rollouts
            .iter()
            .enumerate()
            .map(|(i, r)| Sample {
                prompt: chosen[i / g],
                tokens: r.tokens.clone(),
                old_log_probs: r.log_probs.clone(),
                ref_log_probs: Vec::new(),
                advantage: 0.0,
            })
            .collect();
        let t = Instant::now();
        let refs = {
            let views: Vec<&Sample> = samples.iter().collect();
            match &self.reference {
                Some(reference) => score_log_probs(
                    reference,
                    &self.prompts,
                    &views,
                    Mode::REFERENCE,
                    cfg.temperature,
                    cfg.micro_batch,
                )?,
                None => score_log_probs(
                    &self.policy.detached(),
                    &self.prompts,
                    &views,
                    Mode::REFERENCE,
                    cfg.temperature,
                    cfg.micro_batch,
                )?,
            }
        };
        let ref_s = t.elapsed().as_secs_f64();
        let mut kl_sums = Vec::with_capacity(samples.len());
        for (s, r) in samples.iter_mut().zip(refs) {
            let kl: f64 = s
                .old_log_probs
                .iter()
                .zip(&r)
                .map(|(&old, &rf)| {
                    let d = rf as f64 - old as f64;
                    (d.exp() - d - 1.0).clamp(-10.0, 10.0)
                })
                .sum();
            kl_sums.push(kl);
            s.ref_log_probs = r;
        }

        // Advantages.
        let logs: Vec<GroupLog> = chosen
            .iter()
            .enumerate()
            .map(|(slot, &ex)| {
                let e = &self.dataset.examples[ex];
                GroupLog {
                    id: e.id.clone(),
                    domain: e.domain.clone(),
                    rewards: rewards[slot * g..(slot + 1) * g].to_vec(),
                    kl: kl_sums[slot * g..(slot + 1) * g].to_vec(),
                }
            })
            .collect();
        let groups: Vec<Group<'_>> = logs
            .iter()
            .map(|l| Group {
                id: &l.id,
                domain: &l.domain,
                rewards: &l.rewards,
                kl: Some(&l.kl),
            })
            .collect();
        let adv = advantages(&mut self.drpo, &groups, &cfg.advantage_options())?;
        for (s, &a) in samples.iter_mut().zip(&adv.values) {
            s.advantage = a as f32;
        }

        // Update.
        let t = Instant::now();
        let report = update(
            &mut self.policy,
            &mut self.optim,
            &self.prompts,
            &samples,
            &UpdateConfig {
                loss: LossConfig {
                    clip_low: cfg.clip_low,
                    clip_high: cfg.clip_high,
                    clip_dual: cfg.clip_dual,
                    kl_coef: cfg.kl_coef,
                },
                mini_batches: cfg.mini_batches,
                micro_batch: cfg.micro_batch,
                temperature: cfg.temperature,
                seed: mix(&[cfg.seed, self.step, 0x64726f70]),
            },
        )?;
        let update_s = t.elapsed().as_secs_f64() + ref_s;
        let t = Instant::now();
        self.engine.upload(&self.policy)?;
        let upload_s = t.elapsed().as_secs_f64();

        self.history.push(logs);
        self.step += 1;
        let n = rewards.len() as f64;
        let mean = |f: &dyn Fn(usize) -> f64| (0..rewards.len()).map(f).sum::<f64>() / n;
        let reward_mean = mean(&|i| rewards[i]);
        let adv_mean = adv.values.iter().sum::<f64>() / n;
        let mut by_domain: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
        for (i, &r) in rewards.iter().enumerate() {
            let e = &self.dataset.examples[chosen[i / g]];
            let slot = by_domain.entry(e.domain.clone()).or_default();
            slot.0 += r;
            slot.1 += 1;
        }
        let m = StepMetrics {
            step: self.step,
            reward_mean,
            reward_std: mean(&|i| (rewards[i] - reward_mean).powi(2)).sqrt(),
            accuracy: mean(&|i| breakdowns[i].accuracy),
            iou: mean(&|i| breakdowns[i].iou),
            format: mean(&|i| breakdowns[i].format),
            length: mean(&|i| breakdowns[i].length),
            adv_mean,
            adv_std: (adv
                .values
                .iter()
                .map(|a| (a - adv_mean).powi(2))
                .sum::<f64>()
                / n)
                .sqrt(),
            adv_min: adv.values.iter().copied().fold(f64::INFINITY, f64::min),
            adv_max: adv.values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            kl: report.kl,
            pg_loss: report.pg_loss,
            loss: report.loss,
            clip_frac_high: report.clip_frac_high,
            clip_frac_low: report.clip_frac_low,
            ppo_kl: report.ppo_kl,
            grad_norm: report.grad_norm,
            response_tokens: new_tokens as f64 / n,
            rollout_tokens_per_s: new_tokens as f64 / rollout_s.max(1e-9),
            update_tokens_per_s: report.tokens as f64 / update_s.max(1e-9),
            rollout_s,
            update_s,
            upload_s,
            step_s: t_step.elapsed().as_secs_f64(),
            reward_by_domain: by_domain
                .into_iter()
                .map(|(d, (s, c))| (d, s / c as f64))
                .collect(),
        };
        self.metrics.append(&m)?;
        Ok(m)
    }
}

/// Creates the run folder, or checks it against `--resume`. Returns the checkpoint to resume
/// from, if any.
fn prepare_out(cfg: &TrainConfig, resume: bool) -> Result<Option<std::path::PathBuf>> {
    let out = &cfg.out;
    let saved = out.join("config.toml");
    let latest = if out.exists() {
        checkpoint::latest(out)?
    } else {
        None
    };
    if !resume {
        if saved.exists() || latest.is_some() {
            return Err(Error::Run(format!(
                "{} already holds a run; pass --resume to continue it or choose another `out`",
                out.display()
            )));
        }
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let text = toml::to_string(cfg).map_err(|e| Error::Run(e.to_string()))?;
        crate::error::write_atomic(&saved, text.as_bytes())?;
        return Ok(None);
    }
    if saved.is_file() {
        let text = String::from_utf8(crate::error::read(&saved)?)
            .map_err(|_| Error::Run(format!("{} is not text", saved.display())))?;
        let before: TrainConfig =
            toml::from_str(&text).map_err(|e| Error::Run(format!("{}: {e}", saved.display())))?;
        if before.identity() != cfg.identity() {
            return Err(Error::Run(format!(
                "--resume: the configuration differs from the one {} started with (only `steps`, \
                 `out`, `checkpoint_every` and `adapter` may change)",
                out.display()
            )));
        }
    } else {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let text = toml::to_string(cfg).map_err(|e| Error::Run(e.to_string()))?;
        crate::error::write_atomic(&saved, text.as_bytes())?;
    }
    Ok(latest)
}

/// For tests and tools: the path a run's metrics live at.
pub fn metrics_path(out: &Path) -> std::path::PathBuf {
    out.join("metrics.csv")
}
