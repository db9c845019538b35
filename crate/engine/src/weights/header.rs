//! The safetensors header, parsed from bytes: an 8-byte little-endian length, then a JSON object
//! `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`. Offsets are
//! relative to the end of the header. Parsing it ourselves means only two small reads per file,
//! which matters when the file is a remote range or a JS `File`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Larger headers are refused (the safetensors crate uses the same bound) so a corrupt length
/// cannot make us allocate gigabytes.
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// Where one tensor lies, offsets already absolute in the file.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub name: String,
    /// The dtype as written; parsed by the caller so unsupported ones fail only when used.
    pub dtype: String,
    pub shape: Vec<usize>,
    pub offset: u64,
    pub len: u64,
}

#[derive(Deserialize)]
struct JsonEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Reads the header length from the first 8 bytes.
pub fn header_len(file: &str, prefix: &[u8], file_len: u64) -> Result<u64> {
    let bytes: [u8; 8] = prefix
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            Error::format(
                file,
                "shorter than 8 bytes; not a safetensors file (or an empty download)",
            )
        })?;
    let n = u64::from_le_bytes(bytes);
    if n > MAX_HEADER_LEN || n > file_len.saturating_sub(8) {
        return Err(Error::format(
            file,
            format!(
                "safetensors header claims {n} bytes but the file has {file_len}; the file is \
                 truncated or not a safetensors file"
            ),
        ));
    }
    Ok(n)
}

/// Bytes per element of every safetensors dtype, so each entry's length is checked even for
/// dtypes qoqmed does not load.
pub fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

/// One file's header: its tensors and its `__metadata__` (string to string, as safetensors says).
pub struct Header {
    pub entries: Vec<RawEntry>,
    pub metadata: BTreeMap<String, String>,
}

/// Parses the JSON header (without the 8-byte prefix) of a file of `file_len` bytes and checks
/// every tensor's byte range against its shape, dtype and the file length.
pub fn parse_header(file: &str, json: &[u8], file_len: u64) -> Result<Header> {
    let data_start = 8 + json.len() as u64;
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(json)
        .map_err(|e| Error::format(file, format!("safetensors header is not valid JSON: {e}")))?;
    let mut entries = Vec::with_capacity(map.len());
    let mut metadata = BTreeMap::new();
    for (name, value) in map {
        if name == "__metadata__" {
            // The format says string to string; other values are ignored rather than refused.
            if let serde_json::Value::Object(map) = value {
                metadata.extend(
                    map.into_iter()
                        .filter_map(|(k, v)| Some((k, v.as_str()?.to_string()))),
                );
            }
            continue;
        }
        let entry: JsonEntry = serde_json::from_value(value).map_err(|e| {
            Error::format(
                file,
                format!("safetensors header entry for tensor `{name}` is malformed: {e}"),
            )
        })?;
        let [begin, end] = entry.data_offsets;
        if end < begin {
            return Err(Error::format(
                file,
                format!("tensor `{name}` has data_offsets [{begin}, {end}] with end before begin"),
            ));
        }
        let len = end - begin;
        if let Some(size) = dtype_size(&entry.dtype) {
            let expected = entry
                .shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
                .and_then(|n| n.checked_mul(size));
            if expected != Some(len) {
                return Err(Error::format(
                    file,
                    format!(
                        "tensor `{name}` ({} {:?}) should take {} bytes but its data_offsets \
                         span {len}; the header is corrupt",
                        entry.dtype,
                        entry.shape,
                        expected
                            .map_or_else(|| "an impossible number of".into(), |n| n.to_string())
                    ),
                ));
            }
        }
        let offset = data_start.checked_add(begin);
        let fits = offset
            .and_then(|o| o.checked_add(len))
            .is_some_and(|e| e <= file_len);
        let Some(offset) = offset.filter(|_| fits) else {
            return Err(Error::format(
                file,
                format!(
                    "tensor `{name}` lies at bytes {}..{} but the file has only {file_len}; the \
                     file is truncated (an interrupted download?): fetch it again",
                    data_start.saturating_add(begin),
                    data_start.saturating_add(end)
                ),
            ));
        };
        entries.push(RawEntry {
            name,
            dtype: entry.dtype,
            shape: entry.shape,
            offset,
            len,
        });
    }
    Ok(Header { entries, metadata })
}
