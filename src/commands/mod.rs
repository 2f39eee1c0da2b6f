//! One module per verb: its flags (`*Args`) and its entry point (`run`).

pub mod completion;
pub mod flags;
pub mod migrate;
pub mod status;
pub mod verify;
