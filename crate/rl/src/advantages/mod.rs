//! GRPO and DRPO advantages for one training step (spec section 6).
//!
//! For each question q with G rollout rewards: s = (r - mean_q) / (std_q + eps). DRPO then divides
//! s by a domain temperature T_d = sqrt(N_d) mu_d and a cluster temperature T_c = sqrt(N_c) mu_c,
//! where the clusters are K-means clusters (elbow-chosen k) of the questions' reward vectors within
//! the domain, optionally damps by KL, and divides by the batch standard deviation.

pub(crate) mod kmeans;
mod stats;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::AdvantageError;
use stats::{mean, quantile, std_unbiased};

/// The rollouts of one question, borrowed from the trainer's buffers.
#[derive(Clone, Copy, Debug)]
pub struct Group<'a> {
    /// Question id (only used in error messages).
    pub id: &'a str,
    /// Domain key chosen by the caller: the dataset name (released code) or the clinical domain
    /// (paper).
    pub domain: &'a str,
    /// One scalar reward per rollout; every group of a step has the same length G >= 2.
    pub rewards: &'a [f64],
    /// Summed token KL to the reference policy, one per rollout; only KL damping reads it.
    pub kl: Option<&'a [f64]>,
}

/// An owned group as the CLI and test files spell it:
/// `{"id": str, "domain": str, "rewards": [float], "kl": [float]?}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRecord {
    pub id: String,
    pub domain: String,
    pub rewards: Vec<f64>,
    #[serde(default)]
    pub kl: Option<Vec<f64>>,
}

impl GroupRecord {
    pub fn as_group(&self) -> Group<'_> {
        Group {
            id: &self.id,
            domain: &self.domain,
            rewards: &self.rewards,
            kl: self.kl.as_deref(),
        }
    }
}

/// One rollout step's groups: `{"groups": [...]}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    pub groups: Vec<GroupRecord>,
}

impl StepRecord {
    pub fn groups(&self) -> Vec<Group<'_>> {
        self.groups.iter().map(GroupRecord::as_group).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Group-relative scores only.
    Grpo,
    /// Domain- and cluster-scaled scores.
    Drpo,
}

/// Which questions the domain statistics (N, mu, K-means) see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistics {
    /// This step's questions only (the paper's per-batch reading).
    Step,
    /// Every question seen so far in the run, kept in [`DrpoState`] (the released code).
    Run,
}

/// How mu_d is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainMean {
    /// Mean of the cluster centroid means weighted by 1 / cluster size (the released code).
    ClusterWeighted,
    /// Plain mean reward of the domain's questions (the paper's text).
    Plain,
}

/// How the questions within a domain are clustered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterMode {
    /// K-means with k by the elbow rule (paper and code).
    Elbow,
    /// One cluster per domain (no K-means): T_c is computed over the whole domain.
    Single,
    /// No cluster temperature at all (T_c = 1): domain scaling only.
    Off,
}

/// KL-aware damping of the scaled scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlDamping {
    /// Released code (the damping is commented out there).
    Off,
    /// Paper: z = s' k_q, t = quantile_q(z) (floored at eps), s' *= t / (t + max(z, 0)).
    /// When fewer than a quarter of the rollouts have z > 0, t is the eps floor and every
    /// positive-z rollout is scaled by about eps / z (docs/drpo.md measures how often).
    Paper,
    /// The released code's commented-out version: z = |s'| k_q, t = quantile_q(z) (floored at
    /// eps), s' *= t / (t + z); it damps both signs. Applied before the renormalisation (the
    /// commented code applies it after; the multiplier is the same, only the final scale differs).
    Magnitude,
}

