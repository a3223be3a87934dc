//! A real headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages ending in NUL on fds 3 and 4),
//! so tests can wait for what a page does after it loads.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct Browser {
    child: Child,
    to_browser: std::io::PipeWriter,
    from_browser: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with one blank page attached.
    pub fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (chrome_reads, to_browser) = std::io::pipe().unwrap();
        let (from_chrome, chrome_writes) = std::io::pipe().unwrap();
        let (r, w) = (chrome_reads.as_raw_fd(), chrome_writes.as_raw_fd());
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ])
            .args([
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                "--window-size=1100,900",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(profile.path().join("stderr.log")).unwrap());
        // The pipes are close-on-exec, and dup2 onto the fd itself keeps the
        // flag (and `w` may be 3, which the first dup2 would replace): copy
        // both above 4 first, so each dup2 makes a fresh fd that stays open.
        // SAFETY: only async-signal-safe fcntl, dup2 and close calls between
        // fork and exec.
        unsafe {
            command.pre_exec(move || {
                let (r, w) = (
                    libc::fcntl(r, libc::F_DUPFD, 10),
                    libc::fcntl(w, libc::F_DUPFD, 10),
                );
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(r);
                libc::close(w);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .expect("chromium (Debian package chromium; scripts/setup.sh installs it)");
        drop((chrome_reads, chrome_writes));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_chrome);
            let mut buf = Vec::new();
            while reader.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop();
                if let Ok(v) = serde_json::from_slice(&buf)
                    && tx.send(v).is_err()
                {
                    return;
                }
                buf.clear();
            }
        });
        let mut browser = Browser {
            child,
            to_browser,
            from_browser: rx,
            next_id: 0,
            session: String::new(),
            profile,
        };
        let target = browser.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let reply = self.reply(session, method, params);
        assert!(reply.get("error").is_none(), "{method}: {reply}");
        reply["result"].clone()
    }

    /// The whole reply to `method`: its `result` or its `error`.
    fn reply(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            message["sessionId"] = s.into();
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        if let Err(e) = self.to_browser.write_all(&bytes) {
            panic!(
                "Chromium went away before {method} ({e}): {}",
                self.post_mortem()
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(reply) = self.from_browser.recv_timeout(left) else {
                panic!("Chromium did not answer {method}: {}", self.post_mortem());
            };
            if reply["id"] == id {
                return reply;
            }
        }
    }

    /// How Chromium ended, and the end of what it wrote to stderr.
    fn post_mortem(&mut self) -> String {
        let status = self.child.try_wait().ok().flatten();
        let log =
            std::fs::read_to_string(self.profile.path().join("stderr.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("exit status {status:?}; stderr ends:\n{}", tail.join("\n"))
    }

    /// Lets pages of `origin` use the clipboard, as a user's click would
    /// (and keeps the page focused, which writing to it needs).
    pub fn grant_clipboard(&mut self, origin: &str) {
        self.call(
            None,
            "Browser.grantPermissions",
            json!({ "origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"] }),
        );
        let session = self.session.clone();
        self.call(
            Some(&session),
            "Emulation.setFocusEmulationEnabled",
            json!({ "enabled": true }),
        );
    }

    /// Lets scripts the test evaluates import modules the page's
    /// Content-Security-Policy would refuse (a client library under test).
    pub fn bypass_csp(&mut self) {
        let session = self.session.clone();
        self.call(
            Some(&session),
            "Page.setBypassCSP",
            json!({ "enabled": true }),
        );
    }

    /// Opens `url` in the page.
    pub fn navigate(&mut self, url: &str) {
        let session = self.session.clone();
        self.call(Some(&session), "Page.navigate", json!({ "url": url }));
    }

    /// Evaluates `expression` in the page; its value as JSON (null while the page is between documents).
    pub fn eval(&mut self, expression: &str) -> Value {
        let session = self.session.clone();
        let reply = self.reply(
            Some(&session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        // A navigation that starts during the evaluation ends it without a value.
        if reply["error"]["message"] == "Inspected target navigated or closed" {
            return Value::Null;
        }
        assert!(reply.get("error").is_none(), "Runtime.evaluate: {reply}");
        reply["result"]["result"]["value"].clone()
    }

    /// Polls `expression` until `done` accepts its value; panics after `timeout`.
    pub fn wait_for(
        &mut self,
        expression: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expression);
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for `{expression}`; last value {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Presses `key` (`Tab`, `Enter` or a space) as a person at a keyboard would.
    pub fn press(&mut self, key: &str) {
        let (code, virtual_key, text) = match key {
            "Tab" => ("Tab", 9, ""),
            "Enter" => ("Enter", 13, "\r"),
            " " => ("Space", 32, " "),
            other => panic!("no key code for {other:?}"),
        };
        let session = self.session.clone();
        for kind in ["keyDown", "keyUp"] {
            let mut event = json!({ "type": kind, "key": key, "code": code, "windowsVirtualKeyCode": virtual_key });
            if kind == "keyDown" && !text.is_empty() {
                event["text"] = json!(text);
            }
            self.call(Some(&session), "Input.dispatchKeyEvent", event);
        }
    }

    /// A PNG of the page.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let session = self.session.clone();
        let r = self.call(
            Some(&session),
            "Page.captureScreenshot",
            json!({ "format": "png" }),
        );
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
