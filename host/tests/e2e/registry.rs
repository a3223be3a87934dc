//! Image look-ups against a real OCI registry (Debian's `docker-registry`),
//! anonymous and behind htpasswd basic auth, and with the registry down.

use crate::support;

use bindery::cache::Cache;
use bindery::config::{RegistryConfig, SecretSource};
use bindery::registry::{Registry, RegistryError};
use support::registry::OciRegistry;

fn config(registry: &OciRegistry) -> RegistryConfig {
    RegistryConfig {
        url: Some(registry.url().parse().unwrap()),
        image_prefix: format!("{}/binder-", registry.host()),
        retries: 2,
        timeout_ms: 2_000,
        ..Default::default()
    }
}

#[tokio::test]
async fn present_and_missing_images_anonymously() {
    let server = OciRegistry::start(None);
    let registry = Registry::new(&config(&server), None).unwrap();
    let image = registry.image_name("binder-examples-octave", "1479e02b");
    assert!(
        image.starts_with(&format!(
            "{}/binder-binder-2dexamples-2doctave-03025a:",
            server.host()
        )),
        "{image}"
    );
    assert_eq!(
        registry.lookup(&image).await.unwrap(),
        None,
        "nothing pushed yet"
    );

    let (repository, tag) = image.split_once('/').unwrap().1.split_once(':').unwrap();
    let digest = server.push(repository, tag).await;
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(registry.lookup(&image).await.unwrap(), Some(digest));
    assert_eq!(
        registry
            .lookup(&format!("{}/binder-other:1", server.host()))
            .await
            .unwrap(),
        None
    );
    registry
        .check()
        .await
        .expect("a healthy registry passes the health probe");
}

#[tokio::test]
async fn basic_auth_from_config_or_docker_config() {
    let server = OciRegistry::start(Some(("builder", "s3cret")));
    let digest = server.push("binder-private", "abc").await;
    let image = format!("{}/binder-private:abc", server.host());

    let anonymous = Registry::new(&config(&server), None).unwrap();
    let e = anonymous.lookup(&image).await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e:?}");
    assert!(
        e.to_string().contains("refused Bindery's credentials"),
        "{e}"
    );
    assert!(
        anonymous.check().await.is_err(),
        "the health probe sees the refusal"
    );

    let var = "BINDERY_TEST_REGISTRY_PASSWORD_UNUSED";
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "s3cret\n").unwrap();
    let with_password = RegistryConfig {
        username: Some("builder".into()),
        password: Some(SecretSource::File(password_file)),
        ..config(&server)
    };
    let registry = Registry::new(&with_password, None).unwrap();
    assert_eq!(registry.lookup(&image).await.unwrap(), Some(digest.clone()));
    assert_eq!(
        registry
            .lookup(&format!("{}/binder-private:missing", server.host()))
            .await
            .unwrap(),
        None
    );

    let wrong = RegistryConfig {
        username: Some("builder".into()),
        password: Some(SecretSource::Env(var.into())),
        ..config(&server)
    };
    let e = Registry::new(&wrong, None)
        .unwrap()
        .lookup(&image)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e:?}");

    let docker_config = dir.path().join("config.json");
    let auth = base64_encode("builder:s3cret");
    std::fs::write(
        &docker_config,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, server.host()),
    )
    .unwrap();
    let from_file = RegistryConfig {
        docker_config: Some(docker_config),
        ..config(&server)
    };
    assert_eq!(
        Registry::new(&from_file, None)
            .unwrap()
            .lookup(&image)
            .await
            .unwrap(),
        Some(digest)
    );
}

#[tokio::test]
async fn a_registry_that_is_down_is_a_clear_error_and_found_images_are_remembered() {
    let mut server = OciRegistry::start(None);
    let digest = server.push("binder-cached", "v1").await;
    let image = format!("{}/binder-cached:v1", server.host());
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let registry = Registry::new(&config(&server), Some(cache.images().unwrap())).unwrap();
    assert_eq!(registry.lookup(&image).await.unwrap(), Some(digest.clone()));

    server.stop();
    assert_eq!(
        registry.lookup(&image).await.unwrap(),
        Some(digest),
        "a found image is believed for found_ttl_secs"
    );
    let e = registry
        .lookup(&format!("{}/binder-cached:v2", server.host()))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Unreachable { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&format!(
            "the image registry at {} cannot be reached",
            server.url()
        )),
        "{e}"
    );
    assert!(registry.check().await.is_err());
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_from_the_registrys_challenge() {
    let tokens = support::registry::TokenService::start("builder", "s3cret").await;
    let server = OciRegistry::start_token(&tokens);
    let digest = server.push("binder-tokened", "abc").await;
    let image = format!("{}/binder-tokened:abc", server.host());

    let e = Registry::new(&config(&server), None)
        .unwrap()
        .lookup(&image)
        .await
        .unwrap_err();
    assert!(
        matches!(e, RegistryError::Unauthorized { .. }),
        "without credentials the token service refuses: {e:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret").unwrap();
    let with_password = RegistryConfig {
        username: Some("builder".into()),
        password: Some(SecretSource::File(password)),
        ..config(&server)
    };
    let registry = Registry::new(&with_password, None).unwrap();
    let before = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(registry.lookup(&image).await.unwrap(), Some(digest));
    assert_eq!(
        registry
            .lookup(&format!("{}/binder-tokened:missing", server.host()))
            .await
            .unwrap(),
        None
    );
    assert!(
        tokens.issued.load(std::sync::atomic::Ordering::SeqCst) > before,
        "the look-ups went through the token service"
    );
}
