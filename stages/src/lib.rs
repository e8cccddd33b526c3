//! mixlab's stages as a library: what a stage needs besides its own crate's algorithm.
//!
//! | module | owns |
//! |---|---|
//! | [`run_dir`] | the run directory (`runs/<name>/`): resolved configuration, hashes, `done` marker |
//! | [`training`] | the training stage: a run directory trained or resumed, with a progress bar |
//! | [`locks`] | the directory locks writing stages hold |
//! | [`signals`] | signal dispositions and clean stops of training on `SIGINT`/`SIGTERM` |
//! | [`Usage`] | the marker of usage and configuration errors |
//!
//! Only this crate touches the layout of a run directory (DESIGN.md).

pub mod locks;
pub mod run_dir;
pub mod signals;
pub mod training;
mod usage;

pub use usage::Usage;
