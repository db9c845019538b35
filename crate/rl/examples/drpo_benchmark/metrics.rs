//! CLIMB-style metrics: per domain, one-vs-rest per label, balanced accuracy and F1 averaged over
//! the domain's labels; overall = mean over domains.

use crate::policy::Policy;
use crate::task::{DOMAINS, LABELS_PER_DOMAIN, Question};

pub struct Scores {
    /// Per domain (balanced accuracy, macro-F1).
    pub domains: Vec<(f64, f64)>,
}

impl Scores {
    pub fn overall(&self) -> (f64, f64) {
        let n = self.domains.len() as f64;
        (
            self.domains.iter().map(|d| d.0).sum::<f64>() / n,
            self.domains.iter().map(|d| d.1).sum::<f64>() / n,
        )
    }
}

/// Greedy answers (the most likely label) scored against the true label sets.
pub fn evaluate(policy: &Policy, test: &[Question]) -> Scores {
    let mut counts = vec![[[0usize; 4]; LABELS_PER_DOMAIN]; DOMAINS.len()]; // tp, fp, fn, tn
    for q in test {
        let fwd = policy.forward(&q.features, q.domain);
        let best = (0..LABELS_PER_DOMAIN)
            .max_by(|&a, &b| fwd.logp[a].total_cmp(&fwd.logp[b]))
            .unwrap_or(0);
        for (l, cell) in counts[q.domain].iter_mut().enumerate() {
            let truth = q.labels.contains(&(q.domain * LABELS_PER_DOMAIN + l));
            let pred = l == best;
            let slot = match (pred, truth) {
                (true, true) => 0,
                (true, false) => 1,
                (false, true) => 2,
                (false, false) => 3,
            };
            cell[slot] += 1;
        }
    }
    let domains = counts
        .iter()
        .map(|labels| {
            let mut ba = Vec::new();
            let mut f1 = Vec::new();
            for &[tp, fp, fneg, tn] in labels {
                let (tp, fp, fneg, tn) = (tp as f64, fp as f64, fneg as f64, tn as f64);
                if tp + fneg == 0.0 || fp + tn == 0.0 {
                    continue; // label absent or universal in this test set: BA undefined
                }
                ba.push(0.5 * (tp / (tp + fneg) + tn / (tn + fp)));
                f1.push(if tp > 0.0 {
                    2.0 * tp / (2.0 * tp + fp + fneg)
                } else {
                    0.0
                });
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            (mean(&ba), mean(&f1))
        })
        .collect();
    Scores { domains }
}
