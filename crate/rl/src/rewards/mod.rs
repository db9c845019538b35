//! Rule-based rewards for one response: r = w_acc*F1 + w_iou*IoU + w_fmt*format + w_len*length.

mod accuracy;
mod format;
mod iou;

pub use accuracy::label_f1;
pub use format::{format_score, length_score};
pub use iou::{IouReduce, Mask, Region, iou_score};

use serde::Serialize;

/// Reward weights and how IoU combines several predicted boxes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Weights {
    pub accuracy: f64,
    pub iou: f64,
    pub format: f64,
    pub length: f64,
    pub iou_reduce: IouReduce,
}

impl Weights {
    /// The released code (`medical_compute_score`): 0.5 / 0.3 / 0.1 / 0.1, IoU averaged over boxes.
    pub const fn code() -> Self {
        Weights {
            accuracy: 0.5,
            iou: 0.3,
            format: 0.1,
            length: 0.1,
            iou_reduce: IouReduce::Mean,
        }
    }

    /// The paper: 0.6 accuracy, 0.2 IoU (best box), 0.2 format; no length term.
    pub const fn paper() -> Self {
        Weights {
            accuracy: 0.6,
            iou: 0.2,
            format: 0.2,
            length: 0.0,
            iou_reduce: IouReduce::Max,
        }
    }

    /// A preset by name: `code` or `paper`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "code" => Some(Self::code()),
            "paper" => Some(Self::paper()),
            _ => None,
        }
    }
}

impl Default for Weights {
    fn default() -> Self {
        Self::code()
    }
}

/// Every term of the reward and their weighted sum.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RewardBreakdown {
    pub overall: f64,
    pub accuracy: f64,
    pub iou: f64,
    pub format: f64,
    pub length: f64,
}

/// Score one response against its ground-truth label string and optional region.
pub fn score(
    response: &str,
    truth: &str,
    region: Region<'_>,
    weights: &Weights,
) -> RewardBreakdown {
    let accuracy = label_f1(response, truth);
    let iou = iou_score(response, region, weights.iou_reduce);
    let format = format_score(response);
    let length = length_score(response);
    RewardBreakdown {
        overall: weights.accuracy * accuracy
            + weights.iou * iou
            + weights.format * format
            + weights.length * length,
        accuracy,
        iou,
        format,
        length,
    }
}

#[cfg(test)]
mod tests;
