//! The launch pipeline, one module per step: resolution (a spec becomes an
//! immutable revision, through a provider plugin and the ref cache),
//! single-flight builds, and the run that ties them to the registry, a build
//! executor and a launcher. The events a client sees are [`crate::events`].

mod credentials;
mod flight;
pub mod policy;
mod resolve;
mod run;

pub use credentials::{CredentialError, UserCredentials};
pub use flight::{Flight, Flights, Item, Joined, Outcome, Reader};
pub use policy::SpecPolicy;
pub use resolve::{Notice, ResolveError, Resolved, Resolver};
pub use run::{Launch, Pipeline};
