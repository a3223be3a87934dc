//! What a replay counted: per hour and for the whole trace, as a table, as
//! JSON, and side by side with another configuration's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::engine::Span;

const HOUR_MS: u64 = 3_600_000;

/// One hour's counts, as the replay makes them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    pub(crate) launches: u64,
    pub(crate) builds: u64,
    pub(crate) cache_hits: u64,
    pub(crate) build_joins: u64,
    pub(crate) pool_hits: u64,
    pub(crate) pool_misses: u64,
    pub(crate) pool_started: u64,
    pub(crate) pool_removed: u64,
    pub(crate) refused_total: u64,
    pub(crate) refused_repo: u64,
    pub(crate) banned: u64,
    pub(crate) failed_builds: u64,
    pub(crate) failed_launches: u64,
    pub(crate) warnings: u64,
    pub(crate) interrupted: u64,
    culls: BTreeMap<(String, String), u64>,
    active_ms: u64,
    idle_ms: u64,
    pool_ms: u64,
    peak_servers: usize,
    peak_builds: usize,
    waits_ms: Vec<u64>,
}

/// The replay's running counts.
pub(crate) struct Tally {
    hour0: u64,
    hours: Vec<Counts>,
    servers: usize,
    builds: usize,
    timeline: Vec<Sample>,
    /// Servers still running when the replay ended.
    pub(crate) left_running: u64,
    /// Cull-policy calls that failed (each kept its servers).
    pub(crate) cull_policy_failures: u64,
    /// Pool-policy calls that failed (each left the pool as it was).
    pub(crate) pool_policy_failures: u64,
}

impl Tally {
    /// Counts from the hour starting at `hour0`.
    pub(crate) fn new(hour0: u64) -> Tally {
        Tally {
            hour0,
            hours: Vec::new(),
            servers: 0,
            builds: 0,
            timeline: Vec::new(),
            left_running: 0,
            cull_policy_failures: 0,
            pool_policy_failures: 0,
        }
    }

    /// The counts of the hour `at_ms` falls in. Hours are made in time
    /// order as the levels change ([`Self::servers_now`]), so a new hour
    /// starts at the level the last one ended at.
    pub(crate) fn hour(&mut self, at_ms: u64) -> &mut Counts {
        let n = (at_ms.saturating_sub(self.hour0) / HOUR_MS) as usize;
        while self.hours.len() <= n {
            // An hour starts at the level the last one ended at.
            self.hours.push(Counts {
                peak_servers: self.servers,
                peak_builds: self.builds,
                ..Counts::default()
            });
        }
        &mut self.hours[n]
    }

    /// Servers running or starting, from `at_ms`.
    pub(crate) fn servers_now(&mut self, at_ms: u64, n: usize) {
        // The hours up to now had the level before this change.
        let hour = self.hour(at_ms);
        hour.peak_servers = hour.peak_servers.max(n);
        self.servers = n;
    }

    /// Builds running, from `at_ms`.
    pub(crate) fn builds_now(&mut self, at_ms: u64, n: usize) {
        let hour = self.hour(at_ms);
        hour.peak_builds = hour.peak_builds.max(n);
        self.builds = n;
    }

    /// A launch that arrived at `arrived_ms` got its server after `wait_ms`.
    pub(crate) fn waited(&mut self, arrived_ms: u64, wait_ms: u64) {
        self.hour(arrived_ms).waits_ms.push(wait_ms);
    }

    /// A server spent `from..to` as `span` says.
    pub(crate) fn span(&mut self, from: u64, to: u64, span: Span) {
        let mut at = from;
        while at < to {
            let hour_end = at - (at - self.hour0) % HOUR_MS + HOUR_MS;
            let until = hour_end.min(to);
            let hour = self.hour(at);
            *match span {
                Span::Active => &mut hour.active_ms,
                Span::Idle => &mut hour.idle_ms,
                Span::Pool => &mut hour.pool_ms,
            } += until - at;
            at = until;
        }
    }

    /// `policy` stopped a server at `at_ms` for `reason`.
    pub(crate) fn culled(&mut self, at_ms: u64, policy: &str, reason: &str) {
        *self
            .hour(at_ms)
            .culls
            .entry((policy.to_string(), reason_kind(reason)))
            .or_default() += 1;
    }

