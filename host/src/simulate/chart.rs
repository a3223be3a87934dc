//! The report's chart as SVG: servers over the day (stacked by what they
//! do, or one line per configuration when comparing) above the wait from
//! click to ready per hour. Plain SVG, no fonts or scripts to fetch.

use std::fmt::Write as _;

use super::report::Report;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 230.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 70.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];

/// A dashed stroke's attribute, or none.
fn dash(dashed: bool) -> &'static str {
    if dashed {
        r#" stroke-dasharray="5,4""#
    } else {
        ""
    }
}

/// One panel's frame: maps hours and values to the canvas.
struct Frame {
    top: f64,
    hours: f64,
    max: f64,
    /// A logarithmic value axis from 1: waits run from seconds (a cached
    /// launch) to many minutes (a build), and both matter.
    log: bool,
}

impl Frame {
    fn x(&self, hours: f64) -> f64 {
        LEFT + hours / self.hours * (WIDTH - LEFT - RIGHT)
    }

    /// `(hours, value)` as an SVG point.
    fn point(&self, (hours, value): (f64, f64)) -> String {
        format!("{:.1},{:.1}", self.x(hours), self.y(value))
    }

    fn y(&self, value: f64) -> f64 {
        let share = match self.log {
            true => value.max(1.0).log10() / self.max.log10(),
            false => value / self.max,
        };
        self.top + PANEL - share * PANEL
    }

    fn draw(&self, out: &mut String, title: &str) {
        let _ = write!(
            out,
            r##"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{}</text>"##,
            self.top - 10.0,
            escape(title)
        );
        let _ = write!(
            out,
            r##"<rect x="{LEFT}" y="{}" width="{}" height="{PANEL}" fill="none" stroke="#888"/>"##,
            self.top,
            WIDTH - LEFT - RIGHT
        );
        let ticks: Vec<f64> = match self.log {
            true => (0..=self.max.log10().round() as i32)
                .map(|e| 10f64.powi(e))
                .collect(),
            false => (0..=4).map(|i| self.max * f64::from(i) / 4.0).collect(),
        };
        for v in ticks {
            let y = self.y(v);
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                tick(v)
            );
        }
        let step = if self.hours > 48.0 {
            12.0
        } else if self.hours > 12.0 {
            3.0
        } else {
            1.0
        };
        let mut h = 0.0;
        while h <= self.hours + 1e-9 {
            let x = self.x(h);
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#888"/><text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{h}</text>"##,
                self.top + PANEL,
                self.top + PANEL + 4.0,
                self.top + PANEL + 16.0,
            );
            h += step;
        }
    }

    fn line(&self, out: &mut String, points: &[(f64, f64)], colour: &str, dashed: bool) {
        let path: Vec<String> = points.iter().map(|&p| self.point(p)).collect();
        let _ = write!(
            out,
            r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.8"{}/>"##,
            path.join(" "),
            dash(dashed)
        );
    }

    /// The band between `low` and `high`, sampled at the same hours.
    fn band(&self, out: &mut String, hours: &[f64], low: &[f64], high: &[f64], colour: &str) {
        let mut path: Vec<String> = hours
            .iter()
            .zip(high)
            .map(|(&h, &v)| self.point((h, v)))
            .collect();
        path.extend(
            hours
                .iter()
                .zip(low)
                .rev()
                .map(|(&h, &v)| self.point((h, v))),
        );
        let _ = write!(
            out,
            r##"<polygon points="{}" fill="{colour}" fill-opacity="0.75" stroke="none"/>"##,
            path.join(" ")
        );
    }
}

fn tick(v: f64) -> String {
    if v >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A nice upper bound for an axis showing `max`.
fn ceiling(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= max)
        .unwrap_or(10.0 * magnitude)
}

/// The entries in a row at the panel's top right.
fn legend(out: &mut String, top: f64, entries: &[(String, &str, bool)]) {
    let width = |label: &str| 30.0 + label.len() as f64 * 6.5;
    let mut x = WIDTH - RIGHT - entries.iter().map(|(l, ..)| width(l)).sum::<f64>();
    for (label, colour, dashed) in entries {
        let _ = write!(
            out,
            r##"<line x1="{x}" y1="{}" x2="{}" y2="{}" stroke="{colour}" stroke-width="6"{}/><text x="{}" y="{}" font-size="12">{}</text>"##,
            top - 14.0,
            x + 18.0,
            top - 14.0,
            dash(*dashed),
            x + 23.0,
            top - 10.0,
            escape(label)
        );
        x += width(label);
    }
}

