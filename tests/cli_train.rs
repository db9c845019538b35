//! `qoqmed train` and `qoqmed export` end to end on the tiny fixture model and the committed toy
//! dataset (tests/fixtures/train): the mean reward rises by an asserted margin, the export loads
//! and generates in `qoqmed generate`, a run killed mid-step resumes bit-for-bit (every
//! non-timing metric of every step and the adapter weights equal an uninterrupted run's), and
//! bad input fails with a message naming the line or key. Needs `--features train`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qoqmed-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn qoqmed() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qoqmed"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run qoqmed");
    if !out.status.success() {
        panic!(
            "{cmd:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// The committed toy config with absolute paths, `steps` and the run folder replaced.
fn config(dir: &Path, out: &Path, steps: u64, data: Option<&Path>) -> PathBuf {
    let text = std::fs::read_to_string(fixtures().join("train/toy.toml")).unwrap();
    let data = data.map_or(fixtures().join("train/toy.jsonl"), Path::to_path_buf);
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            match key {
                "model" => format!("model = {:?}", fixtures().join("models/tiny-small-vocab")),
                "data" => format!("data = {data:?}"),
                "out" => format!("out = {out:?}"),
                "steps" => format!("steps = {steps}"),
                _ => l.to_string(),
            }
        })
        .collect();
    lines.push(String::new());
    let path = dir.join("run.toml");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// metrics.csv as (header, rows).
fn metrics(out: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn column(header: &[String], rows: &[Vec<String>], name: &str) -> Vec<f64> {
    let i = header.iter().position(|h| h == name).unwrap();
    rows.iter().map(|r| r[i].parse().unwrap()).collect()
}

const STEPS: u64 = 30;

/// The uninterrupted reference run, trained once for every test that needs it.
fn reference_run() -> &'static PathBuf {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = scratch("reference");
        let out = dir.join("run");
        let cfg = config(&dir, &out, STEPS, None);
        let t = Instant::now();
        run(qoqmed().arg("train").arg("--config").arg(&cfg));
        eprintln!(
            "toy run: {STEPS} steps in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        out
    })
}

#[test]
fn drpo_raises_the_mean_reward_on_the_toy_set() {
    let out = reference_run();
    let (header, rows) = metrics(out);
    assert_eq!(rows.len(), STEPS as usize, "one metrics row per step");
    for col in ["step", "reward_mean", "kl", "loss"] {
        assert!(header.iter().any(|h| h == col), "metrics.csv lacks `{col}`");
    }
    let reward = column(&header, &rows, "reward_mean");
    let first: f64 = reward[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = reward[reward.len() - 5..].iter().sum::<f64>() / 5.0;
    eprintln!("mean reward: first 5 steps {first:.4}, last 5 steps {last:.4}");
    // The toy reward is answer length only, and 24 new tokens cap it near 0.144 (the run levels
    // off there from about step 17), while the first steps average about 0.105: the original
    // margin of 1.5x was above that ceiling. The margin asks for most of the headroom instead:
    // at least 1.25x and 0.02 (20 more characters per answer) over the first five steps.
    assert!(
        last >= 1.25 * first && last - first >= 0.02,
        "reward did not rise: first 5 steps {first}, last 5 steps {last}"
    );
    for d in ["reward_ptbxl", "reward_mimic_cxr", "reward_isic2020"] {
        assert!(header.iter().any(|h| h == d), "no per-domain column {d}");
    }
    let kl = column(&header, &rows, "kl");
    assert!(
        kl[0].abs() < 1e-6,
        "the first step starts at the reference: kl {}",
        kl[0]
    );
    assert!(kl.iter().all(|k| k.is_finite() && *k >= 0.0));
}

#[test]
fn export_loads_and_generates() {
    let out = reference_run();
    let dir = scratch("export");
    let model = dir.join("model");
    run(qoqmed()
        .args(["export", "--run"])
        .arg(out)
        .arg("--out")
        .arg(&model));
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "qoqmed_training.json",
    ] {
        assert!(model.join(f).is_file(), "export lacks {f}");
    }
    // The trained language model differs from the base; the frozen vision tower does not.
    let base = std::fs::read(fixtures().join("models/tiny-small-vocab/model.safetensors")).unwrap();
    let new = std::fs::read(model.join("model.safetensors")).unwrap();
    let (base, new) = (
        safetensors::SafeTensors::deserialize(&base).unwrap(),
        safetensors::SafeTensors::deserialize(&new).unwrap(),
    );
    let mut names = base.names();
    names.sort();
    let mut new_names = new.names();
    new_names.sort();
    assert_eq!(names, new_names, "the export keeps the base's tensor names");
    let same = |n: &str| base.tensor(n).unwrap().data() == new.tensor(n).unwrap().data();
    assert!(
        !same("model.layers.0.self_attn.q_proj.weight"),
        "q_proj unchanged by training"
    );
    assert!(
        same("model.embed_tokens.weight"),
        "LoRA must not touch the embedding"
    );
    assert!(
        same("visual.blocks.0.attn.qkv.weight"),
        "the vision tower is frozen"
    );
    assert_eq!(
        new.tensor("model.layers.0.self_attn.q_proj.weight")
            .unwrap()
            .dtype(),
        safetensors::Dtype::BF16,
        "exported in the base dtype"
    );

    let generated = run(qoqmed().args(["generate", "--model"]).arg(&model).args([
        "--prompt",
        "What does this ECG show?",
        "--max-new-tokens",
        "8",
        "--temperature",
        "0",
        "--json",
    ]));
    let text = String::from_utf8(generated.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(
        json["token_ids"].as_array().is_some_and(|t| !t.is_empty()),
        "{json}"
    );
}

#[test]
fn a_killed_run_resumes_bit_for_bit() {
    let dir = scratch("resume");
    let out = dir.join("run");
    let steps = 20;
    let cfg = config(&dir, &out, steps, None);
    // Kill (SIGKILL, no cleanup) while step 13 is under way: steps 11-13 are lost or half-logged.
    let mut child = qoqmed()
        .arg("train")
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let rows = std::fs::read_to_string(out.join("metrics.csv"))
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0);
        if rows >= 12 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "the run is too slow"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();
    let latest = std::fs::read_to_string(out.join("checkpoints/latest")).unwrap();
    assert!(
        ["step-000010", "step-000015"].contains(&latest.trim()),
        "killed after step 12: the newest checkpoint is {latest}"
    );

    // Without --resume the folder is refused; with it the run continues from step 10.
    let again = qoqmed()
        .arg("train")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    run(qoqmed()
        .arg("train")
        .arg("--config")
        .arg(&cfg)
        .arg("--resume"));

    let reference = reference_run();
    let (header, rows) = metrics(&out);
    let (ref_header, ref_rows) = metrics(reference);
    assert_eq!(header, ref_header);
    assert_eq!(
        rows.len(),
        steps as usize,
        "one row per step after the resume"
    );
    let timing = qoqmed_timing_columns();
    for (r, (a, b)) in rows.iter().zip(&ref_rows).enumerate() {
        for (k, name) in header.iter().enumerate() {
            if !timing.contains(&name.as_str()) {
                assert_eq!(
                    a[k],
                    b[k],
                    "step {}: `{name}` differs after the resume",
                    r + 1
                );
            }
        }
    }
    let adapter = |run: &Path| {
        std::fs::read(run.join("checkpoints/step-000020/adapter_model.safetensors")).unwrap()
    };
    assert!(
        adapter(&out) == adapter(reference),
        "the resumed run's adapter differs from the uninterrupted run's at step 20"
    );
}

