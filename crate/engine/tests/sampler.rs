//! The sampler against transformers' logits processors (tests/fixtures/sampler/reference.json,
//! written by tools/fixtures/sampler_reference.py) and against the statistics of softmax.

use qoqmed_engine::sampler::{Sampler, SamplingParams, argmax, log_softmax, softmax};

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/sampler/reference.json"
);

fn params(temperature: f32, top_k: usize, top_p: f32, repetition_penalty: f32) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k,
        top_p,
        repetition_penalty,
        seed: 7,
    }
}

#[test]
fn greedy_is_argmax_with_first_max_on_ties() {
    let mut sampler = Sampler::new(SamplingParams::default());
    assert!(!sampler.needs_logits());
    let mut logits = vec![0.5, 2.0, -1.0, 2.0, 1.9];
    assert_eq!(sampler.sample(&mut logits, &[]), 1);
    let mut logits = vec![-3.0, -2.0, -2.5];
    assert_eq!(sampler.sample(&mut logits, &[0, 2]), 1);
    assert_eq!(argmax(&[f32::NEG_INFINITY, -1e30, -1e30]), 1);
}

#[test]
fn needs_logits_unless_plain_greedy() {
    assert!(Sampler::new(params(0.0, 0, 1.0, 1.05)).needs_logits());
    assert!(Sampler::new(params(0.7, 0, 1.0, 1.0)).needs_logits());
    assert!(!Sampler::new(params(0.0, 5, 0.5, 1.0)).needs_logits());
}

#[test]
fn repetition_penalty_worked_example() {
    // Seen ids 0 (2.0 -> 2.0/1.25), 1 (-1.0 -> -1.0*1.25), 3 (-0.5 -> -0.625), each once even
    // when repeated; unseen ids unchanged; an id past the vocabulary is ignored.
    let mut sampler = Sampler::new(params(0.0, 0, 1.0, 1.25));
    let mut logits = vec![2.0, -1.0, 0.5, -0.5, 3.0, 0.0];
    let token = sampler.sample(&mut logits, &[0, 1, 1, 3, 3, 3, 99]);
    assert_eq!(logits, vec![1.6, -1.25, 0.5, -0.625, 3.0, 0.0]);
    assert_eq!(token, 4);
    // The penalty can change the greedy choice: 3.0 seen -> 2.4 < 2.5.
    let mut logits = vec![3.0, 2.5];
    assert_eq!(sampler.sample(&mut logits, &[0]), 1);
}

#[test]
fn processed_scores_match_transformers() {
    let text = std::fs::read_to_string(REFERENCE).expect("reference.json (run the script)");
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 9, "expected at least 9 reference cases");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let floats = |key: &str| -> Vec<f32> {
            case[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        };
        let mut logits = floats("logits");
        let history: Vec<u32> = case["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let p = params(
            case["temperature"].as_f64().unwrap() as f32,
            case["top_k"].as_u64().unwrap() as usize,
            case["top_p"].as_f64().unwrap() as f32,
            case["repetition_penalty"].as_f64().unwrap() as f32,
        );
        let expected: Vec<Option<f32>> = case["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().map(|x| x as f32))
            .collect();
        Sampler::new(p).process(&mut logits, &history);
        assert_eq!(logits.len(), expected.len(), "{name}");
        let mut worst = 0.0f32;
        for (i, (&got, want)) in logits.iter().zip(&expected).enumerate() {
            match want {
                None => assert_eq!(
                    got,
                    f32::NEG_INFINITY,
                    "{name}[{i}] should be removed, got {got}"
                ),
                Some(w) => {
                    assert!(
                        got.is_finite(),
                        "{name}[{i}] removed but transformers keeps {w}"
                    );
                    worst = worst.max((got - w).abs() / w.abs().max(1.0));
                }
            }
        }
        // Penalty and temperature are single f32 operations, as in torch: allow 1 ulp-ish.
        assert!(worst <= 1e-6, "{name}: max relative error {worst:e} > 1e-6");
        let kept = expected.iter().filter(|e| e.is_some()).count();
        // A sample from the processed scores is always one transformers could draw.
        let mut sampler = Sampler::new(p);
        for _ in 0..200 {
            let mut l = floats("logits");
            let t = sampler.sample(&mut l, &history) as usize;
            assert!(
                expected[t].is_some(),
                "{name}: drew removed token {t} ({kept} kept)"
            );
        }
    }
}

#[test]
fn same_seed_same_samples() {
    let logits: Vec<f32> = (0..64)
        .map(|i| ((i * 37 % 64) as f32 / 16.0).sin() * 2.0)
        .collect();
    let draw = |seed: u64| -> Vec<u32> {
        let mut s = Sampler::new(SamplingParams {
            seed,
            ..params(1.0, 0, 1.0, 1.0)
        });
        (0..50)
            .map(|_| s.sample(&mut logits.clone(), &[]))
            .collect()
    };
    assert_eq!(draw(42), draw(42));
    assert_ne!(
        draw(42),
        draw(43),
        "different seeds gave 50 identical draws"
    );
    let distinct = draw(42)
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(
        distinct > 5,
        "temperature 1 over 64 tokens drew only {distinct} distinct ids"
    );
}