/// Every paper-vs-code choice of section 6. [`Default`] is the released code's behaviour, except
/// the eps floor on T_c, which is on (without it a cluster with mean reward 0 divides by 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrpoOptions {
    pub method: Method,
    pub statistics: Statistics,
    pub domain_mean: DomainMean,
    pub clusters: ClusterMode,
    /// Floor T_c at eps as T_d is (the released code floors T_d only).
    pub floor_cluster_temperature: bool,
    pub kl_damping: KlDamping,
    /// Quantile of z used by the KL damping (paper: 0.75).
    pub kl_quantile: f64,
    /// Divide by the batch standard deviation at the end (DRPO only; spec step 6).
    pub renormalise: bool,
    pub eps: f64,
    /// Largest k the elbow rule tries.
    pub k_max: usize,
    /// Elbow tolerance: stop at the first k whose next drop is below tol x its own drop.
    pub elbow_tol: f64,
    /// K-means seed (the released code uses random_state=0 for every fit).
    pub seed: u64,
    /// Seeded K-means runs per k, best inertia kept (scikit-learn's n_init="auto" is 1 here).
    pub kmeans_restarts: usize,
}

impl Default for DrpoOptions {
    fn default() -> Self {
        DrpoOptions {
            method: Method::Drpo,
            statistics: Statistics::Run,
            domain_mean: DomainMean::ClusterWeighted,
            clusters: ClusterMode::Elbow,
            floor_cluster_temperature: true,
            kl_damping: KlDamping::Off,
            kl_quantile: 0.75,
            renormalise: true,
            eps: 1e-6,
            k_max: 10,
            elbow_tol: 0.10,
            seed: 0,
            kmeans_restarts: 1,
        }
    }
}

impl DrpoOptions {
    /// GRPO with the same eps.
    pub fn grpo() -> Self {
        DrpoOptions {
            method: Method::Grpo,
            ..Self::default()
        }
    }

    /// The paper's reading: per-step statistics, plain mu_d, KL damping on.
    pub fn paper() -> Self {
        DrpoOptions {
            statistics: Statistics::Step,
            domain_mean: DomainMean::Plain,
            kl_damping: KlDamping::Paper,
            ..Self::default()
        }
    }

    fn check(&self) -> Result<(), AdvantageError> {
        let bad = |m: &str| Err(AdvantageError::BadOption(m.to_owned()));
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("eps must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.kl_quantile) {
            return bad("kl_quantile must be in [0, 1]");
        }
        if self.k_max == 0 {
            return bad("k_max must be at least 1");
        }
        if !self.elbow_tol.is_finite() {
            return bad("elbow_tol must be finite");
        }
        Ok(())
    }
}

/// What the run remembers between steps when statistics are accumulated (`Statistics::Run`):
/// every question's reward vector, per domain. Keep one per training run.
#[derive(Clone, Debug, Default)]
pub struct DrpoState {
    group_size: Option<usize>,
    domains: BTreeMap<String, Vec<f64>>,
    steps: u64,
}

impl DrpoState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Questions remembered for a domain (N_d before the next step).
    pub fn questions(&self, domain: &str) -> usize {
        match (self.domains.get(domain), self.group_size) {
            (Some(v), Some(g)) => v.len() / g,
            _ => 0,
        }
    }

    /// Steps computed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

/// Domain statistics used for one step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DomainReport {
    /// Number of clusters (1 for `ClusterMode::Single` and `Off`).
    pub k: usize,
    /// N_d: questions the statistics saw.
    pub questions: usize,
    /// mu_d.
    pub mean: f64,
    /// T_d = max(sqrt(N_d) mu_d, eps).
    pub temperature: f64,
    pub cluster_sizes: Vec<usize>,
    pub cluster_means: Vec<f64>,
}

/// Advantages of one step, one per rollout, groups in input order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Advantages {
    /// `(groups, G)` row-major.
    pub values: Vec<f64>,
    pub group_size: usize,
    /// Per domain of this step (empty for GRPO).
    pub domains: BTreeMap<String, DomainReport>,
}

impl Advantages {
    /// The advantages of group `i`'s rollouts.
    pub fn group(&self, i: usize) -> Option<&[f64]> {
        self.values
            .get(i * self.group_size..(i + 1) * self.group_size)
    }

