//! Hostile plugins: each misbehaviour fails only its own call, with a typed
//! error, while other calls go on and the next call to the same plugin works.
//! The plugin is a real wasm32-wasip2 component built from
//! `tests/plugins/hostile`.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bindery::config::{PluginConfig, RuntimeConfig, SecretSource};
use bindery_runtime::bindings::PluginError;
use bindery_runtime::{CallError, PluginHost};
use support::*;

async fn hostile(
    plugin: PluginConfig,
    runtime: RuntimeConfig,
) -> (Arc<PluginHost>, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let config = config_with(data.path(), "hostile", plugin, runtime);
    let host = PluginHost::start(&config)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    (host, data)
}

fn granted(hosts: &[&str], private: &[&str]) -> PluginConfig {
    PluginConfig {
        hosts: hosts.iter().map(std::string::ToString::to_string).collect(),
        private_networks: private.iter().map(|s| s.parse().unwrap()).collect(),
        secrets: [(
            "token".to_string(),
            SecretSource::Env("HOSTILE_TEST_TOKEN".into()),
        )]
        .into(),
        ..plugin_at(&fixture("hostile-provider"))
    }
}

/// The plugin still answers a good call.
async fn still_works(host: &PluginHost) {
    let r = host
        .resolve("hostile", "ok/again")
        .await
        .expect("call")
        .expect("resolution");
    assert_eq!(r.resolved_ref, "ok-again");
}

