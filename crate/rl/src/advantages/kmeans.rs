//! K-means with seeded greedy k-means++ initialisation (as scikit-learn's `KMeans(init="k-means++")`)
//! and the elbow rule of the released DRPO code.
//!
//! Identical vectors are merged into one weighted point first: the sampling weights of k-means++
//! and the Lloyd updates are then exactly those over the duplicated points, and the reward
//! vectors of a domain repeat a lot (rewards take few distinct values), so this is much faster.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A K-means fit over `n` points of dimension `dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct KMeansFit {
    pub k: usize,
    /// Cluster of each input point, in input order.
    pub labels: Vec<usize>,
    /// `(k, dim)` row-major.
    pub centroids: Vec<f64>,
    /// Points per cluster.
    pub sizes: Vec<usize>,
    /// Sum of squared distances of the points to their centroid.
    pub inertia: f64,
}

const MAX_ITER: usize = 300;

/// Identical rows merged: the unique rows, their multiplicities, and each input row's unique index.
struct Unique {
    rows: Vec<f64>,
    weights: Vec<f64>,
    index: Vec<usize>,
}

fn unique_rows(points: &[f64], dim: usize) -> Unique {
    let n = points.len() / dim;
    let keys: Vec<Vec<u64>> = points
        .chunks(dim)
        .map(|row| row.iter().map(|v| (v + 0.0).to_bits()).collect())
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    let mut rows = Vec::new();
    let mut weights: Vec<f64> = Vec::new();
    let mut index = vec![0; n];
    let mut last: Option<usize> = None;
    for i in order {
        if last.is_none_or(|l| keys[l] != keys[i]) {
            rows.extend_from_slice(&points[i * dim..(i + 1) * dim]);
            weights.push(0.0);
            last = Some(i);
        }
        let u = weights.len() - 1;
        weights[u] += 1.0;
        index[i] = u;
    }
    Unique {
        rows,
        weights,
        index,
    }
}

/// Number of distinct rows (`len(np.unique(points, axis=0))`).
pub fn distinct_rows(points: &[f64], dim: usize) -> usize {
    if dim == 0 {
        0
    } else {
        unique_rows(points, dim).weights.len()
    }
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Index drawn with probability proportional to `weights` (the last positive one on round-off).
fn draw(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let target = uniform(rng) * total;
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            acc += w;
            last = i;
            if acc > target {
                return i;
            }
        }
    }
    last
}

