//! All of the process's git network traffic. libgit2 speaks the protocol;
//! this transport, registered for `git://`, `http://` and `https://`, carries
//! its bytes. It connects only to addresses the egress policy allows, never
//! follows a redirect, and bounds every read and write by the operation's
//! deadline and byte budget: a server that trickles bytes, or side-band
//! progress, for ever holds a thread no longer than the deadline (libgit2's
//! own timeouts are per read, and its callbacks do not run while it waits).
//! Git work runs in a bounded number of blocking slots, so slow remotes
//! cannot take tokio's whole blocking pool from the rest of the process.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use tokio::sync::Semaphore;

use crate::egress::{EgressDenied, EgressError, EgressPolicy, GitRemote, PolicyResolver};

/// Git operations holding a blocking thread at once, process-wide. tokio's
/// blocking pool has 512 threads, which plugin calls and file I/O share.
pub const MAX_OPERATIONS: usize = 64;

static SLOTS: Semaphore = Semaphore::const_new(MAX_OPERATIONS);

/// What one git operation may take from the network.
#[derive(Debug, Clone, Copy)]
pub struct WireLimits {
    /// Wall-clock time, waiting for a slot included.
    pub timeout: Duration,
    /// Bytes received, ref advertisement included.
    pub max_bytes: u64,
}

/// Why an operation stopped at the wire, whatever libgit2 made of it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    /// The deadline passed.
    #[error("the remote did not finish within {} s", .0.as_secs())]
    TimedOut(Duration),
    /// The byte budget ran out.
    #[error("the remote sent more than {0} bytes")]
    TooLarge(u64),
    /// The egress policy refused the remote's addresses.
    #[error(transparent)]
    Denied(EgressDenied),
    /// The remote's name did not resolve.
    #[error("{0}")]
    Lookup(String),
    /// Every slot stayed taken until the deadline.
    #[error("{MAX_OPERATIONS} git operations are already running; try again in a moment")]
    Busy,
    /// The blocking task panicked.
    #[error("the git task failed: {0}")]
    Task(String),
}

/// The network side of git for one egress policy: plugins' `ls-remote` and
/// the host's fetches of their repositories.
pub struct GitWire {
    egress: Arc<EgressPolicy>,
    /// Built at first use, as the `http` capability's is.
    client: OnceLock<Result<reqwest::Client, String>>,
    /// A test server's certificate, trusted beside the system's roots.
    #[cfg(test)]
    trusted: Option<reqwest::Certificate>,
}

impl GitWire {
    /// A wire under `egress`. Its first run registers the transport with
    /// libgit2: initialising libgit2 reads the system's CA bundle (about
    /// 30 ms), which has no place on the start-up path.
    pub fn new(egress: Arc<EgressPolicy>) -> Arc<Self> {
        Arc::new(GitWire {
            egress,
            client: OnceLock::new(),
            #[cfg(test)]
            trusted: None,
        })
    }

    /// The policy the wire connects under.
    pub fn egress(&self) -> &EgressPolicy {
        &self.egress
    }