fn qoqmed_timing_columns() -> [&'static str; 6] {
    qoqmed_train::metrics::TIMING_COLUMNS
}

fn expect_failure(cmd: &mut Command, needles: &[&str]) {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{cmd:?} succeeded");
    for n in needles {
        assert!(err.contains(n), "error lacks `{n}`:\n{err}");
    }
}

#[test]
fn bad_input_names_the_line_or_key() {
    let dir = scratch("bad");
    let out = dir.join("run");
    // A jsonl line without `answer`.
    let data = dir.join("no_answer.jsonl");
    std::fs::write(
        &data,
        "{\"problem\": \"Q?\", \"answer\": \"A\"}\n{\"problem\": \"What is it?\", \"dataset\": \"x\"}\n",
    )
    .unwrap();
    let cfg = config(&dir, &out, 2, Some(&data));
    expect_failure(
        qoqmed().arg("train").arg("--config").arg(&cfg),
        &["line 2", "`answer`"],
    );
    // An image path that does not exist.
    let data = dir.join("missing_image.jsonl");
    std::fs::write(
        &data,
        "{\"problem\": \"<image> What is it?\", \"answer\": \"A\", \"images\": [\"cxr/mimic/no_such.png\"]}\n",
    )
    .unwrap();
    let cfg = config(&dir, &dir.join("run2"), 2, Some(&data));
    expect_failure(
        qoqmed().arg("train").arg("--config").arg(&cfg),
        &["line 1", "cxr/mimic/no_such.png", "does not exist"],
    );
    // An unknown config key.
    let cfg = config(&dir, &dir.join("run3"), 2, None);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replacen("steps = 2", "steps = 2\nlerning_rate = 0.1", 1);
    std::fs::write(&cfg, text).unwrap();
    expect_failure(
        qoqmed().arg("train").arg("--config").arg(&cfg),
        &["lerning_rate"],
    );
    // Export of a folder that is not a run.
    expect_failure(
        qoqmed()
            .args(["export", "--run"])
            .arg(&dir)
            .arg("--out")
            .arg(dir.join("m")),
        &["not a training run folder"],
    );
}
