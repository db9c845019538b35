//! DRPO rewards and advantages.
