//! How crictl shows pods and containers: state words (`Running`, `NotReady`), ages
//! (`About a minute ago`, Go's `units.HumanDuration`), and enum names in JSON/YAML documents.

use std::time::Duration;

use k8s_cri::v1::{ContainerState, NamespaceMode, PodSandboxState};
use serde_json::Value;

/// `Created`, `Running`, `Exited` or `Unknown`, as `crictl ps`.
pub fn container_state(state: i32) -> &'static str {
    match ContainerState::try_from(state) {
        Ok(ContainerState::ContainerCreated) => "Created",
        Ok(ContainerState::ContainerRunning) => "Running",
        Ok(ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

/// `Ready` or `NotReady`, as `crictl pods`.
pub fn pod_state(state: i32) -> &'static str {
    match PodSandboxState::try_from(state) {
        Ok(PodSandboxState::SandboxReady) => "Ready",
        Ok(PodSandboxState::SandboxNotready) => "NotReady",
        Err(_) => "Unknown",
    }
}

/// Go's `units.HumanDuration`: `Less than a second`, `5 seconds`, `About a minute`,
/// `3 hours`, `2 weeks`…
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = (d.as_secs_f64() / 3600.0).round() as u64;
    match () {
        _ if seconds < 1 => "Less than a second".into(),
        _ if seconds == 1 => "1 second".into(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// The CREATED column: how long before `now` (both in nanoseconds since the epoch).
pub fn ago(created: i64, now: i64) -> String {
    let nanos = u64::try_from(now.saturating_sub(created)).unwrap_or(0);
    format!("{} ago", human_duration(Duration::from_nanos(nanos)))
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Replaces the number at `pointer` (a JSON pointer; `*` matches every list element) with its
/// enum name, leaving unknown numbers alone.
pub fn name_enum(doc: &mut Value, pointer: &str, name: fn(i32) -> Option<&'static str>) {
    let (head, rest) = match pointer.split_once("/*") {
        Some((head, rest)) => (head, Some(rest)),
        None => (pointer, None),
    };
    let Some(target) = doc.pointer_mut(head) else {
        return;
    };
    match rest {
        Some(rest) => {
            if let Value::Array(items) = target {
                for item in items {
                    name_enum(item, rest, name);
                }
            }
        }
        None => {
            let named = target
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .and_then(name);
            if let Some(n) = named {
                *target = Value::from(n);
            }
        }
    }
}

/// `CONTAINER_RUNNING`…
pub fn container_state_name(n: i32) -> Option<&'static str> {
    ContainerState::try_from(n).ok().map(|s| s.as_str_name())
}

/// `SANDBOX_READY`…
pub fn pod_state_name(n: i32) -> Option<&'static str> {
    PodSandboxState::try_from(n).ok().map(|s| s.as_str_name())
}

/// `POD`, `NODE`…
pub fn namespace_mode_name(n: i32) -> Option<&'static str> {
    NamespaceMode::try_from(n).ok().map(|s| s.as_str_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go_units() {
        let h = |s| human_duration(Duration::from_secs(s));
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(h(1), "1 second");
        assert_eq!(h(5), "5 seconds");
        assert_eq!(h(59), "59 seconds");
        assert_eq!(h(60), "About a minute");
        assert_eq!(h(119), "About a minute");
        assert_eq!(h(120), "2 minutes");
        assert_eq!(h(59 * 60), "59 minutes");
        assert_eq!(h(3600), "About an hour");
        assert_eq!(h(5400), "2 hours");
        assert_eq!(h(47 * 3600), "47 hours");
        assert_eq!(h(48 * 3600), "2 days");
        assert_eq!(h(15 * 24 * 3600), "2 weeks");
        assert_eq!(h(90 * 24 * 3600), "3 months");
        assert_eq!(h(800 * 24 * 3600), "2 years");
    }

    #[test]
    fn ages() {
        let s = 1_000_000_000;
        assert_eq!(ago(100 * s, 105 * s), "5 seconds ago");
        assert_eq!(ago(100 * s, 170 * s), "About a minute ago");
        assert_eq!(ago(105 * s, 100 * s), "Less than a second ago");
    }

    #[test]
    fn states() {
        assert_eq!(container_state(1), "Running");
        assert_eq!(container_state(2), "Exited");
        assert_eq!(container_state(9), "Unknown");
        assert_eq!(pod_state(0), "Ready");
        assert_eq!(pod_state(1), "NotReady");
    }

    #[test]
    fn enums_are_named_in_documents() {
        let mut doc = serde_json::json!({
            "containers": [{"state": 1}, {"state": 2}, {"state": 42}],
            "status": {"linux": {"namespaces": {"options": {"network": 2}}}}
        });
        name_enum(&mut doc, "/containers/*/state", container_state_name);
        name_enum(
            &mut doc,
            "/status/linux/namespaces/options/network",
            namespace_mode_name,
        );
        name_enum(&mut doc, "/missing/state", pod_state_name);
        assert_eq!(
            doc,
            serde_json::json!({
                "containers": [
                    {"state": "CONTAINER_RUNNING"},
                    {"state": "CONTAINER_EXITED"},
                    {"state": 42}
                ],
                "status": {"linux": {"namespaces": {"options": {"network": "NODE"}}}}
            })
        );
    }
}
