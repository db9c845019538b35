//! qoqmed's quantized checkpoints: ordinary safetensors files in the GPU plane layout, byte for
//! byte, so loading is a straight copy (docs/quantization.md).
//!
//! A q8/q4 tensor keeps the checkpoint's name for its codes (`X.weight`: I8 `[n, k]` for q8, U8
//! `[n, k/2]` for q4, two elements per byte, element j in nibble j % 2) and adds `X.weight_scale`
//! (F16 `[n, k/32]`). `__metadata__` holds the format version and every tensor's format
//! (`"qoqmed.format.X.weight": "q4"`), so a U8 tensor is never guessed to be codes.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::gpu::{GROUP, WeightFormat};

/// `__metadata__` key of the format version; files without it are plain checkpoints.
pub const VERSION_KEY: &str = "qoqmed_format_version";
/// The version this build writes and reads.
pub const VERSION: &str = "1";
/// `__metadata__` key prefix of a tensor's format: `qoqmed.format.<tensor name>`.
pub const FORMAT_PREFIX: &str = "qoqmed.format.";

/// The name of the scales tensor of quantized tensor `name`.
pub fn scale_name(name: &str) -> String {
    format!("{name}_scale")
}

/// One tensor as the safetensors header lists it (a plane of a weight).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTensor {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
}

impl StoredTensor {
    pub fn bytes(&self) -> u64 {
        let size = match self.dtype {
            "F32" => 4,
            "F16" | "BF16" => 2,
            _ => 1,
        };
        self.shape.iter().map(|&d| d as u64).product::<u64>() * size
    }
}

/// Rows and row length of a tensor as the GPU stores it (`gpu::Weight`): `shape[0]` rows of
/// `shape[1..]`'s product values; a 1-D tensor is `n` rows of one value.
pub fn rows_and_len(shape: &[usize]) -> (usize, usize) {
    match shape.split_first() {
        Some((&n, rest)) => (n, rest.iter().product()),
        None => (1, 1),
    }
}

/// The stored tensors of logical tensor `name` with `shape` in `format`: one for float formats,
/// codes then scales for q8/q4.
pub fn stored_tensors(
    name: &str,
    format: WeightFormat,
    shape: &[usize],
) -> Result<Vec<StoredTensor>> {
    let plain = |dtype| {
        Ok(vec![StoredTensor {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
        }])
    };
    match format {
        WeightFormat::F32 => plain("F32"),
        WeightFormat::F16 => plain("F16"),
        WeightFormat::BF16 => plain("BF16"),
        WeightFormat::Q8 | WeightFormat::Q4 => {
            format.check_row_len(name, shape)?;
            let (n, k) = rows_and_len(shape);
            let (dtype, cols) = if format == WeightFormat::Q8 {
                ("I8", k)
            } else {
                ("U8", k / 2)
            };
            Ok(vec![
                StoredTensor {
                    name: name.to_string(),
                    dtype,
                    shape: vec![n, cols],
                },
                StoredTensor {
                    name: scale_name(name),
                    dtype: "F16",
                    shape: vec![n, k / GROUP],
                },
            ])
        }
    }
}

/// `__metadata__` of a file holding tensors in these formats.
pub fn metadata<'a>(
    formats: impl IntoIterator<Item = (&'a str, WeightFormat)>,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("format".to_string(), "pt".to_string());
    m.insert(VERSION_KEY.to_string(), VERSION.to_string());
    for (name, format) in formats {
        m.insert(
            format!("{FORMAT_PREFIX}{name}"),
            format.as_str().to_string(),
        );
    }
    m
}

/// A whole safetensors header (8-byte length + JSON) for `tensors` stored back to back in this
/// order. The JSON is padded with spaces to a multiple of 8 and to at least `min_json_len`, so a
/// writer can reserve room for the header and fill it in last.
pub fn header_bytes(
    tensors: &[StoredTensor],
    metadata: &BTreeMap<String, String>,
    min_json_len: usize,
) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    map.insert("__metadata__".into(), serde_json::json!(metadata));
    let mut offset = 0u64;
    for t in tensors {
        let end = offset + t.bytes();
        map.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut json = serde_json::Value::Object(map).to_string().into_bytes();
    let len = json.len().max(min_json_len).div_ceil(8) * 8;
    json.resize(len, b' ');
    let mut out = (len as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out
}

/// What a file's metadata says: None for a plain checkpoint, else each tensor's format.
pub fn read_metadata(
    file: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<Option<BTreeMap<String, WeightFormat>>> {
    let Some(version) = metadata.get(VERSION_KEY) else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(Error::format(
            file,
            format!(
                "written in qoqmed quantized format version {version}, this qoqmed reads version \
                 {VERSION}; update qoqmed or quantize the model again with this one"
            ),
        ));
    }
    let mut formats = BTreeMap::new();
    for (key, value) in metadata {
        if let Some(name) = key.strip_prefix(FORMAT_PREFIX) {
            let format = WeightFormat::parse(value).ok_or_else(|| {
                Error::format(
                    file,
                    format!("tensor `{name}` has unknown format `{value}` in __metadata__"),
                )
            })?;
            formats.insert(name.to_string(), format);
        }
    }
    Ok(Some(formats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_and_header() {
        let t = stored_tensors("a.weight", WeightFormat::Q4, &[3, 64]).unwrap();
        assert_eq!(t[0].shape, vec![3, 32]);
        assert_eq!((t[0].dtype, t[0].bytes()), ("U8", 96));
        assert_eq!(
            (t[1].name.as_str(), t[1].shape.clone()),
            ("a.weight_scale", vec![3, 2])
        );
        let q8 = stored_tensors("b", WeightFormat::Q8, &[2, 32]).unwrap();
        assert_eq!((q8[0].dtype, q8[0].bytes(), q8[1].bytes()), ("I8", 64, 4));
        assert!(stored_tensors("c", WeightFormat::Q4, &[2, 48]).is_err());
        let meta = metadata([("a.weight", WeightFormat::Q4)]);
        let h = header_bytes(&t, &meta, 1000);
        let n = u64::from_le_bytes(h[..8].try_into().unwrap()) as usize;
        assert_eq!((n % 8, n >= 1000, h.len()), (0, true, 8 + n));
        let json: serde_json::Value = serde_json::from_slice(&h[8..]).unwrap();
        assert_eq!(
            json["a.weight_scale"]["data_offsets"],
            serde_json::json!([96, 108])
        );
        let formats = read_metadata("f", &meta).unwrap().unwrap();
        assert_eq!(formats["a.weight"], WeightFormat::Q4);
        let mut newer = meta.clone();
        newer.insert(VERSION_KEY.into(), "2".into());
        assert!(
            read_metadata("f", &newer)
                .unwrap_err()
                .to_string()
                .contains("update qoqmed")
        );
    }
}
