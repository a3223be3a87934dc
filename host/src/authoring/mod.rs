//! Tools for plugin authors: `bindery plugin new` and `bindery plugin build`.

pub mod cargo;

pub mod template;

pub use template::{TemplateError, new_plugin};