    /// The servers and builds at `at_ms`, for the chart.
    pub(crate) fn sample(
        &mut self,
        at_ms: u64,
        active: usize,
        idle: usize,
        pool: usize,
        builds: usize,
    ) {
        self.timeline.push(Sample {
            at: timestamp(at_ms),
            hours: (at_ms - self.hour0) as f64 / HOUR_MS as f64,
            active,
            idle,
            pool,
            builds,
        });
    }

    /// The report of a replay that ended at `end_ms`.
    pub(crate) fn report(
        mut self,
        end_ms: u64,
        launches: Vec<Outcome>,
        elapsed: Duration,
    ) -> Report {
        self.hour(end_ms);
        let hours: Vec<Period> = self
            .hours
            .iter()
            .enumerate()
            .map(|(n, c)| Period::of(timestamp(self.hour0 + n as u64 * HOUR_MS), c))
            .collect();
        let mut all = Counts::default();
        for c in &self.hours {
            all.add(c);
        }
        Report {
            start: timestamp(self.hour0),
            end: timestamp(end_ms),
            total: Period::of(timestamp(self.hour0), &all),
            hours,
            left_running: self.left_running,
            policy_failures: PolicyFailures {
                cull: self.cull_policy_failures,
                pool: self.pool_policy_failures,
            },
            timeline: self.timeline,
            launches,
            elapsed,
        }
    }
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.launches += other.launches;
        self.builds += other.builds;
        self.cache_hits += other.cache_hits;
        self.build_joins += other.build_joins;
        self.pool_hits += other.pool_hits;
        self.pool_misses += other.pool_misses;
        self.pool_started += other.pool_started;
        self.pool_removed += other.pool_removed;
        self.refused_total += other.refused_total;
        self.refused_repo += other.refused_repo;
        self.banned += other.banned;
        self.failed_builds += other.failed_builds;
        self.failed_launches += other.failed_launches;
        self.warnings += other.warnings;
        self.interrupted += other.interrupted;
        for (k, v) in &other.culls {
            *self.culls.entry(k.clone()).or_default() += v;
        }
        self.active_ms += other.active_ms;
        self.idle_ms += other.idle_ms;
        self.pool_ms += other.pool_ms;
        self.peak_servers = self.peak_servers.max(other.peak_servers);
        self.peak_builds = self.peak_builds.max(other.peak_builds);
        self.waits_ms.extend(&other.waits_ms);
    }
}

/// A reason with the numbers that vary from server to server (outside
/// parentheses) written `N`: "inactive for N s (limit 600 s)".
fn reason_kind(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut depth = 0usize;
    let mut in_number = false;
    for c in reason.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 && c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
            continue;
        }
        in_number = false;
        out.push(c);
    }
    out
}

/// A replay's time as the report and its messages write it: UTC, to the second.
pub(crate) fn timestamp(ms: u64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What a replay found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The start of the first launch's hour.
    pub start: String,
    /// When the last server was culled, or the replay gave up waiting.
    pub end: String,
    /// The whole trace.
    pub total: Period,
    /// Each hour from `start`.
    pub hours: Vec<Period>,
    /// Servers still running at `end`.
    pub left_running: u64,
    /// Policy calls that failed.
    pub policy_failures: PolicyFailures,
    /// Servers and builds every five minutes.
    pub timeline: Vec<Sample>,
    /// Each launch of the trace, in order (not in the JSON: a day is
    /// tens of thousands).
    #[serde(skip)]
    pub launches: Vec<Outcome>,
    /// How long the replay took.
    #[serde(skip)]
    pub elapsed: Duration,
}

/// What became of one launch of the trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// When it arrived, milliseconds since the Unix epoch.
    pub arrived_ms: u64,
    /// When its server was ready; none when it got none.
    pub ready_ms: Option<u64>,
    /// Whether the warm pool handed it a started server.
    pub pool_hit: bool,
    /// When its server stopped; none when it ran to the end of the replay.
    pub stopped_ms: Option<u64>,
    /// The cull policy that stopped it, and its reason.
    pub culled_by: Option<(String, String)>,
    /// Why it got no server, when it got none.
    pub refused: Option<Refusal>,
}

/// Why a launch got no server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `quota.total` was full.
    TotalQuota,
    /// Its repository's quota was full.
    RepoQuota,
    /// Its spec is banned.
    Banned,
    /// Its build ran past `build.timeout_secs`.
    BuildFailed,
}

