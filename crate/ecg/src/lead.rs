//! The twelve standard leads and the many ways files spell them.

use std::fmt;

/// A standard 12-lead ECG lead. The declaration order is the standard order
/// (I, II, III, aVR, aVL, aVF, V1..V6) that the spec indexes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lead {
    I,
    II,
    III,
    AVR,
    AVL,
    AVF,
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
}

impl Lead {
    /// All twelve, in the standard order.
    pub const ALL: [Lead; 12] = [
        Lead::I,
        Lead::II,
        Lead::III,
        Lead::AVR,
        Lead::AVL,
        Lead::AVF,
        Lead::V1,
        Lead::V2,
        Lead::V3,
        Lead::V4,
        Lead::V5,
        Lead::V6,
    ];

    /// The eight leads the ECG-JEPA encoder takes, in its row order (spec section 3).
    pub const MODEL: [Lead; 8] = [
        Lead::I,
        Lead::II,
        Lead::V1,
        Lead::V2,
        Lead::V3,
        Lead::V4,
        Lead::V5,
        Lead::V6,
    ];

    /// The clinical spelling: "I", "aVR", "V1".
    pub fn name(self) -> &'static str {
        match self {
            Lead::I => "I",
            Lead::II => "II",
            Lead::III => "III",
            Lead::AVR => "aVR",
            Lead::AVL => "aVL",
            Lead::AVF => "aVF",
            Lead::V1 => "V1",
            Lead::V2 => "V2",
            Lead::V3 => "V3",
            Lead::V4 => "V4",
            Lead::V5 => "V5",
            Lead::V6 => "V6",
        }
    }

    /// Recognises the common spellings: "I", "i", "Lead I", "Lead I (Einthoven)", "LEAD_I",
    /// "MDC_ECG_LEAD_I", "DI", "AVR", "aVR", "-aVR" is NOT aVR (it is inverted) and gives None,
    /// "v1", "V1 ", "Lead V1". Unknown names (e.g. MIT-BIH's "MLII") give None: a modified lead
    /// is not the standard one, so guessing would feed the model the wrong signal.
    pub fn from_name(raw: &str) -> Option<Lead> {
        let mut s = raw.trim();
        // Drop a trailing "(Einthoven)", "(Goldberger)", "(Wilson)" or a unit in brackets.
        if let Some(open) = s.find(['(', '[']) {
            s = s[..open].trim();
        }
        let lower = s.to_ascii_lowercase();
        let mut key: &str = &lower;
        for prefix in ["mdc_ecg_lead_", "lead_", "lead-", "lead "] {
            if let Some(rest) = key.strip_prefix(prefix) {
                key = rest.trim();
                break;
            }
        }
        let compact: String = key
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '_')
            .collect();
        let lead = match compact.as_str() {
            "i" | "di" => Lead::I,
            "ii" | "dii" => Lead::II,
            "iii" | "diii" => Lead::III,
            "avr" => Lead::AVR,
            "avl" => Lead::AVL,
            "avf" => Lead::AVF,
            "v1" => Lead::V1,
            "v2" => Lead::V2,
            "v3" => Lead::V3,
            "v4" => Lead::V4,
            "v5" => Lead::V5,
            "v6" => Lead::V6,
            _ => return None,
        };
        Some(lead)
    }

    /// Lead codes used by DICOM waveform channel sources: SCPECG ("5.6.3-9-1") and
    /// ISO/IEEE 11073 MDC ("2:1"), for files whose code meaning is empty or unusual.
    pub fn from_code(code: &str) -> Option<Lead> {
        let code = code.trim();
        let number = code
            .strip_prefix("5.6.3-9-")
            .or_else(|| code.strip_prefix("2:"))?;
        match number {
            "1" => Some(Lead::I),
            "2" => Some(Lead::II),
            "61" => Some(Lead::III),
            "62" => Some(Lead::AVR),
            "63" => Some(Lead::AVL),
            "64" => Some(Lead::AVF),
            "3" => Some(Lead::V1),
            "4" => Some(Lead::V2),
            "5" => Some(Lead::V3),
            "6" => Some(Lead::V4),
            "7" => Some(Lead::V5),
            "8" => Some(Lead::V6),
            _ => None,
        }
    }
}

impl fmt::Display for Lead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Lead;

    #[test]
    fn common_spellings() {
        for (raw, lead) in [
            ("I", Lead::I),
            ("i", Lead::I),
            ("Lead I", Lead::I),
            ("Lead I (Einthoven)", Lead::I),
            ("MDC_ECG_LEAD_I", Lead::I),
            ("LEAD_II", Lead::II),
            ("DIII", Lead::III),
            ("AVR", Lead::AVR),
            ("aVL", Lead::AVL),
            ("Lead aVF (Goldberger)", Lead::AVF),
            ("MDC_ECG_LEAD_AVF", Lead::AVF),
            ("v1", Lead::V1),
            (" V6 ", Lead::V6),
            ("Lead V4 (Wilson)", Lead::V4),
            ("I [mV]", Lead::I),
        ] {
            assert_eq!(Lead::from_name(raw), Some(lead), "{raw:?}");
        }
        for raw in ["MLII", "V7", "", "-aVR", "X", "time"] {
            assert_eq!(Lead::from_name(raw), None, "{raw:?}");
        }
        assert_eq!(Lead::from_code("5.6.3-9-61"), Some(Lead::III));
        assert_eq!(Lead::from_code("2:8"), Some(Lead::V6));
        assert_eq!(Lead::from_code("2:99"), None);
    }
}
