//! Host-side tensors and safetensors files: the engine's working copy, checkpoints and exports.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, View};

use crate::error::{Error, Result};

/// An in-memory f32 tensor for the safetensors writer.
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
    pub dtype: Dtype,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

impl HostTensor {
    pub fn f32(shape: Vec<usize>, values: &[f32]) -> Self {
        HostTensor {
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            dtype: Dtype::F32,
        }
    }
}

/// Serialises named tensors (sorted by name, as safetensors requires) with optional metadata.
pub fn serialize(
    tensors: &[(String, HostTensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), metadata)
        .map_err(|e| Error::Run(format!("writing safetensors: {e}")))
}

/// The f32 tensors of a safetensors file we wrote (checkpoints): name -> (shape, values).
pub fn read_f32(path: &Path) -> Result<crate::policy::HostTensors> {
    let bytes = crate::error::read(path)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::Run(format!("{}: not a safetensors file ({e})", path.display())))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(Error::Run(format!(
                "{}: tensor `{name}` is {:?}, expected F32",
                path.display(),
                view.dtype()
            )));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, (view.shape().to_vec(), values));
    }
    Ok(out)
}
