//! A pre-scan of a DICOM file's element and item lengths before dicom-rs parses it.
//!
//! Why: dicom-rs reserves and zero-fills a value's declared length before reading it, so one
//! corrupt length field (up to 4 GiB) costs gigabytes and seconds before the read fails. With the
//! whole file in memory we can refuse any length longer than the bytes that are left.
//! Only the little-endian transfer syntaxes are scanned (the others go straight to dicom-rs).
//! The scan follows dicom-rs's framing for well-formed structure; a file corrupt enough to make
//! dicom-rs frame elements differently can still slip past it (docs/inputs.md, Fuzzing).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
/// Every VR of PS3.5 table 6.2-1, two letters each.
const KNOWN_VRS: &[u8] = b"AEASATCSDADSDTFLFDISLOLTOBODOFOLOVOWPNSHSLSQSSSTSVTMUCUIULUNURUSUTUV";

/// `file` starts at the "DICM" marker. Err says which element lies about its length.
pub(crate) fn check(file: &[u8]) -> Result<(), String> {
    let mut scan = Scan {
        buf: file,
        explicit: true,
    };
    // The file meta group (0002,xxxx) is always explicit VR little endian.
    let mut pos = 4;
    let mut syntax = String::new();
    while pos + 8 <= file.len() && u16_at(file, pos) == 0x0002 {
        let (tag, len, header) = scan.header(pos)?;
        let start = pos + header;
        if start > file.len() || len == UNDEFINED || len as usize > file.len() - start {
            return Err(too_long(tag, len, file.len().saturating_sub(start)));
        }
        if tag == (0x0002, 0x0010) {
            syntax = String::from_utf8_lossy(&file[start..start + len as usize])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        pos = start + len as usize;
    }
    scan.explicit = match syntax.as_str() {
        "1.2.840.10008.1.2" => false,
        // Big endian and deflated data sets cannot be walked as little-endian bytes.
        "1.2.840.10008.1.2.2" | "1.2.840.10008.1.2.1.99" => return Ok(()),
        _ => true,
    };
    scan.walk(pos)
}

struct Scan<'a> {
    buf: &'a [u8],
    explicit: bool,
}

impl Scan<'_> {
    /// Walks the data set the way dicom-rs reads it: linearly, one header after another. Item
    /// and delimiter headers are stepped over (an item's elements follow inline, and dicom-rs
    /// does not bound them by the item's length), sequences are entered, primitive values are
    /// skipped after checking they fit in the file. Only encapsulated pixel data holds items
    /// of raw bytes.
    fn walk(&self, mut pos: usize) -> Result<(), String> {
        let end = self.buf.len();
        let mut in_fragments = false;
        while pos + 8 <= end {
            if in_fragments {
                let tag = (u16_at(self.buf, pos), u16_at(self.buf, pos + 2));
                let len = u32_at(self.buf, pos + 4);
                pos += 8;
                match tag {
                    SEQUENCE_END => in_fragments = false,
                    ITEM if len != UNDEFINED && len as usize <= end - pos => pos += len as usize,
                    ITEM => return Err(too_long(tag, len, end - pos)),
                    // Not a fragment: dicom-rs will complain with more context.
                    _ => return Ok(()),
                }
                continue;
            }
            let (tag, len, header) = self.header(pos)?;
            let start = pos + header;
            if start > end {
                return Err(format!("element ({:04X},{:04X}) is cut off", tag.0, tag.1));
            }
            // Any defined length, even of an item or a sequence whose contents are walked
            // inline, must fit in the file: dicom-rs reads a stray item as a byte value.
            if len != UNDEFINED && len as usize > end - start {
                return Err(too_long(tag, len, end - start));
            }
            if tag.0 == 0xFFFE {
                pos = start;
                continue;
            }
            if len == UNDEFINED {
                // Encapsulated pixel data, or a sequence (dicom-rs reads an undefined-length UN
                // or unknown element as one): either way its items follow.
                in_fragments = self.is_fragments(pos, tag);
                pos = start;
                continue;
            }
            if self.is_sequence(pos, tag) {
                pos = start;
                continue;
            }
            pos = start + len as usize;
        }
        Ok(())
    }

    /// (tag, value length, header size) of the element at `pos` (8 bytes are there).
    fn header(&self, pos: usize) -> Result<((u16, u16), u32, usize), String> {
        let tag = (u16_at(self.buf, pos), u16_at(self.buf, pos + 2));
        if self.explicit && tag.0 != 0xFFFE {
            let vr = &self.buf[pos + 4..pos + 6];
            // dicom-rs reads an unknown VR's header differently (a 4-byte length at byte 4), so
            // lengths could not be checked the way it will read them: refuse instead.
            if !KNOWN_VRS.chunks_exact(2).any(|k| k == vr) {
                return Err(format!(
                    "element ({:04X},{:04X}) has an invalid VR {:?} (corrupt file)",
                    tag.0,
                    tag.1,
                    String::from_utf8_lossy(vr)
                ));
            }
            // dicom-rs reads binary numbers whole, so a length that is not a multiple of the
            // number's size would shift every later header from where this scan looks.
            let size = match vr {
                b"US" | b"SS" | b"OW" => 2,
                b"UL" | b"SL" | b"FL" | b"AT" | b"OL" | b"OF" => 4,
                b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => 8,
                _ => 1,
            };
            let long = matches!(
                vr,
                b"OB"
                    | b"OD"
                    | b"OF"
                    | b"OL"
                    | b"OV"
                    | b"OW"
                    | b"SQ"
                    | b"SV"
                    | b"UC"
                    | b"UN"
                    | b"UR"
                    | b"UT"
                    | b"UV"
            );
            if long {
                if pos + 12 > self.buf.len() {
                    return Ok((tag, UNDEFINED - 1, 12));
                }
                let len = u32_at(self.buf, pos + 8);
                return whole(tag, len, size).map(|len| (tag, len, 12));
            }
            let len = u32::from(u16_at(self.buf, pos + 6));
            return whole(tag, len, size).map(|len| (tag, len, 8));
        }
        Ok((tag, u32_at(self.buf, pos + 4), 8))
    }

    fn is_fragments(&self, pos: usize, tag: (u16, u16)) -> bool {
        tag == (0x7FE0, 0x0010)
            || (self.explicit && matches!(&self.buf[pos + 4..pos + 6], b"OB" | b"OW"))
    }

    fn is_sequence(&self, pos: usize, tag: (u16, u16)) -> bool {
        if self.explicit {
            return &self.buf[pos + 4..pos + 6] == b"SQ";
        }
        StandardDataDictionary
            .by_tag(Tag(tag.0, tag.1))
            .is_some_and(|e| matches!(e.vr(), VirtualVr::Exact(VR::SQ)))
    }
}

fn whole(tag: (u16, u16), len: u32, size: u32) -> Result<u32, String> {
    if len != UNDEFINED && !len.is_multiple_of(size) {
        return Err(format!(
            "element ({:04X},{:04X}) has {len} bytes, not a whole number of {size}-byte values (corrupt file)",
            tag.0, tag.1
        ));
    }
    Ok(len)
}

fn too_long(tag: (u16, u16), len: u32, left: usize) -> String {
    format!(
        "element ({:04X},{:04X}) claims {len} bytes but only {left} remain (truncated or corrupt file)",
        tag.0, tag.1
    )
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
