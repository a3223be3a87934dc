//! The `popular` pool policy: an image launched often lately gets ready
//! servers in proportion to its recent launches, up to a cap per image; one
//! launched rarely gets none, so the pool holds only what is likely claimed.
use bindery_sdk::prelude::*;

pub struct Popular;

bindery_sdk::config! {
    /// The policy's settings, from the operator's `[plugins.popular.config]`.
    pub struct Rules {
        /// one ready server per this many recent launches (default 3)
        launches_per_server: f64 = 3.0,
        /// recent launches below which an image gets none (default 2)
        min_launches: f64 = 2.0,
        /// ready servers one image may have (default 3)
        max_per_image: u32 = 3,
    }
}

impl Rules {
    /// The settings, checked.
    fn checked(ctx: &impl Context) -> Result<Rules, PluginError> {
        let rules = Rules::read(ctx)?;
        // NaN is refused too: it is not greater than 0.
        if rules.launches_per_server.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(PluginError::InvalidConfig(format!(
                "launches_per_server must be more than 0, not {}",
                rules.launches_per_server
            )));
        }
        if rules.min_launches.is_nan() {
            return Err(PluginError::InvalidConfig(
                "min_launches must be a number, not NaN".into(),
            ));
        }
        Ok(rules)
    }

    fn size(&self, image: &ImageDemand) -> u32 {
        let launches = image.recent_launches;
        // A count that is NaN gets none, as one below the minimum.
        if launches.is_nan() || launches < self.min_launches {
            return 0;
        }
        let wanted = (launches / self.launches_per_server).ceil();
        // `as` saturates, and the cap bounds it anyway.
        (wanted as u32).min(self.max_per_image)
    }
}

impl PoolPolicy for Popular {
    type Config = Rules;

    fn sizes(
        ctx: &impl Context,
        _now_ms: u64,
        _bounds: PoolBounds,
        images: Vec<ImageDemand>,
    ) -> Result<Vec<u32>, PluginError> {
        let rules = Rules::checked(ctx)?;
        Ok(images.iter().map(|i| rules.size(i)).collect())
    }
}

bindery_sdk::export_pool_policy!(Popular);

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_sdk::testing::MockContext;

    fn image(recent_launches: f64) -> ImageDemand {
        ImageDemand {
            image: "registry.example.org/binder/i-x:abc".into(),
            repo_url: "https://github.com/a/b".into(),
            provider: "gh".into(),
            spec: "a/b/HEAD".into(),
            recent_launches,
            last_launch_ms: 0,
            pooled: 0,
        }
    }

    fn sizes(ctx: &MockContext, launches: &[f64]) -> Result<Vec<u32>, PluginError> {
        let bounds = PoolBounds {
            max_servers: 10,
            quota_room: None,
        };
        Popular::sizes(ctx, 0, bounds, launches.iter().map(|l| image(*l)).collect())
    }

    #[test]
    fn servers_follow_recent_launches_up_to_the_cap() {
        let ctx = MockContext::new();
        assert_eq!(
            sizes(&ctx, &[0.0, 1.9, 2.0, 3.0, 3.1, 7.0, 1e9, f64::NAN]).unwrap(),
            [0, 0, 1, 1, 2, 3, 3, 0]
        );
        let ctx = MockContext::new()
            .with_config("launches_per_server", "0.5")
            .with_config("min_launches", "0")
            .with_config("max_per_image", "10");
        assert_eq!(sizes(&ctx, &[0.0, 0.2, 2.0]).unwrap(), [0, 1, 4]);
    }

    #[test]
    fn settings_that_make_no_sense_are_refused() {
        for (key, value) in [
            ("launches_per_server", "0"),
            ("launches_per_server", "-1"),
            ("launches_per_server", "NaN"),
            ("max_per_image", "-1"),
            ("min_launches", "many"),
            ("min_launches", "NaN"),
        ] {
            let ctx = MockContext::new().with_config(key, value);
            let err = sizes(&ctx, &[5.0]).unwrap_err();
            assert!(
                matches!(&err, PluginError::InvalidConfig(m) if m.contains(key)),
                "{key}={value}: {err:?}"
            );
        }
    }
}
