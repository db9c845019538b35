//! Training data: jsonl in the CLIMB / QoQ-Med format, one question per line:
//! `{"problem": str, "answer": str, "images": [path], "time-series": [path], "videos": [path],
//!   "bbox": [x1, y1, x2, y2] | null, "segmentation_path": path | null, "dataset": str}`.
//! Paths are relative to the jsonl file. Every line is checked when the file is read, so a bad
//! line fails the run before the first step, with its line number.

use std::path::{Path, PathBuf};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::Value;

use crate::error::{Error, Result};

/// One training question.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// 1-based line in the jsonl file.
    pub line: usize,
    /// The `id` field when present, else `line N`.
    pub id: String,
    pub problem: String,
    /// Ground-truth label string (labels separated as the reward's F1 splits them).
    pub answer: String,
    pub images: Vec<PathBuf>,
    pub time_series: Vec<PathBuf>,
    pub videos: Vec<PathBuf>,
    pub bbox: Option<[f64; 4]>,
    pub segmentation: Option<PathBuf>,
    /// DRPO's domain key: `dataset`, else the second component of the first image path (as the
    /// released code derives it), else `default`.
    pub domain: String,
}

pub struct Dataset {
    pub file: PathBuf,
    pub examples: Vec<Example>,
}

impl Dataset {
    pub fn load(file: &Path) -> Result<Self> {
        let bytes = crate::error::read(file)?;
        let text = String::from_utf8(bytes).map_err(|e| Error::Data {
            file: file.into(),
            line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            message: "not UTF-8 text".into(),
        })?;
        let base = file.parent().unwrap_or(Path::new("."));
        let mut examples = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let line = i + 1;
            let example = parse_line(raw, line, base).map_err(|message| Error::Data {
                file: file.into(),
                line,
                message,
            })?;
            examples.push(example);
        }
        if examples.is_empty() {
            return Err(Error::Data {
                file: file.into(),
                line: 1,
                message: "the file holds no examples; write one JSON object per line".into(),
            });
        }
        Ok(Dataset {
            file: file.into(),
            examples,
        })
    }

    /// The example indices of step `step` (0-based): `per_step` consecutive entries of the
    /// sequence of epoch permutations (each epoch a seeded shuffle of all examples). A pure
    /// function of (seed, step), so a resumed run sees exactly the data order of an uninterrupted one.
    pub fn step_indices(&self, seed: u64, step: u64, per_step: usize) -> Vec<usize> {
        let n = self.examples.len();
        let start = step as u128 * per_step as u128;
        (0..per_step as u128)
            .map(|k| {
                let global = start + k;
                let epoch = (global / n as u128) as u64;
                let within = (global % n as u128) as usize;
                epoch_permutation(seed, epoch, n)[within]
            })
            .collect()
    }
}

/// Fisher-Yates shuffle of 0..n seeded by (seed, epoch).
fn epoch_permutation(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch + 1));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

