//! Medical image readers and the Qwen2.5-VL image preprocessing.
