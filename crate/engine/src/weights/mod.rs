//! Weights
