//! One module per verb: its flags (`*Args`) and its entry point (`run`).

pub mod flags;
pub mod migrate;
pub mod status;
pub mod verify;