/// Greedy k-means++: each new centre is the best of `2 + ln k` candidates drawn by D^2 weight.
fn init_plus_plus(
    rows: &[f64],
    weights: &[f64],
    dim: usize,
    k: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<f64> {
    let n = weights.len();
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut centres = Vec::with_capacity(k * dim);
    let first = draw(rng, weights);
    centres.extend_from_slice(&rows[first * dim..(first + 1) * dim]);
    let mut closest: Vec<f64> = (0..n)
        .map(|i| sq_dist(&rows[i * dim..(i + 1) * dim], &centres[..dim]))
        .collect();
    for _ in 1..k {
        let potential: Vec<f64> = closest.iter().zip(weights).map(|(d, w)| d * w).collect();
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..trials {
            let cand = draw(rng, &potential);
            let c = &rows[cand * dim..(cand + 1) * dim];
            let updated: Vec<f64> = (0..n)
                .map(|i| closest[i].min(sq_dist(&rows[i * dim..(i + 1) * dim], c)))
                .collect();
            let pot: f64 = updated.iter().zip(weights).map(|(d, w)| d * w).sum();
            if best.as_ref().is_none_or(|(b, _, _)| pot < *b) {
                best = Some((pot, cand, updated));
            }
        }
        if let Some((_, cand, updated)) = best {
            centres.extend_from_slice(&rows[cand * dim..(cand + 1) * dim]);
            closest = updated;
        }
    }
    centres
}

fn assign(rows: &[f64], dim: usize, centres: &[f64], k: usize, labels: &mut [usize]) -> bool {
    let mut changed = false;
    for (i, label) in labels.iter_mut().enumerate() {
        let p = &rows[i * dim..(i + 1) * dim];
        let mut best = (f64::INFINITY, 0);
        for c in 0..k {
            let d = sq_dist(p, &centres[c * dim..(c + 1) * dim]);
            if d < best.0 {
                best = (d, c);
            }
        }
        if *label != best.1 {
            *label = best.1;
            changed = true;
        }
    }
    changed
}

/// One seeded K-means run on weighted unique rows.
fn lloyd(
    rows: &[f64],
    weights: &[f64],
    dim: usize,
    k: usize,
    rng: &mut ChaCha8Rng,
) -> (Vec<f64>, Vec<usize>, f64) {
    let n = weights.len();
    let mut centres = init_plus_plus(rows, weights, dim, k, rng);
    let mut labels = vec![usize::MAX; n];
    for _ in 0..MAX_ITER {
        if !assign(rows, dim, &centres, k, &mut labels) {
            break;
        }
        let mut sums = vec![0.0; k * dim];
        let mut mass = vec![0.0; k];
        for i in 0..n {
            let c = labels[i];
            mass[c] += weights[i];
            for d in 0..dim {
                sums[c * dim + d] += weights[i] * rows[i * dim + d];
            }
        }
        for c in 0..k {
            if mass[c] > 0.0 {
                for d in 0..dim {
                    centres[c * dim + d] = sums[c * dim + d] / mass[c];
                }
            } else {
                // An empty cluster takes the point farthest from its centre (as scikit-learn).
                let far = (0..n)
                    .max_by(|&a, &b| {
                        let da = sq_dist(
                            &rows[a * dim..(a + 1) * dim],
                            &centres[labels[a] * dim..(labels[a] + 1) * dim],
                        );
                        let db = sq_dist(
                            &rows[b * dim..(b + 1) * dim],
                            &centres[labels[b] * dim..(labels[b] + 1) * dim],
                        );
                        da.total_cmp(&db)
                    })
                    .unwrap_or(0);
                for d in 0..dim {
                    centres[c * dim + d] = rows[far * dim + d];
                }
            }
        }
    }
    let inertia = (0..n)
        .map(|i| {
            weights[i]
                * sq_dist(
                    &rows[i * dim..(i + 1) * dim],
                    &centres[labels[i] * dim..(labels[i] + 1) * dim],
                )
        })
        .sum();
    (centres, labels, inertia)
}

/// K-means of `points` (`(n, dim)` row-major) into `k` clusters, `restarts` seeded runs, best kept.
/// `k` must be between 1 and the number of distinct rows.
pub fn kmeans(points: &[f64], dim: usize, k: usize, seed: u64, restarts: usize) -> KMeansFit {
    let unique = unique_rows(points, dim);
    fit_unique(&unique, dim, k, seed, restarts)
}

fn fit_unique(unique: &Unique, dim: usize, k: usize, seed: u64, restarts: usize) -> KMeansFit {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut best: Option<(Vec<f64>, Vec<usize>, f64)> = None;
    for _ in 0..restarts.max(1) {
        let run = lloyd(&unique.rows, &unique.weights, dim, k, &mut rng);
        if best.as_ref().is_none_or(|b| run.2 < b.2) {
            best = Some(run);
        }
    }
    let (centroids, unique_labels, inertia) = best.unwrap_or_default();
    let labels: Vec<usize> = unique.index.iter().map(|&u| unique_labels[u]).collect();
    let mut sizes = vec![0; k];
    for &l in &labels {
        sizes[l] += 1;
    }
    KMeansFit {
        k,
        labels,
        centroids,
        sizes,
        inertia,
    }
}

/// The elbow rule of the released code: inertias `I_k` for k = 1..=k_cap (k_cap = min(k_max,
/// distinct rows)); with drop_k = I_{k-1} - I_k, k is the first k >= 2 with drop_{k+1} < tol *
/// drop_k, else k_cap. Returns the fit at that k and the inertias.
pub fn elbow_k(
    points: &[f64],
    dim: usize,
    k_max: usize,
    tol: f64,
    seed: u64,
    restarts: usize,
) -> (KMeansFit, Vec<f64>) {
    let unique = unique_rows(points, dim);
    let k_cap = k_max.min(unique.weights.len()).max(1);
    let fits: Vec<KMeansFit> = (1..=k_cap)
        .map(|k| fit_unique(&unique, dim, k, seed, restarts))
        .collect();
    let inertias: Vec<f64> = fits.iter().map(|f| f.inertia).collect();
    let drops: Vec<f64> = inertias.windows(2).map(|w| w[0] - w[1]).collect();
    let chosen = (1..drops.len())
        .find(|&i| drops[i] < tol * drops[i - 1])
        .map_or(k_cap, |i| i + 1);
    let fit = fits
        .into_iter()
        .nth(chosen - 1)
        .unwrap_or_else(|| fit_unique(&unique, dim, 1, seed, restarts));
    (fit, inertias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_obvious_clusters() {
        let points = [
            0.0, 0.0, 0.1, 0.0, 0.0, 0.1, 5.0, 5.0, 5.1, 5.0, 10.0, 0.0, 10.0, 0.1,
        ];
        let (fit, inertias) = elbow_k(&points, 2, 10, 0.1, 0, 1);
        assert_eq!(fit.k, 3, "inertias {inertias:?}");
        assert_eq!(fit.labels[0], fit.labels[1]);
        assert_eq!(fit.labels[3], fit.labels[4]);
        assert_ne!(fit.labels[0], fit.labels[3]);
        assert_ne!(fit.labels[5], fit.labels[3]);
        let mut sizes = fit.sizes.clone();
        sizes.sort();
        assert_eq!(sizes, vec![2, 2, 3]);
    }

    #[test]
    fn duplicates_count_and_cap_k() {
        let points = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0];
        assert_eq!(distinct_rows(&points, 2), 2);
        let (fit, _) = elbow_k(&points, 2, 10, 0.1, 0, 1);
        // Two distinct vectors: the released rule always keeps k_cap = 2.
        assert_eq!(fit.k, 2);
        assert_eq!(fit.labels[0], fit.labels[1]);
        let one = kmeans(&points, 2, 1, 0, 1);
        assert!((one.inertia - 4.0 / 3.0).abs() < 1e-12);
        let (single, inertias) = elbow_k(&[3.0, 3.0], 2, 10, 0.1, 0, 1);
        assert_eq!((single.k, inertias.len()), (1, 1));
    }

    #[test]
    fn seeded_runs_repeat() {
        let points: Vec<f64> = (0..60).map(|i| ((i * 37) % 11) as f64 / 10.0).collect();
        assert_eq!(kmeans(&points, 3, 4, 7, 2), kmeans(&points, 3, 4, 7, 2));
    }
}