    /// Runs blocking git work on a blocking thread, with network access to
    /// `remote` only, within `limits`. A failure at the wire wins over the
    /// work's own result, whose error would only repeat it less clearly.
    pub async fn run<T, F>(
        self: &Arc<Self>,
        remote: &GitRemote,
        limits: WireLimits,
        work: F,
    ) -> Result<T, WireError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.run_in(&SLOTS, remote, limits, work).await
    }

    async fn run_in<T, F>(
        self: &Arc<Self>,
        slots: &'static Semaphore,
        remote: &GitRemote,
        limits: WireLimits,
        work: F,
    ) -> Result<T, WireError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        register();
        let deadline = Instant::now() + limits.timeout;
        let permit = tokio::time::timeout(limits.timeout, slots.acquire())
            .await
            .map_err(|_| WireError::Busy)?
            .map_err(|_| WireError::Busy)?;
        let session = Arc::new(Session {
            wire: self.clone(),
            remote: remote.clone(),
            deadline,
            limits,
            received: AtomicU64::new(0),
            failure: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
        });
        let for_task = session.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _session = SessionGuard::enter(for_task);
            work()
        })
        .await;
        if let Some(why) = session.failure.lock().expect("failure lock").take() {
            return Err(why);
        }
        outcome.map_err(|e| WireError::Task(e.to_string()))
    }

    fn client(&self) -> io::Result<&reqwest::Client> {
        self.client
            .get_or_init(|| {
                let builder = reqwest::Client::builder()
                    // A proxy would connect on our behalf to addresses we never checked.
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("git/2.0 (bindery/", env!("CARGO_PKG_VERSION"), ")"))
                    .dns_resolver(PolicyResolver(self.egress.clone()));
                #[cfg(test)]
                let builder = match &self.trusted {
                    Some(cert) => builder.add_root_certificate(cert.clone()),
                    None => builder,
                };
                builder
                    .build()
                    .map_err(|e| format!("cannot build the git HTTP client: {e}"))
            })
            .as_ref()
            .map_err(|e| io::Error::other(e.clone()))
    }
}

/// One operation: the remote it may reach and what it has used so far.
struct Session {
    wire: Arc<GitWire>,
    remote: GitRemote,
    deadline: Instant,
    limits: WireLimits,
    received: AtomicU64,
    failure: Mutex<Option<WireError>>,
    runtime: tokio::runtime::Handle,
}

thread_local! {
    /// libgit2 calls the transport on the thread that runs the operation.
    static SESSION: RefCell<Option<Arc<Session>>> = const { RefCell::new(None) };
}

/// Clears the thread's session when the work ends, panics included: the
/// blocking thread goes back to the pool.
struct SessionGuard;

impl SessionGuard {
    fn enter(session: Arc<Session>) -> SessionGuard {
        SESSION.with(|s| *s.borrow_mut() = Some(session));
        SessionGuard
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        SESSION.with(|s| s.borrow_mut().take());
    }
}

impl Session {
    /// Records why the operation stops (the first reason wins) and gives
    /// libgit2 an error to unwind with.
    fn fail(&self, why: WireError) -> io::Error {
        let message = why.to_string();
        self.failure
            .lock()
            .expect("failure lock")
            .get_or_insert(why);
        io::Error::other(message)
    }

    fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.fail(WireError::TimedOut(self.limits.timeout)))
        } else {
            Ok(left)
        }
    }

    fn count(&self, n: usize) -> io::Result<()> {
        let total = self.received.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.limits.max_bytes {
            Err(self.fail(WireError::TooLarge(self.limits.max_bytes)))
        } else {
            Ok(())
        }
    }

    /// Waits on async I/O from the blocking thread, until the deadline at most.
    fn block_on<F: Future>(&self, f: F) -> io::Result<F::Output> {
        let left = self.remaining()?;
        self.runtime
            .block_on(tokio::time::timeout(left, f))
            .map_err(|_| self.fail(WireError::TimedOut(self.limits.timeout)))
    }

    /// Resolves the remote and checks every address against the policy.
    fn addresses(&self) -> io::Result<Vec<std::net::SocketAddr>> {
        let (host, port) = (self.remote.host(), self.remote.port());
        self.block_on(self.wire.egress.resolve(host, port))?
            .map_err(|e| {
                self.fail(match e {
                    EgressError::Denied(d) => WireError::Denied(d),
                    EgressError::Lookup(m) => WireError::Lookup(m),
                })
            })
    }

    /// A read or write that hit the socket's timeout ran into the deadline.
    fn timed_out_or(&self, e: io::Error) -> io::Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                self.fail(WireError::TimedOut(self.limits.timeout))
            }
            _ => e,
        }
    }
}

fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        for (scheme, rpc) in [("git", false), ("http", true), ("https", true)] {
            // SAFETY: once per process, and before any git network operation,
            // which needs a session, which only a wire's run (which calls
            // this first) makes.
            let registered = unsafe {
                git2::transport::register(scheme, move |remote| {
                    Transport::smart(remote, rpc, Subtransport::default())
                })
            };
            registered.expect("libgit2 takes a transport for each scheme once");
        }
    });
}

