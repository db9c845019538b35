//! A length check over a DICOM file's elements before dicom-rs parses it. dicom-rs allocates and
//! zero-fills each value at its declared length before reading it, so one corrupt length in a
//! 40 kB file costs gigabytes of memory and seconds; here every declared length is checked
//! against the bytes that are really left, walking into sequences and items, skipping values.

const LONG_VRS: [&[u8; 2]; 13] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
];
const UNDEFINED: u32 = u32::MAX;
const KNOWN_VRS: [&[u8; 2]; 34] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
];

#[derive(Clone, Copy)]
enum Syntax {
    ExplicitLe,
    ExplicitBe,
    ImplicitLe,
}

fn u16_at(b: &[u8], at: usize, big: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(s)
    } else {
        u16::from_le_bytes(s)
    })
}

fn u32_at(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(s)
    } else {
        u32::from_le_bytes(s)
    })
}

/// One element header.
struct Header {
    group: u16,
    elem: u16,
    /// None for implicit VR and for item/delimiter tags.
    vr: Option<[u8; 2]>,
    len: u32,
    /// Bytes of the header itself.
    hl: usize,
}

fn header(b: &[u8], pos: usize, syntax: Syntax) -> Result<Header, String> {
    let big = matches!(syntax, Syntax::ExplicitBe);
    let short = || format!("file ends inside an element header at byte {pos}");
    let group = u16_at(b, pos, big).ok_or_else(short)?;
    let elem = u16_at(b, pos + 2, big).ok_or_else(short)?;
    if group == 0xFFFE || matches!(syntax, Syntax::ImplicitLe) {
        let len = u32_at(b, pos + 4, big).ok_or_else(short)?;
        return Ok(Header {
            group,
            elem,
            vr: None,
            len,
            hl: 8,
        });
    }
    let vr: [u8; 2] = b
        .get(pos + 4..pos + 6)
        .ok_or_else(short)?
        .try_into()
        .map_err(|_| short())?;
    if !KNOWN_VRS.contains(&&vr) {
        return Err(format!(
            "unknown value representation {:?} at byte {pos}",
            String::from_utf8_lossy(&vr)
        ));
    }
    if LONG_VRS.contains(&&vr) {
        Ok(Header {
            group,
            elem,
            vr: Some(vr),
            len: u32_at(b, pos + 8, big).ok_or_else(short)?,
            hl: 12,
        })
    } else {
        Ok(Header {
            group,
            elem,
            vr: Some(vr),
            len: u32::from(u16_at(b, pos + 6, big).ok_or_else(short)?),
            hl: 8,
        })
    }
}

/// Ok when every declared length fits in the file; Err names the first element that does not.
/// Files without a preamble and file meta group are left to dicom-rs.
pub fn check_lengths(b: &[u8]) -> Result<(), String> {
    let mut pos = if b.get(128..132) == Some(b"DICM") {
        132
    } else {
        return Ok(());
    };
    let mut ts = String::new();
    while u16_at(b, pos, false) == Some(0x0002) {
        let Header { elem, len, hl, .. } = header(b, pos, Syntax::ExplicitLe)?;
        let end = pos + hl + len as usize;
        if len == UNDEFINED || end > b.len() {
            return Err(format!(
                "file meta element (0002,{elem:04X}) claims {len} bytes, {} left",
                b.len() - pos - hl.min(b.len() - pos)
            ));
        }
        // dicom-rs reads the meta group by its declared group length.
        if elem == 0x0000 && u32_at(b, pos + hl, false).is_none_or(|g| g as usize > b.len() - end) {
            return Err("file meta group length exceeds the file".into());
        }
        if elem == 0x0010 {
            ts = String::from_utf8_lossy(&b[pos + hl..end])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        pos = end;
    }
    let syntax = match ts.as_str() {
        "1.2.840.10008.1.2" => Syntax::ImplicitLe,
        "1.2.840.10008.1.2.2" => Syntax::ExplicitBe,
        "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" | "1.2.840.10008.1.2.4.205" => {
            // Deflated data set: check the inflated bytes (capped, against deflate bombs).
            use std::io::Read;
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(&b[pos..])
                .take(MAX_INFLATED)
                .read_to_end(&mut inflated)
                .map_err(|e| format!("deflated data set does not inflate: {e}"))?;
            if inflated.len() as u64 >= MAX_INFLATED {
                return Err("deflated data set inflates beyond 2 GiB".into());
            }
            return scan_dataset(&inflated, 0, Syntax::ExplicitLe);
        }
        _ => Syntax::ExplicitLe,
    };
    scan_dataset(b, pos, syntax)
}

const MAX_INFLATED: u64 = 2 << 30;

fn scan_dataset(b: &[u8], mut pos: usize, syntax: Syntax) -> Result<(), String> {
    let big = matches!(syntax, Syntax::ExplicitBe);
    let mut fragments = false;
    while pos + 8 <= b.len() {
        let Header {
            group,
            elem,
            vr,
            len,
            hl,
        } = header(b, pos, syntax)?;
        let left = b.len() - pos - hl;
        if group == 0xFFFE {
            match elem {
                0xE0DD => fragments = false,
                0xE000 if len != UNDEFINED && len as usize > left => {
                    return Err(format!(
                        "item at byte {pos} claims {len} bytes, {left} left"
                    ));
                }
                // A pixel data fragment holds bytes, not elements: skip it.
                0xE000 if fragments => pos += len as usize,
                _ => {}
            }
            pos += hl;
            continue;
        }
        if len == UNDEFINED {
            fragments = (group, elem) == (0x7FE0, 0x0010);
            pos += hl;
            continue;
        }
        if len as usize > left {
            return Err(format!(
                "element ({group:04X},{elem:04X}) claims {len} bytes, {left} left"
            ));
        }
        // Walk into sequences (explicit SQ, or implicit values that start with an item tag).
        let starts_item = u16_at(b, pos + hl, big) == Some(0xFFFE)
            && u16_at(b, pos + hl + 2, big) == Some(0xE000);
        let sequence = vr == Some(*b"SQ") || (vr.is_none() && len >= 8 && starts_item);
        pos += hl + if sequence { 0 } else { len as usize };
    }
    Ok(())
}
