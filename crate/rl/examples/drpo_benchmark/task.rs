//! The synthetic task: long-tailed, multi-domain, multi-label classification.
//!
//! Six domains with 100:1 between the largest and the smallest training pool; each domain has
//! four labels of its own with a skewed label prior, and a difficulty (how far the label
//! prototypes stand out of the noise). A question is a feature vector: the domain's offset plus
//! the prototypes of its true labels (one, or two with probability 0.25) times the domain's signal
//! plus Gaussian noise. All domains share one feature space, so they compete for one policy.

use crate::rng::Rng;

pub const FEATURES: usize = 24;
pub const LABELS_PER_DOMAIN: usize = 4;
const SECOND_LABEL: f64 = 0.25;
const LABEL_PRIOR: [f64; LABELS_PER_DOMAIN] = [0.55, 0.25, 0.15, 0.05];

pub struct DomainSpec {
    pub name: &'static str,
    pub train: usize,
    /// Prototype scale: larger is easier.
    pub signal: f64,
}

/// 100:1 between the head and the tail; difficulty not aligned with size.
pub const DOMAINS: [DomainSpec; 6] = [
    DomainSpec {
        name: "cxr",
        train: 2000,
        signal: 1.0,
    },
    DomainSpec {
        name: "derm",
        train: 800,
        signal: 0.6,
    },
    DomainSpec {
        name: "fundus",
        train: 320,
        signal: 1.2,
    },
    DomainSpec {
        name: "ct",
        train: 128,
        signal: 0.5,
    },
    DomainSpec {
        name: "mri",
        train: 50,
        signal: 0.9,
    },
    DomainSpec {
        name: "ecg",
        train: 20,
        signal: 0.7,
    },
];

/// Test questions per domain (the same for every domain, so every domain is measured equally).
pub const TEST_PER_DOMAIN: usize = 300;

#[derive(Clone)]
pub struct Question {
    pub domain: usize,
    pub features: [f64; FEATURES],
    /// Global label ids (domain * LABELS_PER_DOMAIN + local).
    pub labels: Vec<usize>,
}

pub struct Task {
    pub train: Vec<Question>,
    pub test: Vec<Question>,
}

struct Generator {
    offsets: Vec<[f64; FEATURES]>,
    prototypes: Vec<[f64; FEATURES]>,
}

impl Generator {
    fn new(rng: &mut Rng) -> Self {
        let vec = |rng: &mut Rng, scale: f64| {
            let mut v = [0.0; FEATURES];
            for x in &mut v {
                *x = rng.normal() * scale;
            }
            v
        };
        let offsets = (0..DOMAINS.len()).map(|_| vec(rng, 0.5)).collect();
        let prototypes = (0..DOMAINS.len() * LABELS_PER_DOMAIN)
            .map(|_| vec(rng, 1.0))
            .collect();
        Generator {
            offsets,
            prototypes,
        }
    }

    fn question(&self, rng: &mut Rng, domain: usize) -> Question {
        let first = rng.categorical(&LABEL_PRIOR);
        let mut local = vec![first];
        if rng.uniform() < SECOND_LABEL {
            let second = rng.categorical(&LABEL_PRIOR);
            if second != first {
                local.push(second);
            }
        }
        let signal = DOMAINS[domain].signal;
        let mut features = self.offsets[domain];
        for x in &mut features {
            *x += rng.normal();
        }
        let labels: Vec<usize> = local
            .iter()
            .map(|l| domain * LABELS_PER_DOMAIN + l)
            .collect();
        for &l in &labels {
            for (x, p) in features.iter_mut().zip(&self.prototypes[l]) {
                *x += signal * p;
            }
        }
        Question {
            domain,
            features,
            labels,
        }
    }
}

impl Task {
    pub fn generate(rng: &mut Rng) -> Self {
        let generator = Generator::new(rng);
        let mut train = Vec::new();
        let mut test = Vec::new();
        for (d, spec) in DOMAINS.iter().enumerate() {
            train.extend((0..spec.train).map(|_| generator.question(rng, d)));
            test.extend((0..TEST_PER_DOMAIN).map(|_| generator.question(rng, d)));
        }
        Task { train, test }
    }
}
