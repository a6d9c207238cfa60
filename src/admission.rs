//! Implementations of [`crate::ports::Admission`]; only the composition root (`lib.rs`) names
//! one.

pub mod local;
pub mod redis;