/// One libgit2 remote's connection. `git://` keeps one TCP stream from the
/// ref listing to the fetch; smart HTTP is one request per exchange.
#[derive(Default)]
struct Subtransport {
    git: Mutex<Option<TcpStream>>,
}

fn git_error(e: impl std::fmt::Display) -> git2::Error {
    git2::Error::from_str(&e.to_string())
}

impl SmartSubtransport for Subtransport {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let session = SESSION.with(|s| s.borrow().clone()).ok_or_else(|| {
            git_error("git network access outside a checked operation (GitWire::run)")
        })?;
        if !matches!(action, Service::UploadPackLs | Service::UploadPack) {
            return Err(git_error("Bindery only fetches from git remotes"));
        }
        if url != session.remote.as_str() {
            return Err(git_error(format!(
                "libgit2 asked for {url}, not the remote that was checked ({})",
                session.remote.as_str()
            )));
        }
        if session.remote.scheme() != "git" {
            return Ok(Box::new(HttpStream {
                session,
                action,
                request: Vec::new(),
                response: None,
                chunk: bytes::Bytes::new(),
            }));
        }
        let mut current = self.git.lock().expect("git stream lock");
        if let (Service::UploadPack, Some(tcp)) = (action, current.as_ref()) {
            let tcp = tcp.try_clone().map_err(git_error)?;
            return Ok(Box::new(GitStream { session, tcp }));
        }
        let stream = git_connect(&session).map_err(git_error)?;
        *current = Some(stream.tcp.try_clone().map_err(git_error)?);
        Ok(Box::new(stream))
    }

    fn close(&self) -> Result<(), git2::Error> {
        self.git.lock().expect("git stream lock").take();
        Ok(())
    }
}

/// Connects to a checked address and asks the daemon for upload-pack.
fn git_connect(session: &Arc<Session>) -> io::Result<GitStream> {
    let mut last = None;
    let mut connected = None;
    for addr in session.addresses()? {
        match TcpStream::connect_timeout(&addr, session.remaining()?) {
            Ok(tcp) => {
                connected = Some(tcp);
                break;
            }
            Err(e) => last = Some(session.timed_out_or(e)),
        }
    }
    let tcp = connected.ok_or_else(|| last.expect("resolve gives at least one address"))?;
    let remote = &session.remote;
    let host = match remote.port() {
        9418 => remote.host().to_string(),
        port => format!("{}:{port}", remote.host()),
    };
    let request = format!("git-upload-pack {}\0host={host}\0", remote.path());
    let mut stream = GitStream {
        session: session.clone(),
        tcp,
    };
    stream.write_all(format!("{:04x}{request}", request.len() + 4).as_bytes())?;
    Ok(stream)
}

struct GitStream {
    session: Arc<Session>,
    tcp: TcpStream,
}

impl Read for GitStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.set_read_timeout(Some(self.session.remaining()?))?;
        let n = self
            .tcp
            .read(buf)
            .map_err(|e| self.session.timed_out_or(e))?;
        self.session.count(n)?;
        Ok(n)
    }
}

