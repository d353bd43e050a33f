//! The projector's commands, one module each; `migrate` is the store's own step.

pub(crate) mod drop_generation;
pub(crate) mod rebuild;
pub(crate) mod run;
pub(crate) mod status;
