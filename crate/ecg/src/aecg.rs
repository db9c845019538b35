//! HL7 v3 annotated ECG (aECG, the FDA submission format): a series of sequence sets, one
//! sequence per lead, with samples as `<digits>` scaled by `<scale>` and shifted by `<origin>`.

use roxmltree::{Document, Node};

use crate::{Ecg, EcgError};

/// Reads the first rhythm sequence set (representative beats under `derivation` are skipped).
/// Lead names come from each sequence's `code` (MDC_ECG_LEAD_I...); the rate from the time
/// sequence's `increment` (s or ms).
pub fn read_aecg(bytes: &[u8]) -> Result<Ecg, EcgError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| EcgError::Aecg(format!("not UTF-8 text ({e})")))?;
    let doc = Document::parse(text).map_err(|e| EcgError::Aecg(format!("malformed XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "AnnotatedECG" {
        return Err(EcgError::Aecg(format!(
            "root element is <{}>, not <AnnotatedECG>: not an HL7 aECG file",
            root.tag_name().name()
        )));
    }
    let set = root
        .descendants()
        .filter(|n| n.has_tag_name_local("sequenceSet"))
        .find(|n| !n.ancestors().any(|a| a.has_tag_name_local("derivation")))
        .ok_or_else(|| EcgError::Aecg("no <sequenceSet> with rhythm data".into()))?;
    let mut rate = None;
    let mut channels = Vec::new();
    for sequence in set
        .descendants()
        .filter(|n| n.has_tag_name_local("sequence"))
    {
        let code = child(sequence, "code")
            .and_then(|c| c.attribute("code"))
            .unwrap_or_default();
        let Some(value) = child(sequence, "value") else {
            continue;
        };
        if code.starts_with("TIME_") {
            let inc = child(value, "increment")
                .ok_or_else(|| EcgError::Aecg(format!("{code} sequence has no <increment>")))?;
            let step = number(inc.attribute("value"), "time increment")?;
            let unit = inc.attribute("unit").unwrap_or("s");
            let seconds = match unit {
                "s" => step,
                "ms" => step * 1e-3,
                "us" => step * 1e-6,
                other => return Err(EcgError::Aecg(format!("unknown time unit {other:?}"))),
            };
            if seconds > 0.0 && seconds.is_finite() {
                rate = Some(1.0 / seconds);
            }
            continue;
        }
        let origin = child(value, "origin");
        let scale = child(value, "scale");
        let offset = origin.map_or(Ok(0.0), |o| number(o.attribute("value"), "origin"))?;
        let factor = scale.map_or(Ok(1.0), |s| number(s.attribute("value"), "scale"))?;
        let unit = scale
            .or(origin)
            .and_then(|n| n.attribute("unit"))
            .unwrap_or("uV");
        let to_mv = match unit {
            "uV" => 1e-3,
            "mV" => 1.0,
            "V" => 1e3,
            other => {
                return Err(EcgError::Aecg(format!(
                    "lead {code}: unknown unit {other:?}"
                )));
            }
        };
        let digits = child(value, "digits")
            .and_then(|d| d.text())
            .unwrap_or_default();
        let samples = digits
            .split_whitespace()
            .map(|d| {
                d.parse::<f64>()
                    .map(|v| ((offset + factor * v) * to_mv) as f32)
                    .map_err(|_| EcgError::Aecg(format!("lead {code}: {d:?} is not a number")))
            })
            .collect::<Result<Vec<f32>, _>>()?;
        channels.push((code.to_string(), samples));
    }
    let rate = rate.ok_or_else(|| {
        EcgError::Aecg("no TIME_ABSOLUTE/TIME_RELATIVE sequence gives the sampling rate".into())
    })?;
    Ecg::from_channels(rate, channels)
}

trait LocalName {
    fn has_tag_name_local(&self, name: &str) -> bool;
}

impl LocalName for Node<'_, '_> {
    fn has_tag_name_local(&self, name: &str) -> bool {
        self.is_element() && self.tag_name().name() == name
    }
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name_local(name))
}

fn number(text: Option<&str>, what: &str) -> Result<f64, EcgError> {
    let t = text.ok_or_else(|| EcgError::Aecg(format!("{what} has no value attribute")))?;
    t.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| EcgError::Aecg(format!("{what} {t:?} is not a number")))
}
