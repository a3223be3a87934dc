//! A plugin's configuration (`[plugins.<name>.config]`) as a typed struct.
//!
//! [`config!`](crate::config!) declares it: each field is a config key, its
//! doc comment the key's description, its type how the value is read, and
//! `= default` makes it optional (so does an `Option` type). The plugin's
//! metadata lists the keys, so the host refuses to load the plugin while a
//! required one is unset; [`PluginConfig::read`] reads them, and a value
//! that does not parse is an `invalid-config` error naming the key.
//!
//! ```
//! bindery_sdk::config! {
//!     /// How the campus provider is set up.
//!     pub struct Campus {
//!         /// The git server's URL.
//!         base_url: String,
//!         /// Seconds before a request gives up.
//!         timeout_secs: u64 = 10,
//!         /// A mirror to try first.
//!         mirror: Option<String>,
//!     }
//! }
//! use bindery_sdk::config::PluginConfig;
//! use bindery_sdk::testing::MockContext;
//! let ctx = MockContext::new().with_config("base_url", "https://git.example.edu");
//! let c = Campus::read(&ctx).unwrap();
//! assert_eq!((c.base_url.as_str(), c.timeout_secs, c.mirror), ("https://git.example.edu", 10, None));
//! assert!(Campus::keys()[0].required && !Campus::keys()[1].required);
//! ```

use serde::de::DeserializeOwned;

use crate::Context;
use crate::types::{ConfigKey, PluginError};

/// A plugin's configuration: its keys, and how they are read.
pub trait PluginConfig: Sized {
    /// The config keys, for the plugin's metadata.
    fn keys() -> Vec<ConfigKey>;
    /// The values the operator set, parsed.
    fn read(ctx: &impl Context) -> Result<Self, PluginError>;
}

/// No configuration.
impl PluginConfig for () {
    fn keys() -> Vec<ConfigKey> {
        Vec::new()
    }
    fn read(_: &impl Context) -> Result<Self, PluginError> {
        Ok(())
    }
}

/// Two configurations side by side: an SDK module's keys (e.g.
/// [`repo2docker::Settings`](crate::repo2docker::Settings)) and the
/// plugin's own.
impl<A: PluginConfig, B: PluginConfig> PluginConfig for (A, B) {
    fn keys() -> Vec<ConfigKey> {
        let mut keys = A::keys();
        keys.extend(B::keys());
        keys
    }
    fn read(ctx: &impl Context) -> Result<Self, PluginError> {
        Ok((A::read(ctx)?, B::read(ctx)?))
    }
}

/// A type a config value is read as: from the string the host gives (a
/// TOML array or table comes as its TOML text). A plugin implements it for
/// a type of its own, such as a list of rules.
pub trait ConfigValue: Sized {
    /// Whether the key must be set when the field has no default.
    const REQUIRED: bool = true;
    /// What a value must look like, for the error.
    const EXPECTED: &'static str;
    /// The value, parsed; else why not (may be empty: [`Self::EXPECTED`]
    /// says it).
    fn parse(value: &str) -> Result<Self, String>;
    /// The value when the key is unset and the field has no default.
    fn unset() -> Option<Self> {
        None
    }
}

macro_rules! from_str {
    ($expected:literal: $($t:ty),*) => {$(
        impl ConfigValue for $t {
            const EXPECTED: &'static str = $expected;
            fn parse(value: &str) -> Result<Self, String> {
                value.trim().parse().map_err(|_| String::new())
            }
        }
    )*};
}

from_str!("a whole number": u8, u16, u32, u64, usize, i32, i64);
from_str!("a number": f32, f64);
from_str!("true or false": bool);

impl ConfigValue for String {
    const EXPECTED: &'static str = "text";
    fn parse(value: &str) -> Result<Self, String> {
        Ok(value.to_string())
    }
}

/// An optional key: `None` when unset.
impl<T: ConfigValue> ConfigValue for Option<T> {
    const REQUIRED: bool = false;
    const EXPECTED: &'static str = T::EXPECTED;
    fn parse(value: &str) -> Result<Self, String> {
        T::parse(value).map(Some)
    }
    fn unset() -> Option<Self> {
        Some(None)
    }
}

/// A list or table the operator writes in TOML (which the host passes as
/// its TOML text), read with serde.
#[derive(Debug, Clone, PartialEq)]
pub struct Toml<T>(pub T);

impl<T: DeserializeOwned> ConfigValue for Toml<T> {
    const EXPECTED: &'static str = "TOML of the documented shape";
    fn parse(value: &str) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Wrapped<T> {
            value: T,
        }
        toml::from_str::<Wrapped<T>>(&format!("value = {value}"))
            .map(|w| Toml(w.value))
            .map_err(|e| e.to_string())
    }
}

/// The key's description: its doc comment's lines.
#[doc(hidden)]
pub fn describe(doc: &[&str]) -> String {
    doc.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
}

/// Reads `key` as `T`, else `default`, else `T`'s unset value.
#[doc(hidden)]
pub fn value<T: ConfigValue>(
    ctx: &impl Context,
    key: &str,
    default: Option<T>,
) -> Result<T, PluginError> {
    match ctx.config(key) {
        Some(v) => T::parse(&v).map_err(|why| {
            let why = if why.is_empty() {
                why
            } else {
                format!(": {why}")
            };
            PluginError::InvalidConfig(format!("{key} must be {}, not {v:?}{why}", T::EXPECTED))
        }),
        None => default
            .or_else(T::unset)
            .ok_or_else(|| PluginError::InvalidConfig(format!("{key} is not set"))),
    }
}

/// Whether a field of type `T` is a required key.
#[doc(hidden)]
pub const fn required<T: ConfigValue>(has_default: bool) -> bool {
    T::REQUIRED && !has_default
}

/// Declares a plugin's configuration struct; see [the module](mod@crate::config).
#[macro_export]
macro_rules! config {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty $(= $default:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl $crate::config::PluginConfig for $name {
            fn keys() -> ::std::vec::Vec<$crate::types::ConfigKey> {
                ::std::vec![$(
                    $crate::types::ConfigKey {
                        name: ::std::stringify!($field).into(),
                        description: $crate::config::describe(&[$($doc),*]),
                        required: $crate::config::required::<$ty>($crate::config!(@has $($default)?)),
                    },
                )*]
            }

            fn read(
                ctx: &impl $crate::Context,
            ) -> ::std::result::Result<Self, $crate::types::PluginError> {
                ::std::result::Result::Ok($name {
                    $( $field: $crate::config::value::<$ty>(
                        ctx,
                        ::std::stringify!($field),
                        $crate::config!(@default $($default)?),
                    )?, )*
                })
            }
        }
    };
    (@has $default:expr) => { true };
    (@has) => { false };
    (@default $default:expr) => { ::std::option::Option::Some($default) };
    (@default) => { ::std::option::Option::None };
}
