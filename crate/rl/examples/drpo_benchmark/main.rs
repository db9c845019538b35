//! GRPO vs DRPO (and its variants) on a synthetic long-tailed multi-domain classification task,
//! at toy scale, in the spirit of the QoQ-Med paper's Table 2. Prints markdown tables.
//!
//! `cargo run --release -p qoqmed-rl --example drpo_benchmark [-- --steps N --seeds N]`
//! See docs/drpo.md for the set-up and the results.

mod metrics;
mod policy;
mod rng;
mod task;
mod train;

use qoqmed_rl::{ClusterMode, DrpoOptions, KlDamping};

use metrics::{Scores, evaluate};
use policy::Policy;
use rng::Rng;
use task::{DOMAINS, Task};
use train::{Budget, train};

fn methods() -> Vec<(&'static str, DrpoOptions)> {
    let drpo = DrpoOptions::default();
    vec![
        ("GRPO", DrpoOptions::grpo()),
        ("DRPO (released-code defaults)", drpo),
        (
            "DRPO domain-only (no T_c)",
            DrpoOptions {
                clusters: ClusterMode::Off,
                ..drpo
            },
        ),
        (
            "DRPO no clustering (k = 1)",
            DrpoOptions {
                clusters: ClusterMode::Single,
                ..drpo
            },
        ),
        (
            "DRPO + KL damping (paper)",
            DrpoOptions {
                kl_damping: KlDamping::Paper,
                ..drpo
            },
        ),
        (
            "DRPO + KL damping (code's abs(s') version)",
            DrpoOptions {
                kl_damping: KlDamping::Magnitude,
                ..drpo
            },
        ),
        ("DRPO paper reading", DrpoOptions::paper()),
    ]
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let m = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

fn cell(values: &[f64]) -> String {
    let (m, s) = mean_std(values);
    format!("{m:+.3} ± {s:.3}")
        .trim_start_matches('+')
        .to_owned()
}

fn main() {
    let seeds = arg("--seeds", 5) as u64;
    let budget = Budget {
        steps: arg("--steps", 300),
        batch: 64,
        group: 5,
        minibatches: 4,
        lr: 3e-3,
    };
    let started = std::time::Instant::now();
    let methods = methods();
    // results[method][seed]
    let mut results: Vec<Vec<Scores>> = (0..=methods.len()).map(|_| Vec::new()).collect();
    let mut floored: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    for seed in 0..seeds {
        let task = Task::generate(&mut Rng::new(seed));
        let init = Policy::new(&mut Rng::new(1000 + seed));
        results[0].push(evaluate(&init, &task.test));
        for (m, (name, options)) in methods.iter().enumerate() {
            let (trained, stats) = train(&task, &init, options, 2000 + seed, &budget)
                .unwrap_or_else(|e| panic!("{name}, seed {seed}: {e}"));
            results[m + 1].push(evaluate(&trained, &task.test));
            floored[m].push(stats.kl_floor_steps as f64 / budget.steps as f64);
        }
        eprintln!(
            "seed {seed} done after {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let names: Vec<&str> = std::iter::once("untrained policy")
        .chain(methods.iter().map(|m| m.0))
        .collect();

    println!(
        "Budget: {} steps x {} questions x G = {} rollouts ({} rollouts), {} PPO mini-batches per step, Adam lr {}; seeds 0..{}; test {} questions per domain.\n",
        budget.steps,
        budget.batch,
        budget.group,
        budget.steps * budget.batch * budget.group,
        budget.minibatches,
        budget.lr,
        seeds,
        task::TEST_PER_DOMAIN
    );
    println!(
        "| method | balanced accuracy (mean of domains) | macro-F1 (mean of domains) |\n|---|---|---|"
    );
    for (name, runs) in names.iter().zip(&results) {
        let ba: Vec<f64> = runs.iter().map(|s| s.overall().0).collect();
        let f1: Vec<f64> = runs.iter().map(|s| s.overall().1).collect();
        println!("| {name} | {} | {} |", cell(&ba), cell(&f1));
    }
    println!(
        "\nPaired by seed (same task, initial policy and sampling seed), method minus GRPO:\n"
    );
    println!(
        "| method | Δ balanced accuracy | seeds better | Δ macro-F1 | seeds better |\n|---|---|---|---|---|"
    );
    for (name, runs) in names.iter().zip(&results).skip(2) {
        let diff = |pick: usize| -> Vec<f64> {
            runs.iter()
                .zip(&results[1])
                .map(|(a, g)| {
                    if pick == 0 {
                        a.overall().0 - g.overall().0
                    } else {
                        a.overall().1 - g.overall().1
                    }
                })
                .collect()
        };
        let (ba, f1) = (diff(0), diff(1));
        let wins = |v: &[f64]| v.iter().filter(|d| **d > 0.0).count();
        println!(
            "| {name} | {} | {}/{} | {} | {}/{} |",
            cell(&ba),
            wins(&ba),
            ba.len(),
            cell(&f1),
            wins(&f1),
            f1.len()
        );
    }
    for ((name, options), share) in methods.iter().zip(&floored) {
        if options.kl_damping == KlDamping::Paper {
            println!(
                "\n{name}: the damping threshold t_p (75th percentile of s' x KL) was <= eps, so floored, in {} of the steps (share, mean ± std over seeds).",
                cell(share)
            );
        }
    }
    for (title, pick) in [("Balanced accuracy", 0usize), ("Macro-F1", 1)] {
        println!("\n{title} per domain (training questions in brackets):\n");
        let header: Vec<String> = DOMAINS
            .iter()
            .map(|d| format!("{} ({})", d.name, d.train))
            .collect();
        println!(
            "| method | {} |\n|---|{}",
            header.join(" | "),
            "---|".repeat(DOMAINS.len())
        );
        for (name, runs) in names.iter().zip(&results) {
            let cells: Vec<String> = (0..DOMAINS.len())
                .map(|d| {
                    let v: Vec<f64> = runs
                        .iter()
                        .map(|s| {
                            if pick == 0 {
                                s.domains[d].0
                            } else {
                                s.domains[d].1
                            }
                        })
                        .collect();
                    cell(&v)
                })
                .collect();
            println!("| {name} | {} |", cells.join(" | "));
        }
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}
