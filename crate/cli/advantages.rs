//! `qoqmed advantages`: GRPO / DRPO advantages for groups of rollout rewards, JSON in, JSON out.
//!
//! Input: `{"groups": [{"id": str, "domain": str, "rewards": [float], "kl": [float]?}]}` for one
//! step, or `{"steps": [{"groups": [...]}, ...]}` for several (statistics carry over between them
//! with `--statistics run`). Output on stdout: `{"advantages": [[float]], "clusters": {domain: k}}`
//! with groups in input order, or `{"steps": [that, ...]}`. Other tools call this: keep it stable.

use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;
use qoqmed_rl::{
    ClusterMode, DomainMean, DrpoOptions, DrpoState, KlDamping, Method, Statistics, StepRecord,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// JSON file with the groups of one step ({"groups": [...]}) or of several ({"steps": [...]}).
    #[arg(long)]
    input: PathBuf,
    /// grpo: group-normalised rewards only; drpo: domain- and cluster-aware scaling.
    #[arg(long, value_enum, default_value_t = MethodArg::Drpo)]
    method: MethodArg,
    /// run: N, mu and K-means over every question so far (released code); step: this step only.
    #[arg(long, value_enum, default_value_t = StatisticsArg::Run)]
    statistics: StatisticsArg,
    /// mu_d: cluster-weighted (released code) or plain mean reward (paper).
    #[arg(long, value_enum, default_value_t = DomainMeanArg::ClusterWeighted)]
    domain_mean: DomainMeanArg,
    /// elbow: K-means with the elbow rule; single: one cluster per domain; off: no T_c.
    #[arg(long, value_enum, default_value_t = ClustersArg::Elbow)]
    clusters: ClustersArg,
    /// Drop the eps floor on T_c, as the released code (a zero-reward cluster then fails).
    #[arg(long)]
    no_cluster_floor: bool,
    /// off (released code), paper, or magnitude (the released code's commented-out |s'|*KL
    /// version); both need "kl" per rollout in every group.
    #[arg(long, value_enum, default_value_t = KlDampingArg::Off)]
    kl_damping: KlDampingArg,
    /// Quantile of s'*KL used by the KL damping.
    #[arg(long, default_value_t = 0.75)]
    kl_quantile: f64,
    /// Skip the final division by the batch standard deviation.
    #[arg(long)]
    no_renormalise: bool,
    #[arg(long, default_value_t = 1e-6)]
    eps: f64,
    /// Largest k the elbow rule tries.
    #[arg(long, default_value_t = 10)]
    k_max: usize,
    /// Elbow tolerance.
    #[arg(long, default_value_t = 0.10)]
    elbow_tol: f64,
    /// K-means seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seeded K-means runs per k (best inertia kept).
    #[arg(long, default_value_t = 1)]
    kmeans_restarts: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum MethodArg {
    Grpo,
    Drpo,
}

#[derive(Clone, Copy, ValueEnum)]
enum StatisticsArg {
    Run,
    Step,
}

#[derive(Clone, Copy, ValueEnum)]
enum DomainMeanArg {
    ClusterWeighted,
    Plain,
}

#[derive(Clone, Copy, ValueEnum)]
enum ClustersArg {
    Elbow,
    Single,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum KlDampingArg {
    Off,
    Paper,
    Magnitude,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Steps {
    steps: Vec<StepRecord>,
}

impl Args {
    fn options(&self) -> DrpoOptions {
        DrpoOptions {
            method: match self.method {
                MethodArg::Grpo => Method::Grpo,
                MethodArg::Drpo => Method::Drpo,
            },
            statistics: match self.statistics {
                StatisticsArg::Run => Statistics::Run,
                StatisticsArg::Step => Statistics::Step,
            },
            domain_mean: match self.domain_mean {
                DomainMeanArg::ClusterWeighted => DomainMean::ClusterWeighted,
                DomainMeanArg::Plain => DomainMean::Plain,
            },
            clusters: match self.clusters {
                ClustersArg::Elbow => ClusterMode::Elbow,
                ClustersArg::Single => ClusterMode::Single,
                ClustersArg::Off => ClusterMode::Off,
            },
            floor_cluster_temperature: !self.no_cluster_floor,
            kl_damping: match self.kl_damping {
                KlDampingArg::Off => KlDamping::Off,
                KlDampingArg::Paper => KlDamping::Paper,
                KlDampingArg::Magnitude => KlDamping::Magnitude,
            },
            kl_quantile: self.kl_quantile,
            renormalise: !self.no_renormalise,
            eps: self.eps,
            k_max: self.k_max,
            elbow_tol: self.elbow_tol,
            seed: self.seed,
            kmeans_restarts: self.kmeans_restarts,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read --input {}", args.input.display()))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("--input {} is not valid JSON", args.input.display()))?;
    let multi = value.get("steps").is_some();
    let steps: Vec<StepRecord> = if multi {
        serde_json::from_value::<Steps>(value).map(|s| s.steps)
    } else {
        serde_json::from_value::<StepRecord>(value).map(|s| vec![s])
    }
    .with_context(|| {
        format!(
            "--input {}: expected {{\"groups\": [{{\"id\": str, \"domain\": str, \"rewards\": [float], \"kl\": [float]?}}]}} or {{\"steps\": [{{\"groups\": [...]}}]}}",
            args.input.display()
        )
    })?;

    let options = args.options();
    let mut state = DrpoState::new();
    let mut outputs = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        let groups = step.groups();
        let result = qoqmed_rl::advantages(&mut state, &groups, &options)
            .with_context(|| format!("step {index} of {}", args.input.display()))?;
        let rows: Vec<&[f64]> = result.rows().collect();
        outputs.push(json!({ "advantages": rows, "clusters": result.clusters() }));
    }
    let output = if multi {
        json!({ "steps": outputs })
    } else {
        outputs.pop().unwrap_or(Value::Null)
    };
    println!("{output}");
    Ok(())
}
