//! Hand-checked properties; numeric parity with the numpy reference lives in tests/drpo_parity.rs.

use super::*;

fn group<'a>(id: &'a str, domain: &'a str, rewards: &'a [f64]) -> Group<'a> {
    Group {
        id,
        domain,
        rewards,
        kl: None,
    }
}

#[test]
fn grpo_matches_hand_computation() {
    let r = [1.0, 0.0, 0.0, 0.0, 0.0];
    let out = advantages(
        &mut DrpoState::new(),
        &[group("q", "d", &r)],
        &DrpoOptions::grpo(),
    )
    .expect("valid");
    // mean 0.2, unbiased std sqrt(0.2)
    let s = 0.2f64.sqrt() + 1e-6;
    assert!((out.values[0] - 0.8 / s).abs() < 1e-12);
    assert!((out.values[1] + 0.2 / s).abs() < 1e-12);
    assert!(out.domains.is_empty());
}

#[test]
fn cluster_temperature_scales_hard_questions_up() {
    // One domain, two distinct vectors: the released elbow rule keeps k = 2, one question each,
    // so the two groups differ only by T_c = mu_c (0.2 vs 0.8): a factor of 4.
    let hard = [1.0, 0.0, 0.0, 0.0, 0.0];
    let easy = [1.0, 1.0, 1.0, 1.0, 0.0];
    let groups = [group("a", "d", &hard), group("b", "d", &easy)];
    let out = advantages(&mut DrpoState::new(), &groups, &DrpoOptions::default()).expect("valid");
    assert_eq!(out.clusters()["d"], 2);
    let a = out.group(0).expect("group 0");
    let b = out.group(1).expect("group 1");
    assert!((a[0] / -b[4] - 4.0).abs() < 1e-9, "{a:?} {b:?}");
    // Renormalised: unbiased std over the batch is 1 (up to eps).
    assert!((stats::std_unbiased(&out.values) - 1.0).abs() < 1e-5);
    let report = &out.domains["d"];
    assert!((report.mean - 0.5).abs() < 1e-12);
    assert!((report.temperature - 2f64.sqrt() * 0.5).abs() < 1e-12);
}

#[test]
fn equal_rewards_and_zero_clusters_give_zeros_not_nan() {
    let zeros = [0.0; 5];
    let ones = [1.0; 5];
    let groups = [group("z", "d", &zeros), group("o", "d", &ones)];
    let out = advantages(&mut DrpoState::new(), &groups, &DrpoOptions::default()).expect("valid");
    assert!(out.values.iter().all(|v| *v == 0.0), "{:?}", out.values);
}

#[test]
fn missing_floor_reproduces_the_released_division_by_zero() {
    let zeros = [0.0; 5];
    let mixed = [1.0, 0.0, 1.0, 0.0, 0.0];
    let groups = [group("z", "d", &zeros), group("m", "d", &mixed)];
    let options = DrpoOptions {
        floor_cluster_temperature: false,
        ..DrpoOptions::default()
    };
    let mut state = DrpoState::new();
    assert_eq!(
        advantages(&mut state, &groups, &options),
        Err(AdvantageError::NonFinite)
    );
    // The failed step left no trace in the accumulated history.
    assert_eq!(state.questions("d"), 0);
    assert!(advantages(&mut state, &groups, &DrpoOptions::default()).is_ok());
    assert_eq!(state.questions("d"), 2);
}

#[test]
fn run_statistics_accumulate_and_step_statistics_do_not() {
    let r1 = [1.0, 0.0, 0.0, 0.0, 0.0];
    let r2 = [1.0, 1.0, 0.0, 0.0, 0.0];
    let groups = [group("a", "x", &r1), group("b", "y", &r2)];
    let mut state = DrpoState::new();
    advantages(&mut state, &groups, &DrpoOptions::default()).expect("step 1");
    let second = advantages(&mut state, &groups, &DrpoOptions::default()).expect("step 2");
    assert_eq!(state.questions("x"), 2);
    assert_eq!(second.domains["x"].questions, 2);
    assert_eq!(state.steps(), 2);
    let step = DrpoOptions {
        statistics: Statistics::Step,
        ..DrpoOptions::default()
    };
    let mut fresh = DrpoState::new();
    let out = advantages(&mut fresh, &groups, &step).expect("step");
    assert_eq!(out.domains["x"].questions, 1);
    assert_eq!(fresh.questions("x"), 0);
}

#[test]
fn kl_damping_only_shrinks_positive_z() {
    let r = [1.0, 0.0, 0.0, 0.0, 0.0];
    let kl = [4.0, 1.0, 1.0, 1.0, 1.0];
    let groups = [Group {
        id: "q",
        domain: "d",
        rewards: &r,
        kl: Some(&kl),
    }];
    let base = DrpoOptions {
        renormalise: false,
        ..DrpoOptions::default()
    };
    let damped = DrpoOptions {
        kl_damping: KlDamping::Paper,
        ..base
    };
    let plain = advantages(&mut DrpoState::new(), &groups, &base).expect("plain");
    let out = advantages(&mut DrpoState::new(), &groups, &damped).expect("damped");
    // z < 0 for the four zero-reward rollouts: untouched. z > 0 for the first: m = t / (t + z).
    for i in 1..5 {
        assert!((out.values[i] - plain.values[i]).abs() < 1e-12);
    }
    let z: Vec<f64> = plain.values.iter().zip(kl).map(|(s, k)| s * k).collect();
    let t = stats::quantile(&z, 0.75).max(1e-6);
    assert!((out.values[0] - plain.values[0] * t / (t + z[0])).abs() < 1e-9);
}

#[test]
fn bad_input_is_a_typed_error() {
    let mut state = DrpoState::new();
    let opts = DrpoOptions::default();
    assert_eq!(
        advantages(&mut state, &[], &opts),
        Err(AdvantageError::NoGroups)
    );
    let one = [1.0];
    assert!(matches!(
        advantages(&mut state, &[group("q", "d", &one)], &opts),
        Err(AdvantageError::TooFewRollouts { .. })
    ));
    let (a, b) = ([1.0, 0.0], [1.0, 0.0, 1.0]);
    let ragged = [group("a", "d", &a), group("b", "d", &b)];
    assert!(matches!(
        advantages(&mut state, &ragged, &opts),
        Err(AdvantageError::RaggedGroups { .. })
    ));
    let nan = [f64::NAN, 0.0];
    assert!(matches!(
        advantages(&mut state, &[group("n", "d", &nan)], &opts),
        Err(AdvantageError::NonFiniteReward { .. })
    ));
    let damped = DrpoOptions {
        kl_damping: KlDamping::Paper,
        ..opts
    };
    assert!(matches!(
        advantages(&mut state, &[group("k", "d", &a)], &damped),
        Err(AdvantageError::MissingKl { .. })
    ));
    let bad_eps = DrpoOptions { eps: 0.0, ..opts };
    assert!(matches!(
        advantages(&mut state, &[group("k", "d", &a)], &bad_eps),
        Err(AdvantageError::BadOption(_))
    ));
    // A later step of a run must keep G.
    advantages(&mut state, &[group("a", "d", &a)], &opts).expect("G = 2");
    assert!(matches!(
        advantages(&mut state, &[group("b", "d", &b)], &opts),
        Err(AdvantageError::RaggedGroups { .. })
    ));
}