/// Pearson's chi-square over 20k draws against softmax(logits / T). With 4 degrees of freedom
/// the 0.1% critical value is 18.47: a sampler that is off (wrong temperature, off-by-one in the
/// CDF, a biased uniform) exceeds it by far; a correct one passes with this fixed seed.
#[test]
fn temperature_draws_follow_softmax() {
    let logits = [1.0f32, 2.0, 0.5, -1.0, 1.5];
    let temperature = 0.8;
    let scaled: Vec<f32> = logits.iter().map(|l| l / temperature).collect();
    let probs = softmax(&scaled);
    let n = 20_000;
    let mut counts = [0usize; 5];
    let mut sampler = Sampler::new(SamplingParams {
        seed: 2024,
        ..params(temperature, 0, 1.0, 1.0)
    });
    for _ in 0..n {
        counts[sampler.sample(&mut logits.to_vec(), &[]) as usize] += 1;
    }
    let chi2: f64 = counts
        .iter()
        .zip(&probs)
        .map(|(&c, &p)| {
            let e = n as f64 * f64::from(p);
            (c as f64 - e).powi(2) / e
        })
        .sum();
    assert!(
        chi2 < 18.47,
        "chi-square {chi2:.2} >= 18.47: counts {counts:?}, probs {probs:?}"
    );
    // And it must differ from the distribution at temperature 1 (the statistic can fail).
    let plain = softmax(&logits);
    let chi2_wrong: f64 = counts
        .iter()
        .zip(&plain)
        .map(|(&c, &p)| (c as f64 - n as f64 * f64::from(p)).powi(2) / (n as f64 * f64::from(p)))
        .sum();
    assert!(
        chi2_wrong > 18.47,
        "draws cannot tell T=0.8 from T=1 (chi2 {chi2_wrong:.2})"
    );
}

#[test]
fn top_p_and_top_k_never_draw_removed_tokens() {
    // softmax([4, 3, 0, 0, 0]) = [0.70, 0.26, 0.013 x3]: top_p 0.9 keeps ids 0 and 1.
    let logits = [4.0f32, 3.0, 0.0, 0.0, 0.0];
    let mut sampler = Sampler::new(params(1.0, 0, 0.9, 1.0));
    let mut seen = [0usize; 5];
    for _ in 0..2000 {
        seen[sampler.sample(&mut logits.to_vec(), &[]) as usize] += 1;
    }
    assert_eq!(&seen[2..], &[0, 0, 0], "top_p kept the tail: {seen:?}");
    assert!(
        seen[1] > 300,
        "second token should be drawn ~27% of the time: {seen:?}"
    );
    let mut sampler = Sampler::new(params(1.0, 1, 1.0, 1.0));
    for _ in 0..100 {
        assert_eq!(sampler.sample(&mut logits.to_vec(), &[]), 0);
    }
}

#[test]
fn log_softmax_worked_example() {
    let out = log_softmax(&[0.0, 3f32.ln(), f32::NEG_INFINITY]);
    assert!((out[0] - 0.25f32.ln()).abs() < 1e-6, "{out:?}");
    assert!((out[1] - 0.75f32.ln()).abs() < 1e-6, "{out:?}");
    assert_eq!(out[2], f32::NEG_INFINITY);
    // Large logits do not overflow.
    let big = log_softmax(&[1000.0, 1000.0]);
    assert!((big[0] - 0.5f32.ln()).abs() < 1e-6, "{big:?}");
    let total: f32 = log_softmax(&[0.3, -2.0, 5.0, 1.0])
        .iter()
        .map(|x| x.exp())
        .sum();
    assert!((total - 1.0).abs() < 1e-6);
}

#[test]
fn invalid_params_are_rejected() {
    for (p, flag) in [
        (params(-1.0, 0, 1.0, 1.0), "--temperature"),
        (params(f32::NAN, 0, 1.0, 1.0), "--temperature"),
        (params(1.0, 0, 0.0, 1.0), "--top-p"),
        (params(1.0, 0, 1.5, 1.0), "--top-p"),
        (params(1.0, 0, 1.0, 0.0), "--repetition-penalty"),
    ] {
        let err = p
            .validate()
            .expect_err("invalid params accepted")
            .to_string();
        assert!(err.contains(flag), "{err}");
    }
    assert!(params(0.0, 0, 1.0, 1.0).validate().is_ok());
}

/// The full Qwen2.5-VL vocabulary with every processor on: every draw is among the top 50 scores
/// after the penalty. The time per step is printed for information only (speed is a benchmark's
/// business, not a test's).
#[test]
fn full_vocabulary_step() {
    let vocab = 152_064;
    let logits: Vec<f32> = (0..vocab).map(|i| (i as f32 * 0.618).sin() * 7.0).collect();
    let history: Vec<u32> = (0..2000).map(|i| (i * 7919 % vocab) as u32).collect();
    // Greedy processing applies only the penalty.
    let mut penalised = logits.clone();
    Sampler::new(params(0.0, 0, 1.0, 1.05)).process(&mut penalised, &history);
    assert_ne!(penalised, logits, "the history should touch some scores");
    let mut sorted = penalised.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let kth = sorted[49];
    let mut sampler = Sampler::new(SamplingParams {
        seed: 3,
        ..params(0.7, 50, 0.9, 1.05)
    });
    let steps = 50;
    let start = std::time::Instant::now();
    for _ in 0..steps {
        let t = sampler.sample(&mut logits.clone(), &history) as usize;
        assert!(
            penalised[t] >= kth,
            "drew {t} with score {} below the 50th {kth}",
            penalised[t]
        );
    }
    let per_step = start.elapsed() / steps;
    println!("sampler step over {vocab} logits (rp+T+top-k+top-p): {per_step:?}");
}