    /// The advantages grouped per question.
    pub fn rows(&self) -> impl Iterator<Item = &[f64]> {
        self.values.chunks(self.group_size.max(1))
    }

    /// k per domain.
    pub fn clusters(&self) -> BTreeMap<String, usize> {
        self.domains.iter().map(|(d, r)| (d.clone(), r.k)).collect()
    }
}

fn validate(
    groups: &[Group<'_>],
    options: &DrpoOptions,
    state: &DrpoState,
) -> Result<usize, AdvantageError> {
    options.check()?;
    let first = groups.first().ok_or(AdvantageError::NoGroups)?;
    let g = if options.method == Method::Drpo && options.statistics == Statistics::Run {
        state.group_size.unwrap_or(first.rewards.len())
    } else {
        first.rewards.len()
    };
    for group in groups {
        let len = group.rewards.len();
        if len < 2 {
            return Err(AdvantageError::TooFewRollouts {
                id: group.id.to_owned(),
                len,
            });
        }
        if len != g {
            return Err(AdvantageError::RaggedGroups {
                id: group.id.to_owned(),
                len,
                expected: g,
            });
        }
        if let Some(&value) = group.rewards.iter().find(|r| !r.is_finite()) {
            return Err(AdvantageError::NonFiniteReward {
                id: group.id.to_owned(),
                value,
            });
        }
        if options.method == Method::Drpo && options.kl_damping != KlDamping::Off {
            let kl = group.kl.unwrap_or(&[]);
            if kl.len() != len {
                return Err(AdvantageError::MissingKl {
                    id: group.id.to_owned(),
                    got: kl.len(),
                    expected: len,
                });
            }
            if let Some(&value) = kl.iter().find(|k| !k.is_finite()) {
                return Err(AdvantageError::NonFiniteKl {
                    id: group.id.to_owned(),
                    value,
                });
            }
        }
    }
    Ok(g)
}

/// GRPO scores s = (r - mean) / (std + eps) per group, `(groups, G)` row-major.
pub fn grpo_scores(groups: &[Group<'_>], eps: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(groups.iter().map(|g| g.rewards.len()).sum());
    for group in groups {
        let m = mean(group.rewards);
        let s = std_unbiased(group.rewards);
        out.extend(group.rewards.iter().map(|r| (r - m) / (s + eps)));
    }
    out
}

/// Advantages for one step. With `Statistics::Run` the step's reward vectors are added to
/// `state` (and only if the step succeeds); `Statistics::Step` leaves the history untouched.
pub fn advantages(
    state: &mut DrpoState,
    groups: &[Group<'_>],
    options: &DrpoOptions,
) -> Result<Advantages, AdvantageError> {
    let g = validate(groups, options, state)?;
    let mut values = grpo_scores(groups, options.eps);
    if options.method == Method::Grpo {
        state.steps += 1;
        return Ok(Advantages {
            values,
            group_size: g,
            domains: BTreeMap::new(),
        });
    }

    // The step's groups per domain, in input order.
    let mut by_domain: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, group) in groups.iter().enumerate() {
        by_domain.entry(group.domain).or_default().push(i);
    }

    let mut step_vectors: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (&domain, members) in &by_domain {
        let v = step_vectors.entry(domain).or_default();
        for &i in members {
            v.extend_from_slice(groups[i].rewards);
        }
    }

    // Accumulated statistics: this step's vectors go after the history (question j of this step is
    // row offset + j); they are taken back out if the step fails.
    let accumulate = options.statistics == Statistics::Run;
    let mut previous_len: BTreeMap<&str, usize> = BTreeMap::new();
    if accumulate {
        for (&domain, v) in &step_vectors {
            let history = state.domains.entry(domain.to_owned()).or_default();
            previous_len.insert(domain, history.len());
            history.extend_from_slice(v);
        }
    }

    let mut domains = BTreeMap::new();
    let mut scale = vec![1.0; groups.len()];
    for (&domain, members) in &by_domain {
        let (vectors, offset) = match state.domains.get(domain) {
            Some(history) if accumulate => (history.as_slice(), previous_len[domain] / g),
            _ => (step_vectors[domain].as_slice(), 0),
        };
        let (report, cluster_of) = domain_statistics(vectors, g, options);
        for (j, &i) in members.iter().enumerate() {
            let t_c = match options.clusters {
                ClusterMode::Off => 1.0,
                _ => {
                    let c = cluster_of[offset + j];
                    let t = (report.cluster_sizes[c] as f64).sqrt() * report.cluster_means[c];
                    if options.floor_cluster_temperature {
                        t.max(options.eps)
                    } else {
                        t
                    }
                }
            };
            scale[i] = report.temperature * t_c;
        }
        domains.insert(domain.to_owned(), report);
    }
    for (i, row) in values.chunks_mut(g).enumerate() {
        for v in row {
            *v /= scale[i];
        }
    }

    if options.kl_damping != KlDamping::Off {
        let magnitude = options.kl_damping == KlDamping::Magnitude;
        let kl = groups
            .iter()
            .flat_map(|group| group.kl.unwrap_or(&[]).iter().copied());
        let z: Vec<f64> = values
            .iter()
            .zip(kl)
            .map(|(s, k)| if magnitude { s.abs() * k } else { s * k })
            .collect();
        let t = quantile(&z, options.kl_quantile).max(options.eps);
        for (v, z) in values.iter_mut().zip(&z) {
            *v *= t / (t + z.max(0.0));
        }
    }

    if options.renormalise {
        let s = std_unbiased(&values);
        for v in &mut values {
            *v /= s + options.eps;
        }
    }

    if values.iter().any(|v| !v.is_finite()) {
        for (domain, len) in previous_len {
            if let Some(history) = state.domains.get_mut(domain) {
                history.truncate(len);
            }
        }
        state.domains.retain(|_, v| !v.is_empty());
        return Err(AdvantageError::NonFinite);
    }
    if accumulate {
        state.group_size = Some(g);
    }
    state.steps += 1;
    Ok(Advantages {
        values,
        group_size: g,
        domains,
    })
}

/// K-means (per the options) over one domain's vectors; the report and each row's cluster.
fn domain_statistics(
    vectors: &[f64],
    g: usize,
    options: &DrpoOptions,
) -> (DomainReport, Vec<usize>) {
    let n = vectors.len() / g;
    let (k, labels, sizes) = match options.clusters {
        ClusterMode::Elbow => {
            let (fit, _) = kmeans::elbow_k(
                vectors,
                g,
                options.k_max,
                options.elbow_tol,
                options.seed,
                options.kmeans_restarts,
            );
            (fit.k, fit.labels, fit.sizes)
        }
        ClusterMode::Single | ClusterMode::Off => (1, vec![0; n], vec![n]),
    };
    // Centroid means from the members (equal to the converged centroids' means).
    let mut sums = vec![0.0; k];
    for (row, &c) in vectors.chunks(g).zip(&labels) {
        sums[c] += row.iter().sum::<f64>();
    }
    let cluster_means: Vec<f64> = sums
        .iter()
        .zip(&sizes)
        .map(|(s, &n)| if n > 0 { s / (n * g) as f64 } else { 0.0 })
        .collect();
    let mu = match options.domain_mean {
        DomainMean::Plain => mean(vectors),
        DomainMean::ClusterWeighted => {
            let (num, den) = cluster_means
                .iter()
                .zip(&sizes)
                .filter(|(_, n)| **n > 0)
                .fold((0.0, 0.0), |(a, b), (m, &n)| {
                    (a + m / n as f64, b + 1.0 / n as f64)
                });
            num / den
        }
    };
    let temperature = ((n as f64).sqrt() * mu).max(options.eps);
    let report = DomainReport {
        k,
        questions: n,
        mean: mu,
        temperature,
        cluster_sizes: sizes,
        cluster_means,
    };
    (report, labels)
}

#[cfg(test)]
mod tests;