/// Policy calls that failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFailures {
    /// Cull-policy calls (the servers asked about were kept).
    pub cull: u64,
    /// Pool-policy calls (the pool stayed as it was).
    pub pool: u64,
}

/// The servers and builds at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// The moment, ISO 8601 (UTC).
    pub at: String,
    /// Hours since the report's start.
    pub hours: f64,
    /// Servers whose users work in them.
    pub active: usize,
    /// Launches' servers starting, or left idle.
    pub idle: usize,
    /// The warm pool's unclaimed servers.
    pub pool: usize,
    /// Builds running.
    pub builds: usize,
}

/// One period's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    /// The period's start, ISO 8601 (UTC).
    pub start: String,
    /// Launches that arrived (refused ones included).
    pub launches: u64,
    /// Launches that started a build.
    pub builds: u64,
    /// Launches whose image was in the registry.
    pub cache_hits: u64,
    /// Launches that waited on a build another launch started.
    pub build_joins: u64,
    /// What the warm pool did.
    pub warm_pool: PoolCounts,
    /// Click to ready, for the launches of the period that got a server.
    pub wait_secs: Waits,
    /// Server time, by what the servers did.
    pub server_hours: ServerHours,
    /// Servers culled, by policy and kind of reason.
    pub culls: Vec<Culls>,
    /// Servers culled while their user was still working (by a maximum
    /// age, say): the sessions a policy cut short.
    pub interrupted: u64,
    /// Cull warnings decided.
    pub warnings: u64,
    /// Launches refused.
    pub refused: Refused,
    /// Builds that failed.
    pub failed: Failed,
    /// The most at once.
    pub peak: Peak,
}

/// What the warm pool did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolCounts {
    /// Launches handed a started server.
    pub hits: u64,
    /// Launches with the pool on that it had no server for.
    pub misses: u64,
    /// Servers the pool started.
    pub started: u64,
    /// Servers the pool removed (surplus, or room for a launch).
    pub removed: u64,
}

/// Seconds from click to ready: nearest-rank percentiles; none without launches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Waits {
    /// Launches measured.
    pub launches: usize,
    /// The median.
    pub p50: Option<f64>,
    /// Nine in ten waited less.
    pub p90: Option<f64>,
    /// 99 in 100 waited less.
    pub p99: Option<f64>,
    /// The longest wait.
    pub max: Option<f64>,
}

/// Server time in hours.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerHours {
    /// Users working.
    pub active: f64,
    /// Starting, or idle until culled.
    pub idle: f64,
    /// Waiting in the warm pool.
    pub pool: f64,
}

/// Servers one policy culled for one kind of reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Culls {
    /// The policy's plugin name.
    pub policy: String,
    /// Its reason, the numbers that vary per server written `N`.
    pub reason: String,
    /// Servers culled.
    pub servers: u64,
}

/// Launches refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// By `quota.total`.
    pub total_quota: u64,
    /// By a repository's quota.
    pub repo_quota: u64,
    /// By a provider's `banned_specs`.
    pub banned: u64,
}

/// Builds that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    /// Builds past `build.timeout_secs`.
    pub builds: u64,
    /// Launches that waited on them.
    pub launches: u64,
}

/// The most at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peak {
    /// Servers running or starting at once, the pool's included.
    pub servers: usize,
    /// Builds running at once.
    pub builds: usize,
}