/// The chart of one report, or of several replays of one trace.
pub fn svg(reports: &[(&str, &Report)]) -> String {
    let hours = reports
        .iter()
        .map(|(_, r)| r.hours.len() as f64)
        .fold(1.0, f64::max);
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"##
    );
    let servers_max = reports
        .iter()
        .flat_map(|(_, r)| &r.timeline)
        .map(|s| (s.active + s.idle + s.pool).max(s.builds) as f64)
        .fold(0.0, f64::max);
    let servers = Frame {
        top: TOP,
        hours,
        max: ceiling(servers_max),
        log: false,
    };
    servers.draw(&mut out, "Servers (hours since the first launch's hour)");
    if let [(_, report)] = reports {
        let t: Vec<f64> = report.timeline.iter().map(|s| s.hours).collect();
        let active: Vec<f64> = report.timeline.iter().map(|s| s.active as f64).collect();
        let idle: Vec<f64> = report
            .timeline
            .iter()
            .map(|s| (s.active + s.idle) as f64)
            .collect();
        let pool: Vec<f64> = report
            .timeline
            .iter()
            .map(|s| (s.active + s.idle + s.pool) as f64)
            .collect();
        let zero = vec![0.0; t.len()];
        servers.band(&mut out, &t, &zero, &active, COLOURS[0]);
        servers.band(&mut out, &t, &active, &idle, COLOURS[1]);
        servers.band(&mut out, &t, &idle, &pool, COLOURS[2]);
        let builds: Vec<(f64, f64)> = report
            .timeline
            .iter()
            .map(|s| (s.hours, s.builds as f64))
            .collect();
        servers.line(&mut out, &builds, "#d62728", true);
        legend(
            &mut out,
            TOP,
            &[
                ("active".into(), COLOURS[0], false),
                ("idle".into(), COLOURS[1], false),
                ("warm pool".into(), COLOURS[2], false),
                ("builds".into(), "#d62728", true),
            ],
        );
    } else {
        for (n, (_, report)) in reports.iter().enumerate() {
            let total: Vec<(f64, f64)> = report
                .timeline
                .iter()
                .map(|s| (s.hours, (s.active + s.idle + s.pool) as f64))
                .collect();
            servers.line(&mut out, &total, COLOURS[n % COLOURS.len()], false);
        }
        let entries: Vec<(String, &str, bool)> = reports
            .iter()
            .enumerate()
            .map(|(n, (name, _))| ((*name).to_string(), COLOURS[n % COLOURS.len()], false))
            .collect();
        legend(&mut out, TOP, &entries);
    }
    let wait_max = reports
        .iter()
        .flat_map(|(_, r)| &r.hours)
        .filter_map(|h| h.wait_secs.p90)
        .fold(0.0, f64::max);
    let waits = Frame {
        top: TOP + PANEL + GAP,
        hours,
        max: 10f64.powf(wait_max.max(10.0).log10().ceil()),
        log: true,
    };
    waits.draw(&mut out, "Click to ready per hour of arrival (s, log)");
    let mut entries = Vec::new();
    for (n, (name, report)) in reports.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        for (dashed, label, pick) in [
            (
                false,
                "p90",
                (|h| h.wait_secs.p90) as fn(&super::report::Period) -> Option<f64>,
            ),
            (true, "p50", |h| h.wait_secs.p50),
        ] {
            // A step per hour: flat across the hour it describes.
            let points: Vec<(f64, f64)> = report
                .hours
                .iter()
                .enumerate()
                .filter_map(|(i, h)| pick(h).map(|v| (i as f64, v)))
                .flat_map(|(i, v)| [(i, v), (i + 1.0, v)])
                .collect();
            waits.line(&mut out, &points, colour, dashed);
            let label = match reports.len() {
                1 => label.to_string(),
                _ => format!("{name} {label}"),
            };
            entries.push((label, colour, dashed));
        }
    }
    legend(&mut out, waits.top, &entries);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(ceiling(0.0), 1.0);
        assert_eq!(ceiling(7.0), 10.0);
        assert_eq!(ceiling(180.0), 200.0);
        assert_eq!(ceiling(2400.0), 2500.0);
    }
}
