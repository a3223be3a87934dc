//! Event-stream messages, in upstream BinderHub's shape: JSON objects with a
//! `phase` and (usually) a `message` ending in a newline. Each is serialised
//! once, however many clients watch it.

use std::sync::Arc;

use serde_json::{Map, Value, json};

/// One event, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    phase: Arc<str>,
    json: Arc<str>,
}

impl Event {
    /// `{"phase": phase, "message": message}`.
    pub fn message(phase: &str, message: impl Into<String>) -> Event {
        Event::fields(phase, json!({ "message": message.into() }))
    }

    /// `{"phase": phase, …fields}`; `fields` must be an object.
    pub fn fields(phase: &str, fields: Value) -> Event {
        let mut object = Map::new();
        object.insert("phase".into(), Value::String(phase.into()));
        if let Value::Object(fields) = fields {
            object.extend(fields);
        }
        Event {
            phase: phase.into(),
            json: Value::Object(object).to_string().into(),
        }
    }

    /// A builder's log line: repo2docker's `--json-logs` objects pass through
    /// verbatim (their `phase` is `fetching`, `building`, `pushing`, …);
    /// anything else becomes `{"phase": "unknown", "message": line}`.
    pub fn log_line(line: &str) -> Event {
        let trimmed = line.trim_end_matches(['\n', '\r']);
        if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(trimmed)
            && object.get("message").is_some_and(Value::is_string)
        {
            let phase = object
                .get("phase")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string();
            return Event {
                phase: phase.into(),
                json: trimmed.into(),
            };
        }
        Event::message("unknown", format!("{trimmed}\n"))
    }

    /// An event as JSON recorded earlier (a build's log tail).
    pub fn from_json(json: &str) -> Event {
        let phase = serde_json::from_str::<Value>(json)
            .ok()
            .and_then(|v| v.get("phase").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        Event {
            phase: phase.into(),
            json: json.into(),
        }
    }

    /// The phase.
    pub fn phase(&self) -> &str {
        &self.phase
    }

    /// The serialised object.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// `ready` and `failed` end a stream.
    pub fn is_terminal(&self) -> bool {
        matches!(&*self.phase, "ready" | "failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            Event::message("waiting", "Waiting for build to start...\n").json(),
            r#"{"phase":"waiting","message":"Waiting for build to start...\n"}"#
        );
        let e = Event::fields(
            "built",
            json!({"message": "Built image, launching...\n", "imageName": "i:1"}),
        );
        assert_eq!(
            e.json(),
            r#"{"phase":"built","message":"Built image, launching...\n","imageName":"i:1"}"#
        );
    }

    #[test]
    fn log_lines() {
        let r2d = r#"{"phase": "building", "message": "Step 1/9 : FROM buildpack-deps:jammy\n"}"#;
        let e = Event::log_line(&format!("{r2d}\n"));
        assert_eq!(
            (e.phase(), e.json()),
            ("building", r2d),
            "repo2docker's JSON passes through verbatim"
        );
        let e = Event::log_line("plain text");
        assert_eq!(e.json(), r#"{"phase":"unknown","message":"plain text\n"}"#);
        assert_eq!(Event::log_line("[1,2]").phase(), "unknown");
        assert!(Event::message("failed", "x").is_terminal());
        assert_eq!(
            Event::from_json(r#"{"phase":"pushing","message":"p"}"#).phase(),
            "pushing"
        );
    }
}
