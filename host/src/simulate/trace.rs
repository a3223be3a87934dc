//! Launch traces: upstream BinderHub's `binderhub.jupyter.org/launch`
//! events, one JSON object per line (mybinder.org's events archive, or a
//! deployment's own event log), plain or gzipped; and a generator of
//! synthetic days for operators without an archive.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use chrono::{DateTime, Timelike, Utc};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};

use super::SimulateError;
use super::report::timestamp;
use crate::event_log::{LAUNCH_SCHEMA, provider_prefix, upstream_name};

/// One launch of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// When it was asked, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The provider's prefix, e.g. `gh`.
    pub provider: String,
    /// The spec after the prefix, e.g. `org/repo/HEAD`.
    pub spec: String,
    /// The resolved ref where the event has one (schema version 2 on).
    pub resolved_ref: Option<String>,
    /// How long the user worked, where the trace knows.
    pub session_secs: Option<f64>,
}

impl Launch {
    /// The repository, without the ref for providers whose specs end in one.
    pub fn repo(&self) -> &str {
        match self.provider.as_str() {
            "gh" | "gl" | "git" | "gist" => self.spec.rsplit_once('/').map_or(&*self.spec, |r| r.0),
            _ => &self.spec,
        }
    }

    /// What identifies the image: the repository at its resolved ref (or,
    /// without one, at the ref the spec asks).
    pub fn revision(&self) -> String {
        match &self.resolved_ref {
            Some(r) => format!("{}/{}@{r}", self.provider, self.repo()),
            None => format!("{}/{}", self.provider, self.spec),
        }
    }
}

/// A line of the trace, as upstream writes it (every version of the
/// schema), and `session_secs` where a trace knows it.
#[derive(Debug, Deserialize, Serialize)]
struct Line {
    timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u32>,
    provider: String,
    spec: String,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    resolved_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_secs: Option<f64>,
}

/// A launch event is a few hundred bytes; a longer line is not one.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Launches one replay takes (a few hundred MB held): about 40 of
/// mybinder.org's busiest days, more than 31 days of any.
const MAX_LAUNCHES: usize = 1_000_000;
/// The time one replay covers, first launch to last.
const MAX_SPAN_MS: u64 = 31 * 86_400_000;

