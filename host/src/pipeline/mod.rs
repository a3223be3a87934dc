//! The launch pipeline, one module per step. Resolution comes first: a spec
//! becomes an immutable revision, through a provider plugin and the ref cache.

mod policy;
mod resolve;

pub use policy::SpecPolicy;
pub use resolve::{Notice, ResolveError, Resolved, Resolver};