impl Period {
    fn of(start: String, c: &Counts) -> Period {
        let mut waits = c.waits_ms.clone();
        waits.sort_unstable();
        // Nearest rank.
        let at = |q: f64| {
            let rank = ((q * waits.len() as f64).ceil() as usize).clamp(1, waits.len().max(1));
            waits.get(rank - 1).map(|ms| *ms as f64 / 1000.0)
        };
        let hours = |ms: u64| (ms as f64 / HOUR_MS as f64 * 1000.0).round() / 1000.0;
        Period {
            start,
            launches: c.launches,
            builds: c.builds,
            cache_hits: c.cache_hits,
            build_joins: c.build_joins,
            warm_pool: PoolCounts {
                hits: c.pool_hits,
                misses: c.pool_misses,
                started: c.pool_started,
                removed: c.pool_removed,
            },
            wait_secs: Waits {
                launches: waits.len(),
                p50: at(0.5),
                p90: at(0.9),
                p99: at(0.99),
                max: waits.last().map(|ms| *ms as f64 / 1000.0),
            },
            server_hours: ServerHours {
                active: hours(c.active_ms),
                idle: hours(c.idle_ms),
                pool: hours(c.pool_ms),
            },
            culls: c
                .culls
                .iter()
                .map(|((policy, reason), n)| Culls {
                    policy: policy.clone(),
                    reason: reason.clone(),
                    servers: *n,
                })
                .collect(),
            interrupted: c.interrupted,
            warnings: c.warnings,
            refused: Refused {
                total_quota: c.refused_total,
                repo_quota: c.refused_repo,
                banned: c.banned,
            },
            failed: Failed {
                builds: c.failed_builds,
                launches: c.failed_launches,
            },
            peak: Peak {
                servers: c.peak_servers,
                builds: c.peak_builds,
            },
        }
    }

    /// Servers culled, by any policy.
    pub fn culled(&self) -> u64 {
        self.culls.iter().map(|c| c.servers).sum()
    }
}

fn secs(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{s:.1}"))
}

/// The report as a terminal table: the totals, then a line per hour.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let t = &report.total;
    let _ = writeln!(
        out,
        "{} to {}: {} launches, {} builds, {} cache hits, {} joined a build",
        report.start, report.end, t.launches, t.builds, t.cache_hits, t.build_joins
    );
    let _ = writeln!(
        out,
        "click to ready (s): p50 {}, p90 {}, p99 {}, max {} ({} launches)",
        secs(t.wait_secs.p50),
        secs(t.wait_secs.p90),
        secs(t.wait_secs.p99),
        secs(t.wait_secs.max),
        t.wait_secs.launches
    );
    let h = t.server_hours;
    let _ = writeln!(
        out,
        "server-hours: {:.1} active, {:.1} idle, {:.1} in the warm pool; peak {} servers, {} builds",
        h.active, h.idle, h.pool, t.peak.servers, t.peak.builds
    );
    let p = t.warm_pool;
    if p.hits + p.misses + p.started > 0 {
        let _ = writeln!(
            out,
            "warm pool: {} hits, {} misses, {} servers started, {} removed",
            p.hits, p.misses, p.started, p.removed
        );
    }
    let r = t.refused;
    let _ = writeln!(
        out,
        "refused: {} by the total quota, {} by a repository's, {} banned; {} builds failed ({} launches)",
        r.total_quota, r.repo_quota, r.banned, t.failed.builds, t.failed.launches
    );
    for c in &t.culls {
        let _ = writeln!(out, "culled by {}: {} ({})", c.policy, c.servers, c.reason);
    }
    if t.interrupted > 0 {
        let _ = writeln!(out, "culled while their users worked: {}", t.interrupted);
    }
    if t.warnings > 0 {
        let _ = writeln!(out, "cull warnings: {}", t.warnings);
    }
    let f = report.policy_failures;
    if f.cull + f.pool > 0 {
        let _ = writeln!(
            out,
            "policy calls that failed: {} cull, {} pool",
            f.cull, f.pool
        );
    }
    if report.left_running > 0 {
        let _ = writeln!(out, "left running at the end: {}", report.left_running);
    }
    let _ = writeln!(
        out,
        "\n{:<6} {:>8} {:>6} {:>6} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7}",
        "hour",
        "launches",
        "builds",
        "hits",
        "pool h/m",
        "p50 s",
        "p90 s",
        "act h",
        "idle h",
        "pool h",
        "peak",
        "culls",
        "refused"
    );
    for hour in &report.hours {
        let _ = writeln!(
            out,
            "{:<6} {:>8} {:>6} {:>6} {:>9} {:>7} {:>7} {:>7.1} {:>7.1} {:>7.1} {:>6} {:>6} {:>7}",
            &hour.start[11..16],
            hour.launches,
            hour.builds,
            hour.cache_hits,
            format!("{}/{}", hour.warm_pool.hits, hour.warm_pool.misses),
            secs(hour.wait_secs.p50),
            secs(hour.wait_secs.p90),
            hour.server_hours.active,
            hour.server_hours.idle,
            hour.server_hours.pool,
            hour.peak.servers,
            hour.culled(),
            hour.refused.total_quota + hour.refused.repo_quota + hour.refused.banned,
        );
    }
    out
}

