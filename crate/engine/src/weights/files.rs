//! A model folder as bytes and weight sources: built natively from a directory, on the web from
//! the files the user picked. Everything downstream reads these bytes, never paths.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ByteSource;
use crate::error::{Error, Result};

/// What a Hugging Face Qwen2.5-VL / QoQ-Med folder must hold, for error messages.
pub const MODEL_FOLDER_CONTENTS: &str = "a model folder must contain config.json, tokenizer.json and \
     either model.safetensors or model.safetensors.index.json with the shards it lists \
     (generation_config.json, tokenizer_config.json, chat_template.json and \
     preprocessor_config.json are read when present)";

/// The files of one model folder.
pub struct ModelFiles {
    pub config: Vec<u8>,
    pub generation_config: Option<Vec<u8>>,
    pub tokenizer: Vec<u8>,
    pub tokenizer_config: Option<Vec<u8>>,
    /// chat_template.json (`{"chat_template": ...}`) or, failing that, chat_template.jinja.
    pub chat_template: Option<Vec<u8>>,
    pub preprocessor_config: Option<Vec<u8>>,
    /// model.safetensors, or the shards in the order of [`shard_files`].
    pub weights: Vec<Box<dyn ByteSource>>,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// The distinct shard files named by model.safetensors.index.json, sorted. A name that is not a
/// plain file name (a path, `..`) is refused: the index must not reach outside the folder.
pub fn shard_files(index_json: &[u8]) -> Result<Vec<String>> {
    let file = "model.safetensors.index.json";
    let index: ShardIndex = serde_json::from_slice(index_json).map_err(|e| {
        Error::format(
            file,
            format!("expected {{\"weight_map\": {{tensor: file}}}}: {e}"),
        )
    })?;
    let mut files: Vec<String> = index.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(Error::format(
            file,
            "weight_map is empty; the index lists no shard",
        ));
    }
    if let Some(bad) = files.iter().find(|f| {
        f.is_empty()
            || f.contains('/')
            || f.contains('\\')
            || f.as_str() == "."
            || f.as_str() == ".."
    }) {
        return Err(Error::format(
            file,
            format!("shard name `{bad}` is not a plain file name in the model folder"),
        ));
    }
    Ok(files)
}

impl ModelFiles {
    /// A model folder given as its files (on the web: the files the user picked). Files are
    /// matched by the last component of their name; unrelated files are ignored.
    pub async fn from_sources(files: Vec<Box<dyn ByteSource>>) -> Result<Self> {
        let mut by_name: BTreeMap<String, Box<dyn ByteSource>> = BTreeMap::new();
        for file in files {
            let base = file
                .name()
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or_default()
                .to_string();
            if by_name.contains_key(&base) {
                return Err(Error::Input(format!(
                    "two files are named {base}; pick the files of one model folder"
                )));
            }
            by_name.insert(base, file);
        }
        async fn read_all(source: Option<Box<dyn ByteSource>>) -> Result<Option<Vec<u8>>> {
            let Some(source) = source else {
                return Ok(None);
            };
            let len = usize::try_from(source.len()).map_err(|_| {
                Error::Input(format!(
                    "{} is too large to read into memory",
                    source.name()
                ))
            })?;
            source.read(0, len).await.map(Some)
        }
        let config = read_all(by_name.remove("config.json")).await?;
        let tokenizer = read_all(by_name.remove("tokenizer.json")).await?;
        let index = read_all(by_name.remove("model.safetensors.index.json")).await?;
        let mut missing = Vec::new();
        if config.is_none() {
            missing.push("config.json".to_string());
        }
        if tokenizer.is_none() {
            missing.push("tokenizer.json".to_string());
        }
        let mut weights = Vec::new();
        match &index {
            Some(index) => {
                for shard in shard_files(index)? {
                    match by_name.remove(&shard) {
                        Some(source) => weights.push(source),
                        None => missing
                            .push(format!("{shard} (listed in model.safetensors.index.json)")),
                    }
                }
            }
            None => match by_name.remove("model.safetensors") {
                Some(source) => weights.push(source),
                None => {
                    missing.push("model.safetensors (or model.safetensors.index.json)".to_string())
                }
            },
        }
        let (Some(config), Some(tokenizer), true) = (config, tokenizer, missing.is_empty()) else {
            return Err(Error::Input(format!(
                "the chosen files lack {}; {MODEL_FOLDER_CONTENTS}",
                missing.join(", ")
            )));
        };
        let chat_template = match read_all(by_name.remove("chat_template.json")).await? {
            Some(json) => Some(json),
            None => read_all(by_name.remove("chat_template.jinja")).await?,
        };
        Ok(ModelFiles {
            config,
            generation_config: read_all(by_name.remove("generation_config.json")).await?,
            tokenizer,
            tokenizer_config: read_all(by_name.remove("tokenizer_config.json")).await?,
            chat_template,
            preprocessor_config: read_all(by_name.remove("preprocessor_config.json")).await?,
            weights,
        })
    }
}

#[cfg(feature = "native")]
impl ModelFiles {
    /// Reads a model folder: the small JSON files into memory, the weights memory-mapped.
    pub fn from_dir(dir: &std::path::Path) -> Result<Self> {
        use super::MmapSource;

        if !dir.is_dir() {
            return Err(Error::Input(format!(
                "model folder {} does not exist or is not a directory; {MODEL_FOLDER_CONTENTS}",
                dir.display()
            )));
        }
        let read = |name: &str| -> Result<Option<Vec<u8>>> {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(Error::Io {
                    path: path.display().to_string(),
                    source,
                }),
            }
        };
        let config = read("config.json")?;
        let tokenizer = read("tokenizer.json")?;
        let index = read("model.safetensors.index.json")?;
        let single = dir.join("model.safetensors");

        let mut missing = Vec::new();
        if config.is_none() {
            missing.push("config.json".to_string());
        }
        if tokenizer.is_none() {
            missing.push("tokenizer.json".to_string());
        }
        let weight_paths = match &index {
            Some(index) => {
                let shards = shard_files(index)?;
                for shard in &shards {
                    if !dir.join(shard).is_file() {
                        missing.push(format!("{shard} (listed in model.safetensors.index.json)"));
                    }
                }
                shards.iter().map(|s| dir.join(s)).collect()
            }
            None if single.is_file() => vec![single],
            None => {
                missing.push("model.safetensors (or model.safetensors.index.json)".to_string());
                Vec::new()
            }
        };
        let (Some(config), Some(tokenizer), true) = (config, tokenizer, missing.is_empty()) else {
            return Err(Error::Input(format!(
                "model folder {} lacks {}; {MODEL_FOLDER_CONTENTS}",
                dir.display(),
                missing.join(", ")
            )));
        };
        let mut weights: Vec<Box<dyn ByteSource>> = Vec::with_capacity(weight_paths.len());
        for path in &weight_paths {
            weights.push(Box::new(MmapSource::open(path)?));
        }
        let chat_template = match read("chat_template.json")? {
            Some(json) => Some(json),
            None => read("chat_template.jinja")?,
        };
        Ok(ModelFiles {
            config,
            generation_config: read("generation_config.json")?,
            tokenizer,
            tokenizer_config: read("tokenizer_config.json")?,
            chat_template,
            preprocessor_config: read("preprocessor_config.json")?,
            weights,
        })
    }
}