/// Reads the trace at `path`, gzipped or not (by its first bytes).
pub fn read(path: &Path) -> Result<Vec<Launch>, SimulateError> {
    let file = std::fs::File::open(path)
        .map_err(|e| SimulateError::Trace(format!("{}: {e}", path.display())))?;
    let mut reader = BufReader::new(file);
    let gzipped = reader
        .fill_buf()
        .map_err(|e| SimulateError::Trace(format!("{}: {e}", path.display())))?
        .starts_with(&[0x1f, 0x8b]);
    let launches = if gzipped {
        parse(BufReader::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else {
        parse(reader)
    };
    launches.map_err(|e| match e {
        SimulateError::Trace(m) => SimulateError::Trace(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// The launches of a trace, in time order. Lines of other schemas, and
/// failed launches, are skipped; a line that is not a launch event is an
/// error naming it. Launches that share a minute, all on the minute (the
/// archive rounds timestamps down to it), are spread evenly over it.
pub fn parse(input: impl Read) -> Result<Vec<Launch>, SimulateError> {
    let mut launches = Vec::new();
    let mut reader = BufReader::new(input);
    let mut buf = Vec::new();
    for n in 0.. {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| SimulateError::Trace(format!("line {}: {e}", n + 1)))?;
        if read == 0 {
            break;
        }
        if buf.len() > MAX_LINE_BYTES {
            return Err(SimulateError::Trace(format!(
                "line {} is longer than {} KiB: not a launch event",
                n + 1,
                MAX_LINE_BYTES / 1024
            )));
        }
        let line = String::from_utf8_lossy(&buf);
        if line.trim().is_empty() {
            continue;
        }
        let event: Line = serde_json::from_str(&line).map_err(|e| {
            SimulateError::Trace(format!("line {}: not a launch event: {e}", n + 1))
        })?;
        if event.schema.as_deref().is_some_and(|s| s != LAUNCH_SCHEMA)
            || event.status.as_deref().is_some_and(|s| s != "success")
        {
            continue;
        }
        let at = DateTime::parse_from_rfc3339(&event.timestamp)
            .map_err(|e| {
                SimulateError::Trace(format!(
                    "line {}: timestamp {:?}: {e}",
                    n + 1,
                    event.timestamp
                ))
            })?
            .with_timezone(&Utc);
        if event
            .session_secs
            .is_some_and(|s| !(s.is_finite() && s >= 0.0))
        {
            return Err(SimulateError::Trace(format!(
                "line {}: session_secs must be a number of seconds, 0 or more",
                n + 1
            )));
        }
        if launches.len() == MAX_LAUNCHES {
            return Err(SimulateError::Trace(format!(
                "more than {MAX_LAUNCHES} launches: replay it in parts"
            )));
        }
        launches.push(Launch {
            at_ms: u64::try_from(at.timestamp_millis()).map_err(|_| {
                SimulateError::Trace(format!("line {}: a timestamp before 1970", n + 1))
            })?,
            provider: provider_prefix(&event.provider).into(),
            spec: event.spec.trim_end_matches('/').into(),
            resolved_ref: event.resolved_ref.filter(|r| !r.is_empty()),
            session_secs: event.session_secs,
        });
    }
    launches.sort_by_key(|l| l.at_ms);
    if let (Some(first), Some(last)) = (launches.first(), launches.last())
        && last.at_ms - first.at_ms > MAX_SPAN_MS
    {
        return Err(SimulateError::Trace(format!(
            "it spans {} days, from {} to {}; at most {} are replayed at once: replay it in parts",
            (last.at_ms - first.at_ms) / 86_400_000,
            timestamp(first.at_ms),
            timestamp(last.at_ms),
            MAX_SPAN_MS / 86_400_000
        )));
    }
    spread_rounded_minutes(&mut launches);
    Ok(launches)
}

/// Spreads the launches of each minute that holds several, all on the
/// minute, evenly over it: the first stays on the minute.
fn spread_rounded_minutes(launches: &mut [Launch]) {
    let mut start = 0;
    while start < launches.len() {
        let minute = launches[start].at_ms;
        let end = start
            + launches[start..]
                .iter()
                .take_while(|l| l.at_ms == minute)
                .count();
        let n = (end - start) as u64;
        if n > 1 && minute.is_multiple_of(60_000) {
            for (i, launch) in launches[start..end].iter_mut().enumerate() {
                launch.at_ms = minute + i as u64 * 60_000 / n;
            }
        }
        start = end;
    }
}

/// What `bindery simulate --generate` makes.
#[derive(Debug, Clone)]
pub struct Generate {
    /// Launches in the day.
    pub launches: u64,
    /// Repositories launched; their popularity follows Zipf's law.
    pub repos: u64,
    /// Zipf's exponent: how much the most popular outweigh the rest.
    pub exponent: f64,
    /// The day, as `YYYY-MM-DD` (UTC).
    pub day: chrono::NaiveDate,
    /// The hour (UTC) launches peak at; the quietest is twelve hours off,
    /// with a third of the peak's rate.
    pub peak_hour: u32,
    /// Seed of the draws.
    pub seed: u64,
}

impl Default for Generate {
    /// A day the size of mybinder.org's busiest (about 25,000 launches).
    fn default() -> Self {
        Generate {
            launches: 25_000,
            repos: 2_000,
            exponent: 1.1,
            day: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).expect("a real day"),
            peak_hour: 15,
            seed: 1,
        }
    }
}

/// Writes a synthetic day of launch events (schema version 5, GitHub
/// repositories, timestamps rounded down to the minute as the archive's).
pub fn generate(options: &Generate, out: &mut impl Write) -> Result<(), SimulateError> {
    // The day is held to be written in time order, and no more than one
    // replay takes is worth holding.
    if options.launches > MAX_LAUNCHES as u64 {
        return Err(SimulateError::Trace(format!(
            "--launches {}: at most {MAX_LAUNCHES}, what one replay takes",
            options.launches
        )));
    }
    let zipf = Zipf::new(options.repos.max(1) as f64, options.exponent)
        .map_err(|e| SimulateError::Trace(format!("--exponent {}: {e}", options.exponent)))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let midnight = options
        .day
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    // The rate over the day: 1 at the peak hour, 1/3 twelve hours away.
    let rate = |minute: f64| {
        let phase = (minute / 60.0 - f64::from(options.peak_hour)) / 24.0;
        (2.0 + (phase * std::f64::consts::TAU).cos()) / 3.0
    };
    let mut by_minute = BTreeMap::<u32, Vec<Line>>::new();
    let mut made = 0;
    while made < options.launches {
        // Rejection sampling of the minute against the daily rate.
        let minute = rng.random_range(0.0..1440.0);
        if rng.random::<f64>() > rate(minute) {
            continue;
        }
        let repo = zipf.sample(&mut rng) as u64;
        let at = midnight + chrono::Duration::minutes(minute as i64);
        by_minute.entry(minute as u32).or_default().push(Line {
            timestamp: at
                .with_second(0)
                .expect("second 0 exists")
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            schema: Some(LAUNCH_SCHEMA.into()),
            version: Some(crate::event_log::LAUNCH_SCHEMA_VERSION),
            provider: upstream_name("gh").into(),
            spec: format!("binder-sim/repo-{repo}/HEAD"),
            resolved_ref: Some(format!("{:040x}", repo.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
            status: Some("success".into()),
            session_secs: None,
        });
        made += 1;
    }
    for line in by_minute.values().flatten() {
        serde_json::to_writer(&mut *out, line).map_err(|e| SimulateError::Output(e.to_string()))?;
        out.write_all(b"\n")
            .map_err(|e| SimulateError::Output(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_lines_of_every_version_parse_and_rounded_minutes_spread() {
        let trace = r#"
{"timestamp": "2024-05-01T10:00:00+00:00", "schema": "binderhub.jupyter.org/launch", "version": 1, "provider": "GitHub", "spec": "a/b/HEAD", "status": "success"}
{"timestamp": "2024-05-01T10:00:00+00:00", "schema": "binderhub.jupyter.org/launch", "version": 5, "provider": "GitLab", "spec": "g%2Fr/main", "ref": "abc", "status": "success", "origin": "x", "build_token": false}
{"timestamp": "2024-05-01T10:00:00+00:00", "schema": "binderhub.jupyter.org/launch", "version": 5, "provider": "Zenodo", "spec": "10.5281/zenodo.1/", "ref": "1", "status": "success"}
{"timestamp": "2024-05-01T09:00:30Z", "schema": "binderhub.jupyter.org/launch", "version": 3, "provider": "git", "spec": "https%3A%2F%2Fe.org%2Fr/abc", "status": "success", "session_secs": 60}
{"timestamp": "2024-05-01T09:00:40Z", "schema": "binderhub.jupyter.org/launch", "provider": "GitHub", "spec": "a/b/HEAD", "status": "failure"}
{"timestamp": "2024-05-01T09:00:40Z", "schema": "other", "provider": "GitHub", "spec": "a/b/HEAD"}
"#;
        let launches = parse(trace.as_bytes()).unwrap();
        let at: Vec<u64> = launches.iter().map(|l| l.at_ms % 3_600_000).collect();
        assert_eq!(at, [30_000, 0, 20_000, 40_000]);
        let names: Vec<(&str, &str, String)> = launches
            .iter()
            .map(|l| (l.provider.as_str(), l.repo(), l.revision()))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "git",
                    "https%3A%2F%2Fe.org%2Fr",
                    "git/https%3A%2F%2Fe.org%2Fr/abc".into()
                ),
                ("gh", "a/b", "gh/a/b/HEAD".into()),
                ("gl", "g%2Fr", "gl/g%2Fr@abc".into()),
                (
                    "zenodo",
                    "10.5281/zenodo.1",
                    "zenodo/10.5281/zenodo.1@1".into()
                ),
            ]
        );
        assert_eq!(launches[0].session_secs, Some(60.0));
    }

    #[test]
    fn a_line_that_is_not_a_launch_is_an_error_naming_it() {
        let e = parse("{\"timestamp\": \"2024-05-01T10:00:00Z\", \"provider\": \"GitHub\", \"spec\": \"a/b/c\"}\nnot json\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2: not a launch event"), "{e}");
        let e = parse(
            r#"{"timestamp": "yesterday", "provider": "GitHub", "spec": "a/b/c"}"#.as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 1: timestamp \"yesterday\""), "{e}");
    }

    #[test]
    fn hostile_traces_are_refused_before_they_cost_much() {
        let long = format!("{}\n", "x".repeat(MAX_LINE_BYTES + 10));
        let e = parse(long.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("line 1 is longer than 64 KiB"), "{e}");
        let far = "{\"timestamp\": \"2024-05-01T10:00:00Z\", \"provider\": \"GitHub\", \"spec\": \"a/b/c\"}\n{\"timestamp\": \"9999-05-01T10:00:00Z\", \"provider\": \"GitHub\", \"spec\": \"a/b/c\"}";
        let e = parse(far.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("at most 31 are replayed at once"), "{e}");
        let e = parse(r#"{"timestamp": "2024-05-01T10:00:00Z", "provider": "GitHub", "spec": "a/b/c", "session_secs": -1}"#.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("session_secs must be"), "{e}");
        let e = generate(
            &Generate {
                launches: u64::MAX,
                ..Generate::default()
            },
            &mut std::io::sink(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("at most 1000000"), "{e}");
    }

    #[test]
    fn a_generated_day_is_skewed_cyclic_and_reproducible() {
        let options = Generate {
            launches: 5000,
            repos: 500,
            exponent: 1.1,
            day: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            peak_hour: 15,
            seed: 7,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        generate(&options, &mut a).unwrap();
        generate(&options, &mut b).unwrap();
        assert_eq!(a, b, "one seed, one day");
        let launches = parse(&a[..]).unwrap();
        assert_eq!(launches.len(), 5000);
        let mut per_repo = BTreeMap::<&str, u32>::new();
        let mut per_hour = [0u32; 24];
        for l in &launches {
            *per_repo.entry(l.repo()).or_default() += 1;
            per_hour[(l.at_ms / 3_600_000 % 24) as usize] += 1;
        }
        let top = per_repo.values().max().unwrap();
        assert!(
            *top > 5000 / 20,
            "the most popular takes a large share: {top}"
        );
        assert!(per_hour[15] > 2 * per_hour[3], "{per_hour:?}");
    }
}