impl Write for GitStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp
            .set_write_timeout(Some(self.session.remaining()?))?;
        self.tcp
            .write(buf)
            .map_err(|e| self.session.timed_out_or(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One smart-HTTP exchange: libgit2 writes the request body, and its first
/// read sends it.
struct HttpStream {
    session: Arc<Session>,
    action: Service,
    request: Vec<u8>,
    response: Option<reqwest::Response>,
    chunk: bytes::Bytes,
}

const ADVERTISEMENT: &str = "application/x-git-upload-pack-advertisement";

impl HttpStream {
    fn send(&mut self) -> io::Result<reqwest::Response> {
        let session = &self.session;
        // Checked here for a typed refusal; the client's resolver checks again
        // the addresses it connects to.
        session.addresses()?;
        let client = session.wire.client()?;
        let base = session.remote.as_str().trim_end_matches('/');
        let request = match self.action {
            Service::UploadPackLs => {
                client.get(format!("{base}/info/refs?service=git-upload-pack"))
            }
            _ => client
                .post(format!("{base}/git-upload-pack"))
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-git-upload-pack-request",
                )
                .header(
                    reqwest::header::ACCEPT,
                    "application/x-git-upload-pack-result",
                )
                .body(std::mem::take(&mut self.request)),
        };
        let request = match session.remote.basic_auth() {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        };
        let response = session
            .block_on(request.send())?
            .map_err(|e| io::Error::other(crate::error_chain(&e)))?;
        let status = response.status();
        if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("another URL");
            return Err(io::Error::other(format!(
                "{base} redirects to {to}: Bindery does not follow a repository's redirects, launch the repository at its new address"
            )));
        }
        if matches!(status.as_u16(), 401 | 403) {
            let why = if session.remote.basic_auth().is_some() {
                "the provider's credential was refused"
            } else {
                "it needs credentials, and the provider gave none (grant it a token for private repositories)"
            };
            return Err(io::Error::other(format!(
                "{base} refused access (HTTP {status}): {why}"
            )));
        }
        if !status.is_success() {
            return Err(io::Error::other(format!("{base} answered HTTP {status}")));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .unwrap_or_default();
        if self.action == Service::UploadPackLs && content_type != ADVERTISEMENT {
            return Err(io::Error::other(format!(
                "{base} is not a smart git HTTP server (it answered `{content_type}`); Bindery fetches over git's smart protocol only"
            )));
        }
        Ok(response)
    }
}

impl Read for HttpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.response.is_none() {
            self.response = Some(self.send()?);
        }
        while self.chunk.is_empty() {
            let response = self.response.as_mut().expect("sent above");
            match self
                .session
                .block_on(response.chunk())?
                .map_err(|e| io::Error::other(crate::error_chain(&e)))?
            {
                Some(chunk) => {
                    self.session.count(chunk.len())?;
                    self.chunk = chunk;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

impl Write for HttpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.request.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::AtomicUsize;

    use super::*;

    const LIMITS: WireLimits = WireLimits {
        timeout: Duration::from_secs(1),
        max_bytes: 1 << 20,
    };

    fn loopback_wire() -> Arc<GitWire> {
        let loopback = ["127.0.0.0/8".parse().unwrap()];
        GitWire::new(Arc::new(EgressPolicy::new(&["*".into()], &loopback)))
    }

    /// A server on loopback that hands each connection to `handler` on a thread.
    fn serve(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let handler = handler.clone();
                std::thread::spawn(move || handler(conn));
            }
        });
        port
    }

    /// Writes `bytes` every `every` until the client goes away.
    fn trickle(mut conn: TcpStream, bytes: &[u8], every: Duration) {
        while conn.write_all(bytes).is_ok() {
            std::thread::sleep(every);
        }
    }

    fn read_until(conn: &mut TcpStream, marker: &[u8]) {
        let mut seen = Vec::new();
        let mut buf = [0; 4096];
        while !seen.windows(marker.len()).any(|w| w == marker) {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn pkt(line: &str) -> String {
        format!("{:04x}{line}", line.len() + 4)
    }

    fn list(url: &str) -> Result<Vec<String>, git2::Error> {
        let mut remote = git2::Remote::create_detached(url)?;
        let connection = remote.connect_auth(git2::Direction::Fetch, None, None)?;
        Ok(connection
            .list()?
            .iter()
            .map(|h| h.name().to_string())
            .collect())
    }

    /// `url` fetched over `wire` into a scratch clone: the head it got.
    async fn fetch_over(wire: &Arc<GitWire>, url: String) -> git2::Oid {
        let scratch = tempfile::tempdir().unwrap();
        let into = scratch.path().join("clone");
        wire.run(&GitRemote::parse(&url).unwrap(), LIMITS, move || {
            fetch(&url, &into)
        })
        .await
        .unwrap()
        .unwrap()
    }

    fn fetch(url: &str, into: &Path) -> Result<git2::Oid, git2::Error> {
        let repo = git2::Repository::init_bare(into)?;
        repo.remote_anonymous(url)?
            .fetch(&["+refs/heads/main:refs/heads/main"], None, None)?;
        repo.refname_to_id("refs/heads/main")
    }

    async fn run_list(
        url: &str,
    ) -> (
        Result<Result<Vec<String>, git2::Error>, WireError>,
        Duration,
    ) {
        let remote = GitRemote::parse(url).unwrap();
        let url = url.to_string();
        let started = Instant::now();
        let outcome = loopback_wire()
            .run(&remote, LIMITS, move || list(&url))
            .await;
        (outcome, started.elapsed())
    }

    /// The work was stopped by its deadline: timed out, past the deadline,
    /// and well before libgit2's own per-read timeouts would have.
    fn stopped_at_deadline<T: std::fmt::Debug>(outcome: &Result<T, WireError>, took: Duration) {
        assert!(
            matches!(outcome, Err(WireError::TimedOut(_))),
            "{outcome:?}"
        );
        assert!(
            took >= LIMITS.timeout && took < LIMITS.timeout * 4,
            "stopped after {took:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_git_daemon_that_trickles_bytes_is_cut_at_the_deadline() {
        let port = serve(|mut conn| {
            read_until(&mut conn, b"\0");
            conn.write_all(b"0100").unwrap();
            trickle(conn, b"a", Duration::from_millis(50));
        });
        let (outcome, took) = run_list(&format!("git://127.0.0.1:{port}/x.git")).await;
        stopped_at_deadline(&outcome, took);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_http_server_that_trickles_its_body_is_cut_at_the_deadline() {
        let port = serve(|mut conn| {
            read_until(&mut conn, b"\r\n\r\n");
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ADVERTISEMENT}\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            conn.write_all(head.as_bytes()).unwrap();
            // A packet line announcing 256 bytes, which come one at a time.
            conn.write_all(b"4\r\n0100\r\n").unwrap();
            trickle(conn, b"1\r\na\r\n", Duration::from_millis(50));
        });
        let (outcome, took) = run_list(&format!("http://127.0.0.1:{port}/x.git")).await;
        stopped_at_deadline(&outcome, took);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn endless_side_band_progress_is_cut_at_the_deadline() {
        let wanted = "1111111111111111111111111111111111111111";
        let port = serve(move |mut conn| {
            read_until(&mut conn, b"\0");
            let refs = pkt(&format!("{wanted} HEAD\0side-band-64k ofs-delta\n"))
                + &pkt(&format!("{wanted} refs/heads/main\n"))
                + "0000";
            conn.write_all(refs.as_bytes()).unwrap();
            read_until(&mut conn, b"done");
            conn.write_all(pkt("NAK\n").as_bytes()).unwrap();
            trickle(
                conn,
                pkt("\u{2}Counting objects: 1%\r").as_bytes(),
                Duration::from_millis(20),
            );
        });
        let url = format!("git://127.0.0.1:{port}/x.git");
        let remote = GitRemote::parse(&url).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let into = scratch.path().join("repo");
        let started = Instant::now();
        let outcome = loopback_wire()
            .run(&remote, LIMITS, move || fetch(&url, &into).map(|_| ()))
            .await;
        stopped_at_deadline(&outcome, started.elapsed());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_remote_that_sends_too_much_is_cut_at_the_byte_budget() {
        let port = serve(|mut conn| {
            read_until(&mut conn, b"\0");
            let oid = "1111111111111111111111111111111111111111";
            for n in 0.. {
                let line = pkt(&format!("{oid} refs/heads/branch-{n}\n"));
                if conn.write_all(line.as_bytes()).is_err() {
                    return;
                }
            }
        });
        let (outcome, _) = run_list(&format!("git://127.0.0.1:{port}/x.git")).await;
        assert!(
            matches!(outcome, Err(WireError::TooLarge(n)) if n == LIMITS.max_bytes),
            "{outcome:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn operations_beyond_the_slots_wait_then_are_refused_without_running() {
        static TWO: Semaphore = Semaphore::const_new(2);
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let wire = loopback_wire();
        let remote = GitRemote::parse("git://127.0.0.1:9/x.git").unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = Arc::new(Mutex::new(held));
        let mut holders = Vec::new();
        for _ in 0..2 {
            let (wire, remote, held) = (wire.clone(), remote.clone(), held.clone());
            holders.push(tokio::spawn(async move {
                wire.run_in(&TWO, &remote, LIMITS, move || {
                    STARTED.fetch_add(1, Ordering::SeqCst);
                    held.lock().unwrap().recv().ok();
                })
                .await
            }));
        }
        while STARTED.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let limits = WireLimits {
            timeout: Duration::from_millis(200),
            ..LIMITS
        };
        let third = wire
            .run_in(&TWO, &remote, limits, || {
                STARTED.fetch_add(1, Ordering::SeqCst);
            })
            .await;
        assert!(matches!(third, Err(WireError::Busy)), "{third:?}");
        assert_eq!(STARTED.load(Ordering::SeqCst), 2);
        drop(release);
        for holder in holders {
            holder.await.unwrap().unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn addresses_outside_the_policy_are_refused_before_connecting() {
        let wire = GitWire::new(Arc::new(EgressPolicy::new(&["*".into()], &[])));
        let url = "git://127.0.0.1:9/x.git";
        let outcome = wire
            .run(&GitRemote::parse(url).unwrap(), LIMITS, move || list(url))
            .await;
        assert!(
            matches!(
                outcome,
                Err(WireError::Denied(EgressDenied::AddressDenied { .. }))
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn git_network_access_outside_an_operation_is_refused() {
        loopback_wire();
        let err = list("git://127.0.0.1:9/x.git").unwrap_err();
        assert!(
            err.message().contains("outside a checked operation"),
            "{err}"
        );
    }

    /// A bare repository with one commit on `main`.
    fn bare_repo(root: &Path) -> git2::Oid {
        let repo = git2::Repository::init_bare(root.join("repo.git")).unwrap();
        let tree = {
            let blob = repo.blob(b"print('hello')\n").unwrap();
            let mut builder = repo.treebuilder(None).unwrap();
            builder.insert("hello.py", blob, 0o100_644).unwrap();
            builder.write().unwrap()
        };
        let tree = repo.find_tree(tree).unwrap();
        let who = git2::Signature::now("Bindery", "bindery@example.org").unwrap();
        repo.commit(Some("refs/heads/main"), &who, &who, "first", &tree, &[])
            .unwrap()
    }

    /// git's own smart-HTTP server, `git http-backend`, run as CGI: one
    /// request per connection.
    fn http_backend(root: PathBuf) -> impl Fn(TcpStream) + Send + Sync + 'static {
        move |mut conn| git_http_backend(&mut conn, &root)
    }

    /// The same behind TLS, with `identity`'s certificate.
    fn https_backend(
        root: PathBuf,
        identity: native_tls::Identity,
    ) -> impl Fn(TcpStream) + Send + Sync + 'static {
        let acceptor = native_tls::TlsAcceptor::new(identity).unwrap();
        move |conn| {
            let Ok(mut tls) = acceptor.accept(conn) else {
                return;
            };
            git_http_backend(&mut tls, &root);
            let _ = tls.shutdown();
        }
    }

    /// Answers one HTTP request on `conn` with `git http-backend` over `root`.
    fn git_http_backend(conn: &mut (impl Read + Write), root: &Path) {
        let mut reader = BufReader::new(&mut *conn);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mut words = line.split_whitespace();
        let (method, target) = (words.next().unwrap(), words.next().unwrap());
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (mut length, mut content_type) = (0, String::new());
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let Some((name, value)) = header.trim_end().split_once(':') else {
                break;
            };
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "content-type" => content_type = value.trim().to_string(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        drop(reader);
        let backend = Path::new(
            String::from_utf8(
                std::process::Command::new("git")
                    .arg("--exec-path")
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap()
            .trim(),
        )
        .join("git-http-backend");
        let mut child = std::process::Command::new(backend)
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", content_type)
            .env("CONTENT_LENGTH", length.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&body).unwrap();
        let out = child.wait_with_output().unwrap().stdout;
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let (cgi_head, cgi_body) = (&out[..split], &out[split + 4..]);
        let mut status = "200 OK".to_string();
        let mut head = String::new();
        for header in String::from_utf8_lossy(cgi_head).lines() {
            match header.strip_prefix("Status: ") {
                Some(s) => status = s.to_string(),
                None => head += &format!("{header}\r\n"),
            }
        }
        let response = format!(
            "HTTP/1.1 {status}\r\n{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
            cgi_body.len()
        );
        conn.write_all(response.as_bytes()).unwrap();
        conn.write_all(cgi_body).unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn fetches_over_smart_http_from_git_http_backend() {
        let root = tempfile::tempdir().unwrap();
        let head = bare_repo(root.path());
        let port = serve(http_backend(root.path().to_path_buf()));
        let url = format!("http://127.0.0.1:{port}/repo.git");
        assert_eq!(fetch_over(&loopback_wire(), url).await, head);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn fetches_over_https_as_from_a_public_forge() {
        let root = tempfile::tempdir().unwrap();
        let head = bare_repo(root.path());
        // A certificate for 127.0.0.1, which only this test's wire trusts.
        let (key, cert) = (root.path().join("key.pem"), root.path().join("cert.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let (key, cert) = (std::fs::read(&key).unwrap(), std::fs::read(&cert).unwrap());
        let identity = native_tls::Identity::from_pkcs8(&cert, &key).unwrap();
        let port = serve(https_backend(root.path().to_path_buf(), identity));
        let loopback = ["127.0.0.0/8".parse().unwrap()];
        let policy = Arc::new(EgressPolicy::new(&["*".into()], &loopback));
        let trusting = Arc::new(GitWire {
            egress: policy,
            client: OnceLock::new(),
            trusted: Some(reqwest::Certificate::from_pem(&cert).unwrap()),
        });
        register();
        let url = format!("https://127.0.0.1:{port}/repo.git");
        assert_eq!(fetch_over(&trusting, url).await, head);
        // The system's roots alone do not trust it: TLS is checked.
        let url = format!("https://127.0.0.1:{port}/repo.git");
        let listed = loopback_wire()
            .run(&GitRemote::parse(&url).unwrap(), LIMITS, move || list(&url))
            .await
            .unwrap();
        let err = listed.unwrap_err();
        assert!(err.message().contains("certificate"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn redirects_and_dumb_servers_are_refused_by_name() {
        let port = serve(|mut conn| {
            read_until(&mut conn, b"\r\n\r\n");
            let response = "HTTP/1.1 301 Moved Permanently\r\nLocation: http://169.254.169.254/x.git\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            conn.write_all(response.as_bytes()).unwrap();
        });
        let (outcome, _) = run_list(&format!("http://127.0.0.1:{port}/x.git")).await;
        let err = outcome.unwrap().unwrap_err();
        assert!(
            err.message()
                .contains("redirects to http://169.254.169.254/x.git"),
            "{err}"
        );

        let port = serve(|mut conn| {
            read_until(&mut conn, b"\r\n\r\n");
            let response = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\nConnection: close\r\n\r\n<html>";
            conn.write_all(response.as_bytes()).unwrap();
        });
        let (outcome, _) = run_list(&format!("http://127.0.0.1:{port}/x.git")).await;
        let err = outcome.unwrap().unwrap_err();
        assert!(
            err.message().contains("not a smart git HTTP server"),
            "{err}"
        );
    }
}
