//! Model
