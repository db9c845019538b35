//! Parsing of QoQ-Med outputs.