/// The plugin's own error, as a string, for assertions on what it was told.
async fn plugin_error(host: &PluginHost, spec: &str) -> String {
    match host.resolve("hostile", spec).await {
        Ok(Err(PluginError::Internal(m))) => m,
        other => panic!("expected the plugin to report an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_fails_within_the_deadline_while_other_calls_succeed() {
    let runtime = RuntimeConfig {
        call_timeout_ms: 400,
        ..Default::default()
    };
    let (host, _data) = hostile(granted(&["api.example.org"], &[]), runtime).await;

    let looping = {
        let host = host.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            (host.resolve("hostile", "loop").await, t.elapsed())
        })
    };
    // Good calls made while the loop spins all succeed.
    let good: Vec<_> = (0..20)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move { host.resolve("hostile", &format!("ok/{i}")).await })
        })
        .collect();
    for (i, g) in good.into_iter().enumerate() {
        assert_eq!(
            g.await.unwrap().unwrap().unwrap().resolved_ref,
            format!("ok-{i}")
        );
    }
    let (result, elapsed) = looping.await.unwrap();
    match result {
        Err(CallError::Timeout { plugin, after }) => {
            assert_eq!(plugin, "hostile");
            assert_eq!(after, Duration::from_millis(400));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        elapsed < Duration::from_millis(500),
        "the loop ran {elapsed:?}, past deadline + 100 ms"
    );
    still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_calls_together_stay_within_the_shared_memory_budget() {
    let (slow, _) = http_server(b"late".to_vec(), Duration::from_secs(30)).await;
    let runtime = RuntimeConfig {
        memory_budget_mib: 24,
        call_timeout_ms: 5_000,
        ..Default::default()
    };
    let (host, _data) = hostile(granted(&["127.0.0.1"], &["127.0.0.0/8"]), runtime).await;
    assert_eq!(
        host.memory_in_use(),
        (0, 24 << 20),
        "nothing held between calls"
    );
    // A call waiting on its upstream holds its instance's memory.
    let hanging = {
        let host = host.clone();
        let spec = format!("fetch/http://127.0.0.1:{slow}/");
        tokio::spawn(async move { host.resolve("hostile", &spec).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.memory_in_use().0 == 0 {
        assert!(Instant::now() < deadline, "the call holds no memory");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "one waiting call holds {} KiB",
        host.memory_in_use().0 >> 10
    );
    // A bomb stops at what the budget has left, well before its own 64 MiB.
    match host.resolve("hostile", "bomb").await {
        Err(e @ CallError::MemoryBudget { .. }) => {
            assert!(
                e.to_string()
                    .contains("plugin_runtime.memory_budget_mib (24 MiB)"),
                "{e}"
            );
        }
        other => panic!("expected the shared budget to stop it, got {other:?}"),
    }
    // Everything a call held comes back when it ends, however it ends.
    hanging.abort();
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.memory_in_use().0 != 0 {
        assert!(
            Instant::now() < deadline,
            "{:?} still held",
            host.memory_in_use()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    still_works(&host).await;
    assert_eq!(host.memory_in_use().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_hits_the_memory_cap() {
    let runtime = RuntimeConfig {
        memory_limit_mib: 32,
        ..Default::default()
    };
    let (host, _data) = hostile(granted(&["api.example.org"], &[]), runtime).await;
    match host.resolve("hostile", "bomb").await {
        Err(e @ CallError::OutOfMemory { .. }) => {
            assert_eq!(
                e.to_string(),
                "plugin `hostile` exceeded its memory limit of 32 MiB"
            );
        }
        other => panic!("expected out of memory, got {other:?}"),
    }
    still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_reported_with_its_message() {
    let (host, _data) = hostile(granted(&["api.example.org"], &[]), RuntimeConfig::default()).await;
    match host.resolve("hostile", "panic").await {
        Err(CallError::Trap { plugin, message }) => {
            assert_eq!(plugin, "hostile");
            assert!(
                message.contains("hostile plugin panics on purpose"),
                "{message}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_budgets_stop_busy_plugins() {
    let plugin = PluginConfig {
        fuel: Some(5_000_000),
        ..granted(&["api.example.org"], &[])
    };
    let (host, _data) = hostile(plugin, RuntimeConfig::default()).await;
    match host.resolve("hostile", "loop").await {
        Err(CallError::OutOfFuel { budget, .. }) => assert_eq!(budget, 5_000_000),
        other => panic!("expected out of fuel, got {other:?}"),
    }
    still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_were_not_granted_are_refused() {
    let (port, served) = http_server(b"hello".to_vec(), Duration::ZERO).await;
    let (host, _data) = hostile(
        granted(&["api.example.org"], &["127.0.0.0/8"]),
        RuntimeConfig::default(),
    )
    .await;
    let e = plugin_error(&host, &format!("fetch/http://127.0.0.1:{port}/")).await;
    assert_eq!(e, "HttpError::HostNotGranted(\"127.0.0.1\")");
    let e = plugin_error(&host, "fetch/https://evil.example.com/").await;
    assert_eq!(e, "HttpError::HostNotGranted(\"evil.example.com\")");
    let e = plugin_error(&host, "fetch/file:///etc/passwd").await;
    assert!(e.starts_with("HttpError::InvalidUrl("), "{e}");
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing may reach the server"
    );
    still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_names_that_resolve_to_non_public_addresses_are_refused() {
    let (port, served) = http_server(b"hello".to_vec(), Duration::ZERO).await;
    // Every host is granted, but no private network is.
    let (host, _data) = hostile(granted(&["*"], &[]), RuntimeConfig::default()).await;
    for url in [
        format!("http://localhost:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::1]:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.1.2.3/".to_string(),
        "http://192.168.0.1/".to_string(),
        "http://[::ffff:127.0.0.1]/".to_string(),
    ] {
        let e = plugin_error(&host, &format!("fetch/{url}")).await;
        assert!(e.starts_with("HttpError::AddressDenied("), "{url}: {e}");
    }
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing may reach the server"
    );
    still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_private_networks_are_reachable_and_responses_are_capped() {
    let (small, _) = http_server(b"hello".to_vec(), Duration::ZERO).await;
    let (big, _) = http_server(vec![b'x'; 2 << 20], Duration::ZERO).await;
    let mut runtime = RuntimeConfig::default();
    runtime.http.max_response_bytes = 1 << 20;
    let (host, _data) = hostile(
        granted(&["localhost", "127.0.0.1"], &["127.0.0.0/8", "::1/128"]),
        runtime,
    )
    .await;

    let r = host
        .resolve("hostile", &format!("fetch/http://localhost:{small}/"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.resolved_ref, "200:5");
    let e = plugin_error(&host, &format!("fetch/http://127.0.0.1:{big}/")).await;
    assert_eq!(e, format!("HttpError::TooLarge({})", 1 << 20));
    still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_whose_upstream_hangs_takes_only_its_own_call_slots() {
    let (slow, _) = http_server(b"late".to_vec(), Duration::from_secs(30)).await;
    let data = tempfile::tempdir().unwrap();
    let runtime = RuntimeConfig {
        call_timeout_ms: 1_500,
        max_concurrent_calls: 8,
        max_calls_per_plugin: 4,
        ..Default::default()
    };
    let mut config = config_with(
        data.path(),
        "stuck",
        granted(&["127.0.0.1"], &["127.0.0.0/8"]),
        runtime,
    );
    config
        .plugins
        .insert("hostile".into(), granted(&["api.example.org"], &[]));
    let host = PluginHost::start(&config)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    // Twice the shared slots' worth of calls whose upstream never answers.
    let stuck: Vec<_> = (0..16)
        .map(|_| {
            let host = host.clone();
            let spec = format!("fetch/http://127.0.0.1:{slow}/");
            tokio::spawn(async move { host.resolve("stuck", &spec).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    still_works(&host).await;
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "another plugin's call waited {:?} behind the stuck one",
        t.elapsed()
    );
    let (mut timed_out, mut busy) = (0, 0);
    for call in stuck {
        match call.await.unwrap() {
            Err(CallError::Timeout { .. }) => timed_out += 1,
            Err(e @ CallError::Busy { .. }) => {
                assert!(
                    e.to_string()
                        .contains("plugin_runtime.max_calls_per_plugin"),
                    "{e}"
                );
                busy += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    // Four at a time ran into the deadline; the rest waited no longer than one.
    assert!(
        timed_out >= 4 && busy >= 4,
        "{timed_out} timed out, {busy} busy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_nobody_waits_for_any_more_is_stopped() {
    let (slow, asked) = http_server(b"late".to_vec(), Duration::from_secs(30)).await;
    let data = tempfile::tempdir().unwrap();
    let runtime = RuntimeConfig {
        call_timeout_ms: 5_000,
        max_calls_per_plugin: 1,
        ..Default::default()
    };
    let config = config_with(
        data.path(),
        "hostile",
        granted(&["127.0.0.1"], &["127.0.0.0/8"]),
        runtime,
    );
    let plugins = PluginHost::start(&config)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let app = bindery::app::App::new(config, plugins).unwrap();
    let resolver = app.state.pipeline.resolver.clone();
    let spec = format!("fetch/http://127.0.0.1:{slow}/");
    // Two clients wait for one resolution whose upstream hangs; the first to
    // leave does not stop it for the second, who gets its answer.
    let (a, b) = tokio::join!(
        tokio::time::timeout(
            Duration::from_millis(300),
            resolver.resolve("hostile", &spec)
        ),
        tokio::time::timeout(
            Duration::from_millis(900),
            resolver.resolve("hostile", &spec)
        ),
    );
    assert!(a.is_err() && b.is_err(), "{a:?} {b:?}");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Once both have left, the call is stopped and its one slot is free.
    let t = Instant::now();
    match resolver.resolve("hostile", "ok/after").await {
        Ok(r) => assert_eq!(r.resolved_ref, "ok-after"),
        Err(e) => panic!("{e}"),
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "the next call waited {:?} for the abandoned one",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_host_import_is_cut_by_the_call_deadline() {
    let (slow, _) = http_server(b"late".to_vec(), Duration::from_secs(5)).await;
    let runtime = RuntimeConfig {
        call_timeout_ms: 300,
        ..Default::default()
    };
    let (host, _data) = hostile(granted(&["127.0.0.1"], &["127.0.0.0/8"]), runtime).await;
    let t = Instant::now();
    let r = host
        .resolve("hostile", &format!("fetch/http://127.0.0.1:{slow}/"))
        .await;
    assert!(matches!(r, Err(CallError::Timeout { .. })), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    still_works(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_given_only_by_name() {
    // SAFETY: this test binary's only reader of this variable is this test.
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("HOSTILE_TEST_TOKEN", "s3cret") };
    let (host, _data) = hostile(granted(&["api.example.org"], &[]), RuntimeConfig::default()).await;
    let r = host
        .resolve("hostile", "secret/token")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.resolved_ref, "secret-len-6");
    match host.resolve("hostile", "secret/HOME").await.unwrap() {
        Err(PluginError::Unauthorized(m)) => assert_eq!(m, "SecretError::NotGranted(\"HOME\")"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_do_not_follow_a_redirect_to_another_origin() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let redirect = |to: String| {
        move || async move {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, to)],
            )
        }
    };
    let app = axum::Router::new()
        .route(
            "/echo",
            axum::routing::get(|headers: axum::http::HeaderMap| async move {
                match headers.get("authorization") {
                    Some(v) => format!("auth-{}", v.to_str().unwrap().replace(' ', "-")),
                    None => "none".to_string(),
                }
            }),
        )
        .route("/same", axum::routing::get(redirect("/echo".into())))
        .route(
            "/away",
            axum::routing::get(redirect(format!("http://localhost:{port}/echo"))),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let data = tempfile::tempdir().unwrap();
    let secret = data.path().join("token");
    std::fs::write(&secret, "s3cret").unwrap();
    let plugin = PluginConfig {
        secrets: [("token".to_string(), SecretSource::File(secret))].into(),
        ..granted(&["127.0.0.1", "localhost"], &["127.0.0.0/8", "::1/128"])
    };
    let (host, _data) = hostile(plugin, RuntimeConfig::default()).await;
    let fetched = |path: &str| {
        let (host, spec) = (
            host.clone(),
            format!("fetch-authorized/http://127.0.0.1:{port}{path}"),
        );
        async move {
            host.resolve("hostile", &spec)
                .await
                .unwrap()
                .unwrap()
                .resolved_ref
        }
    };
    assert_eq!(fetched("/echo").await, "auth-token-s3cret");
    assert_eq!(fetched("/same").await, "auth-token-s3cret", "same origin");
    assert_eq!(fetched("/away").await, "none", "another host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_and_logs_do_not_break_the_call() {
    let (host, _data) = hostile(granted(&["api.example.org"], &[]), RuntimeConfig::default()).await;
    let long = "x".repeat(100_000);
    let r = host
        .resolve("hostile", &format!("log/{long}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.resolved_ref, "logged");
}

/// A server that sends an ETag and answers `If-None-Match` with 304; returns
/// its port and the number of 304s it sent.
async fn etag_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let not_modified = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = not_modified.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&req).to_ascii_lowercase();
            let reply = if head.contains("if-none-match: \"v1\"") {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\nconnection: close\r\n\r\n".to_string()
            } else {
                "HTTP/1.1 200 OK\r\netag: \"v1\"\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello".to_string()
            };
            let _ = sock.write_all(reply.as_bytes()).await;
        }
    });
    (port, not_modified)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_with_an_etag_are_revalidated_not_refetched() {
    let (port, not_modified) = etag_server().await;
    let (host, _data) = hostile(
        granted(&["127.0.0.1"], &["127.0.0.0/8"]),
        RuntimeConfig::default(),
    )
    .await;
    let spec = format!("fetch/http://127.0.0.1:{port}/commits/main");
    for _ in 0..3 {
        // The plugin sees the full body each time; the server sends it once.
        assert_eq!(
            host.resolve("hostile", &spec)
                .await
                .unwrap()
                .unwrap()
                .resolved_ref,
            "200:5"
        );
    }
    assert_eq!(not_modified.load(std::sync::atomic::Ordering::SeqCst), 2);
}
