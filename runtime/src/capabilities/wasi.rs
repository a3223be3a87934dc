//! The WASI a plugin gets: enough for Rust's standard library (streams, the
//! CLI environment, clocks, randomness), with an empty context: no arguments,
//! no environment variables, no preopened directories. Filesystem, sockets and
//! wasi:http are not linked at all, so a component that imports them fails to
//! load. Its stdout and stderr become log lines under its name.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::p2::bindings::{cli, clocks, random};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{WasiCtx, WasiView};

use super::CallState;
use super::basic::truncate;

/// WASI packages by their verdict at load time.
pub(crate) enum WasiInterface {
    /// Linked (with an empty context).
    Linked,
    /// Never linked; the text says why, for the load error.
    Refused(&'static str),
}

impl WasiInterface {
    /// The verdict for `wasi:<package>/<interface>`.
    pub(crate) fn classify(package: &str) -> WasiInterface {
        match package {
            "io" | "cli" | "clocks" | "random" => WasiInterface::Linked,
            "filesystem" => WasiInterface::Refused(
                "plugins have no file system; a build strategy reads the repository through `repo-files`",
            ),
            "sockets" => WasiInterface::Refused(
                "plugins have no sockets; outbound requests go through the `http` and `git` capabilities",
            ),
            "http" => WasiInterface::Refused(
                "wasi:http is not offered; use the `bindery:plugin/http` capability",
            ),
            _ => WasiInterface::Refused("this WASI package is not offered to plugins"),
        }
    }
}

struct HasTable;

impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

pub(super) fn add_to_linker(l: &mut Linker<CallState>) -> wasmtime::Result<()> {
    use wasmtime_wasi_io::bindings::wasi::io;
    fn table(s: &mut CallState) -> &mut ResourceTable {
        s.ctx().table
    }
    io::error::add_to_linker::<CallState, HasTable>(l, table)?;
    io::poll::add_to_linker::<CallState, HasTable>(l, table)?;
    io::streams::add_to_linker::<CallState, HasTable>(l, table)?;
    clocks::wall_clock::add_to_linker::<CallState, WasiClocks>(l, CallState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<CallState, WasiClocks>(l, CallState::clocks)?;
    random::random::add_to_linker::<CallState, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    random::insecure::add_to_linker::<CallState, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<CallState, WasiRandom>(l, |s| s.ctx().ctx.random())?;
    cli::exit::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::environment::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::stdin::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::stdout::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::stderr::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_input::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_output::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_stdin::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_stdout::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    cli::terminal_stderr::add_to_linker::<CallState, WasiCli>(l, CallState::cli)?;
    Ok(())
}

/// Bytes of stdout plus stderr one call may write before the rest is dropped.
const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// How much of stderr is kept to explain a trap (a panic message lands there).
const STDERR_TAIL_BYTES: usize = 2 * 1024;

#[derive(Default)]
struct OutputState {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    written: usize,
    stderr_tail: Vec<u8>,
}

/// A call's stdout and stderr: forwarded to the log line by line, and the tail
/// of stderr kept for error messages.
#[derive(Clone)]
pub(crate) struct OutputCapture {
    plugin: Arc<str>,
    state: Arc<Mutex<OutputState>>,
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl OutputCapture {
    pub(super) fn new(plugin: Arc<str>) -> Self {
        OutputCapture {
            plugin,
            state: Arc::default(),
        }
    }

    /// The empty WASI context with this capture as stdout and stderr.
    pub(super) fn wasi_ctx(&self) -> WasiCtx {
        WasiCtx::builder()
            .stdout(OutputPipe {
                capture: self.clone(),
                stream: Stream::Stdout,
            })
            .stderr(OutputPipe {
                capture: self.clone(),
                stream: Stream::Stderr,
            })
            .allow_blocking_current_thread(false)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build()
    }

    fn write(&self, stream: Stream, buf: &[u8]) {
        let mut st = self.state.lock().expect("output lock");
        let room = MAX_OUTPUT_BYTES.saturating_sub(st.written);
        let kept = &buf[..buf.len().min(room)];
        st.written += kept.len();
        if let Stream::Stderr = stream {
            st.stderr_tail.extend_from_slice(buf);
            let excess = st.stderr_tail.len().saturating_sub(STDERR_TAIL_BYTES);
            st.stderr_tail.drain(..excess);
        }
        let pending = match stream {
            Stream::Stdout => &mut st.stdout,
            Stream::Stderr => &mut st.stderr,
        };
        pending.extend_from_slice(kept);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            self.emit(stream, &line[..line.len() - 1]);
        }
    }

    fn emit(&self, stream: Stream, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = truncate(&text, 4096);
        match stream {
            Stream::Stdout => tracing::info!(plugin = %self.plugin, stream = "stdout", "{text}"),
            Stream::Stderr => tracing::warn!(plugin = %self.plugin, stream = "stderr", "{text}"),
        }
    }

    /// Emits unterminated last lines; called when the call ends.
    pub(crate) fn flush(&self) {
        let (out, err) = {
            let mut st = self.state.lock().expect("output lock");
            (
                std::mem::take(&mut st.stdout),
                std::mem::take(&mut st.stderr),
            )
        };
        if !out.is_empty() {
            self.emit(Stream::Stdout, &out);
        }
        if !err.is_empty() {
            self.emit(Stream::Stderr, &err);
        }
    }

    /// The last lines of stderr, trimmed, e.g. a panic message.
    pub(crate) fn stderr_tail(&self) -> String {
        let st = self.state.lock().expect("output lock");
        String::from_utf8_lossy(&st.stderr_tail).trim().to_string()
    }
}

struct OutputPipe {
    capture: OutputCapture,
    stream: Stream,
}

impl IsTerminal for OutputPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(OutputPipe {
            capture: self.capture.clone(),
            stream: self.stream,
        })
    }
}

impl AsyncWrite for OutputPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // Never fail: a full log must not make `println!` panic inside the plugin.
        self.capture.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
