//! Where checkpoint bytes come from: a memory map natively, bytes in memory in tests and for small
//! files, JS file slices or fetched ranges on the web. The loader only asks for byte ranges.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A pending read of one byte range. Not `Send`: on the web it wraps a JS promise.
pub type ReadFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>>> + 'a>>;

/// One checkpoint file, read by byte range.
pub trait ByteSource {
    /// File name, used in error messages.
    fn name(&self) -> &str;
    /// Total length in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads `len` bytes at `offset`; a range past the end is an error naming the file.
    fn read(&self, offset: u64, len: usize) -> ReadFuture<'_>;
    /// The whole file when it is already addressable (memory map, bytes in memory): lets the
    /// loader upload weights without a copy.
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }
}

/// The bytes of `offset..offset+len` in `whole`, or an error saying the file is too short.
pub fn slice_range<'a>(name: &str, whole: &'a [u8], offset: u64, len: usize) -> Result<&'a [u8]> {
    let range = usize::try_from(offset)
        .ok()
        .and_then(|start| Some(start..start.checked_add(len)?))
        .filter(|r| r.end <= whole.len());
    match range {
        Some(r) => Ok(&whole[r]),
        None => Err(Error::format(
            name,
            format!(
                "read of {len} bytes at offset {offset} runs past the end of the file ({} bytes); \
                 the file is truncated or not what its header says",
                whole.len()
            ),
        )),
    }
}

/// A file held in memory.
#[derive(Clone)]
pub struct MemorySource {
    name: String,
    bytes: Arc<[u8]>,
}

impl MemorySource {
    pub fn new(name: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> Self {
        MemorySource {
            name: name.into(),
            bytes: bytes.into(),
        }
    }
}

impl ByteSource for MemorySource {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read(&self, offset: u64, len: usize) -> ReadFuture<'_> {
        let result = slice_range(&self.name, &self.bytes, offset, len).map(<[u8]>::to_vec);
        Box::pin(std::future::ready(result))
    }
    fn as_slice(&self) -> Option<&[u8]> {
        Some(&self.bytes)
    }
}

/// A file memory-mapped read-only (native only).
#[cfg(feature = "native")]
pub struct MmapSource {
    name: String,
    map: memmap2::Mmap,
}

#[cfg(feature = "native")]
impl MmapSource {
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; as with every mmap-based loader, truncating or rewriting
        // the checkpoint while it is open is undefined behaviour, which we document rather than
        // prevent (copying multi-GB weights to guard against it would defeat the map).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Ok(MmapSource {
            name: path.display().to_string(),
            map,
        })
    }
}

#[cfg(feature = "native")]
impl ByteSource for MmapSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> u64 {
        self.map.len() as u64
    }
    fn read(&self, offset: u64, len: usize) -> ReadFuture<'_> {
        let result = slice_range(&self.name, &self.map, offset, len).map(<[u8]>::to_vec);
        Box::pin(std::future::ready(result))
    }
    fn as_slice(&self) -> Option<&[u8]> {
        Some(&self.map)
    }
}

/// A file read with positioned reads, never mapped (native only): for one pass over a checkpoint
/// (`qoqmed quantize`) where a map would leave every page resident and inflate the process's
/// memory to the model's size.
#[cfg(feature = "native")]
pub struct FileSource {
    name: String,
    file: std::fs::File,
    len: u64,
}

#[cfg(feature = "native")]
impl FileSource {
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok(FileSource {
            name: path.display().to_string(),
            file,
            len,
        })
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(Error::format(
                &self.name,
                format!(
                    "read of {len} bytes at offset {offset} runs past the end of the file ({} bytes); \
                     the file is truncated or not what its header says",
                    self.len
                ),
            ));
        }
        let mut buf = vec![0u8; len];
        #[cfg(unix)]
        let read = {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(&mut buf, offset)
        };
        #[cfg(not(unix))]
        let read = {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = &self.file;
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| f.read_exact(&mut buf))
        };
        read.map_err(|source| Error::Io {
            path: self.name.clone(),
            source,
        })?;
        Ok(buf)
    }
}

#[cfg(feature = "native")]
impl ByteSource for FileSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn read(&self, offset: u64, len: usize) -> ReadFuture<'_> {
        Box::pin(std::future::ready(self.read_at(offset, len)))
    }
}
