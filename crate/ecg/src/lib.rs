//! ECG readers, preprocessing and the clinical 12-lead plot.