fn parse_line(raw: &str, line: usize, base: &Path) -> Result<Example, String> {
    let value: Value = serde_json::from_str(raw).map_err(|e| format!("not a JSON object ({e})"))?;
    let Value::Object(obj) = value else {
        return Err(
            "not a JSON object; each line must be {\"problem\": ..., \"answer\": ...}".into(),
        );
    };
    let string = |key: &str| -> Result<Option<String>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("`{key}` must be a string, found {other}")),
        }
    };
    let problem = string("problem")?
        .filter(|s| !s.trim().is_empty())
        .ok_or("no `problem`; every line needs the question text")?;
    let answer = string("answer")?.filter(|s| !s.trim().is_empty()).ok_or(
        "no `answer`; every line needs its ground-truth label(s), e.g. \"answer\": \"Normal\"",
    )?;
    let paths = |key: &str| -> Result<Vec<PathBuf>, String> {
        let items = match obj.get(key) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(format!("`{key}` must be a list of paths, found {other}")),
        };
        items
            .iter()
            .map(|item| {
                let Value::String(rel) = item else {
                    return Err(format!("`{key}` must hold paths (strings), found {item}"));
                };
                existing(base, rel, key)
            })
            .collect()
    };
    let images = paths("images")?;
    let time_series = paths("time-series")?;
    let videos = paths("videos")?;
    let segmentation = match string("segmentation_path")? {
        Some(rel) if !rel.is_empty() => Some(existing(base, &rel, "segmentation_path")?),
        _ => None,
    };
    let bbox = match obj.get("bbox") {
        None | Some(Value::Null) => None,
        Some(Value::Array(v)) if v.len() == 4 && v.iter().all(Value::is_number) => {
            let f: Vec<f64> = v.iter().filter_map(Value::as_f64).collect();
            Some([f[0], f[1], f[2], f[3]])
        }
        Some(other) => {
            return Err(format!(
                "`bbox` must be [x1, y1, x2, y2] (4 numbers) or null, found {other}"
            ));
        }
    };
    let domain = match string("dataset")? {
        Some(d) if !d.is_empty() => d,
        _ => obj
            .get("images")
            .and_then(Value::as_array)
            .and_then(|v| v.first())
            .and_then(Value::as_str)
            .and_then(|p| p.split('/').nth(1))
            .map(str::to_string)
            .unwrap_or_else(|| "default".into()),
    };
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => format!("line {line}"),
    };
    Ok(Example {
        line,
        id,
        problem,
        answer,
        images,
        time_series,
        videos,
        bbox,
        segmentation,
        domain,
    })
}

fn existing(base: &Path, rel: &str, key: &str) -> Result<PathBuf, String> {
    let path = base.join(rel);
    if !path.is_file() {
        return Err(format!(
            "`{key}` names {rel}, but {} does not exist (paths are relative to the jsonl file)",
            path.display()
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Example, String> {
        parse_line(raw, 7, Path::new("/nonexistent-dir"))
    }

    #[test]
    fn fields_and_domain() {
        let e = parse(
            r#"{"problem": "Q?", "answer": "Normal", "dataset": "ptbxl", "bbox": [1, 2, 3.5, 4]}"#,
        )
        .unwrap();
        assert_eq!((e.problem.as_str(), e.answer.as_str()), ("Q?", "Normal"));
        assert_eq!(e.domain, "ptbxl");
        assert_eq!(e.bbox, Some([1.0, 2.0, 3.5, 4.0]));
        assert_eq!(e.id, "line 7");
        let e = parse(r#"{"problem": "Q?", "answer": "A", "images": []}"#).unwrap();
        assert_eq!(e.domain, "default");
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let err = parse(r#"{"problem": "Q?"}"#).unwrap_err();
        assert!(err.contains("no `answer`"), "{err}");
        let err =
            parse(r#"{"problem": "Q?", "answer": "A", "images": ["x/y/img.png"]}"#).unwrap_err();
        assert!(
            err.contains("x/y/img.png") && err.contains("does not exist"),
            "{err}"
        );
        let err = parse(r#"{"problem": "Q?", "answer": 3}"#).unwrap_err();
        assert!(err.contains("`answer` must be a string"), "{err}");
        let err = parse(r#"{"problem": "Q?", "answer": "A", "bbox": [1, 2]}"#).unwrap_err();
        assert!(err.contains("bbox"), "{err}");
        assert!(parse("[1, 2]").unwrap_err().contains("JSON object"));
    }

    #[test]
    fn step_order_is_a_pure_function_of_seed_and_step() {
        let ds = Dataset {
            file: "x".into(),
            examples: (0..7)
                .map(|i| parse(&format!(r#"{{"problem": "q{i}", "answer": "a"}}"#)).unwrap())
                .collect(),
        };
        // Every epoch is a permutation; consecutive steps tile the epochs.
        let all: Vec<usize> = (0..7).flat_map(|s| ds.step_indices(3, s, 2)).collect();
        let mut first: Vec<usize> = all[..7].to_vec();
        first.sort();
        assert_eq!(first, (0..7).collect::<Vec<_>>());
        assert_eq!(ds.step_indices(3, 5, 2), all[10..12]);
        assert_ne!(ds.step_indices(4, 0, 7), ds.step_indices(3, 0, 7));
    }
}
