//! Real faults: a filesystem that fills up (a size-limited tmpfs; mounting
//! needs root, as the engine of these tests does), and a TCP proxy in front of
//! a service that can cut it off mid-conversation.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A tmpfs of a fixed size, unmounted on drop.
pub struct SmallDisk {
    pub dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(bytes: u64) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes}"),
                "bindery-test",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "a size-limited tmpfs cannot be mounted (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Grows or shrinks the filesystem, keeping what is on it.
    pub fn resize(&self, bytes: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Bytes in use.
    pub fn used(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(self.path())
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Every file left on it, relative to its root.
    pub fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    out.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), self.path(), &mut out);
        out
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
    }
}

const PASS: u8 = 0;
const CUT_ON_MATCH: u8 = 1;
const DOWN: u8 = 2;
const HOLD_ON_MATCH: u8 = 3;

/// A loopback proxy to `upstream`, one request per connection (it asks for
/// `Connection: close`). Once armed, the first request whose request line
/// contains every word of the pattern is dropped unanswered, and from then
/// on the proxy refuses every connection, as a server that died mid-push
/// would. Or such requests are held until the test restores or cuts it.
pub struct CutProxy {
    pub port: u16,
    mode: Arc<AtomicU8>,
    pattern: Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CutProxy {
    pub async fn start(upstream: u16) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, pattern) = (
            Arc::new(AtomicU8::new(PASS)),
            Arc::new(std::sync::Mutex::new(String::new())),
        );
        let (m, p) = (mode.clone(), pattern.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (m, p) = (m.clone(), p.clone());
                tokio::spawn(async move {
                    let _ = relay(client, upstream, &m, &p).await;
                });
            }
        });
        CutProxy {
            port,
            mode,
            pattern,
            task,
        }
    }

    /// Cuts the upstream off at the first request line containing `pattern`.
    pub fn cut_at(&self, pattern: &str) {
        *self.pattern.lock().unwrap() = pattern.into();
        self.mode.store(CUT_ON_MATCH, Ordering::SeqCst);
    }

    /// Holds every request whose request line contains each word of
    /// `pattern` (e.g. `PUT /manifests/`) until [`CutProxy::restore`] lets
    /// them through or [`CutProxy::cut`] drops them.
    pub fn hold_at(&self, pattern: &str) {
        *self.pattern.lock().unwrap() = pattern.into();
        self.mode.store(HOLD_ON_MATCH, Ordering::SeqCst);
    }

    /// The upstream dies now.
    pub fn cut(&self) {
        self.mode.store(DOWN, Ordering::SeqCst);
    }

    /// Whether the cut happened.
    pub fn is_down(&self) -> bool {
        self.mode.load(Ordering::SeqCst) == DOWN
    }

    /// The upstream is back.
    pub fn restore(&self) {
        self.mode.store(PASS, Ordering::SeqCst);
    }
}

async fn relay(
    mut client: TcpStream,
    upstream: u16,
    mode: &AtomicU8,
    pattern: &std::sync::Mutex<String>,
) -> std::io::Result<()> {
    if mode.load(Ordering::SeqCst) == DOWN {
        return Ok(());
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let request_line = text.lines().next().unwrap_or_default();
    let matches = || {
        pattern
            .lock()
            .unwrap()
            .split_whitespace()
            .all(|word| request_line.contains(word))
    };
    match mode.load(Ordering::SeqCst) {
        CUT_ON_MATCH if matches() => {
            mode.store(DOWN, Ordering::SeqCst);
            return Ok(());
        }
        HOLD_ON_MATCH if matches() => {
            while mode.load(Ordering::SeqCst) == HOLD_ON_MATCH {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            if mode.load(Ordering::SeqCst) == DOWN {
                return Ok(());
            }
        }
        _ => {}
    }
    let mut rewritten: String = text
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(("127.0.0.1", upstream)).await?;
    server.write_all(rewritten.as_bytes()).await?;
    server.write_all(&head[end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