/// Two reports of one trace side by side: each figure, and how the second
/// differs from the first.
pub fn compare(a: (&str, &Report), b: (&str, &Report)) -> String {
    type Figure = fn(&Period) -> Option<f64>;
    let figures: [(&str, Figure); 19] = [
        ("launches", |p| Some(p.launches as f64)),
        ("builds", |p| Some(p.builds as f64)),
        ("cache hits", |p| Some(p.cache_hits as f64)),
        ("warm pool hits", |p| Some(p.warm_pool.hits as f64)),
        ("warm pool misses", |p| Some(p.warm_pool.misses as f64)),
        ("click to ready p50 (s)", |p| p.wait_secs.p50),
        ("click to ready p90 (s)", |p| p.wait_secs.p90),
        ("click to ready p99 (s)", |p| p.wait_secs.p99),
        ("click to ready max (s)", |p| p.wait_secs.max),
        ("server-hours active", |p| Some(p.server_hours.active)),
        ("server-hours idle", |p| Some(p.server_hours.idle)),
        ("server-hours in the pool", |p| Some(p.server_hours.pool)),
        ("servers culled", |p| Some(p.culled() as f64)),
        ("culled while working", |p| Some(p.interrupted as f64)),
        ("refused: total quota", |p| {
            Some(p.refused.total_quota as f64)
        }),
        ("refused: repository quota", |p| {
            Some(p.refused.repo_quota as f64)
        }),
        ("refused: banned", |p| Some(p.refused.banned as f64)),
        ("peak servers", |p| Some(p.peak.servers as f64)),
        ("peak builds", |p| Some(p.peak.builds as f64)),
    ];
    let rows = figures
        .iter()
        .map(|(name, figure)| (*name, figure(&a.1.total), figure(&b.1.total)));
    let width = a.0.len().max(b.0.len()).max(10);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:>width$} {:>width$} {:>10}",
        "", a.0, b.0, "change"
    );
    let show = |v: Option<f64>| match v {
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "-".into(),
    };
    for (name, x, y) in rows {
        let change = match (x, y) {
            (Some(x), Some(y)) if x == y => "=".into(),
            (Some(x), Some(y)) if x != 0.0 => format!("{:+.1}%", (y - x) / x * 100.0),
            (Some(x), Some(y)) if (y - x).fract() == 0.0 => format!("{:+.0}", y - x),
            (Some(x), Some(y)) => format!("{:+.1}", y - x),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{name:<26} {:>width$} {:>width$} {change:>10}",
            show(x),
            show(y)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_group_by_kind() {
        assert_eq!(
            reason_kind("inactive for 601 s (limit 600 s)"),
            "inactive for N s (limit 600 s)"
        );
        assert_eq!(
            reason_kind("running for 21700 s (max age 21600 s)"),
            "running for N s (max age 21600 s)"
        );
    }

    #[test]
    fn an_hour_without_changes_peaks_at_the_level_it_was_at() {
        let mut tally = Tally::new(0);
        tally.servers_now(1000, 1);
        tally.servers_now(3 * HOUR_MS + 1000, 0);
        tally.servers_now(3 * HOUR_MS + 2000, 2);
        let report = tally.report(4 * HOUR_MS, Vec::new(), Duration::ZERO);
        let peaks: Vec<usize> = report.hours.iter().map(|h| h.peak.servers).collect();
        assert_eq!(peaks, [1, 1, 1, 2, 2]);
    }

    #[test]
    fn server_time_is_split_at_the_hours() {
        let mut tally = Tally::new(0);
        tally.span(HOUR_MS - 1000, HOUR_MS + 3000, Span::Active);
        tally.span(0, 2 * HOUR_MS + 500, Span::Pool);
        let report = tally.report(2 * HOUR_MS + 500, Vec::new(), Duration::ZERO);
        let active: Vec<f64> = report.hours.iter().map(|h| h.server_hours.active).collect();
        let pool: Vec<f64> = report.hours.iter().map(|h| h.server_hours.pool).collect();
        assert_eq!(active, [0.0, 0.001, 0.0]);
        assert_eq!(pool, [1.0, 1.0, 0.0]);
        assert_eq!(report.total.server_hours.pool, 2.0);
    }
}
