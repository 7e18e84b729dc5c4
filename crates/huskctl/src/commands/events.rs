//! `events`: follow `GetContainerEvents`, one line (or one JSON object) per container event.

use clap::{Args, ValueEnum};
use k8s_cri::v1::{ContainerEventResponse, ContainerEventType, GetEventsRequest};

use crate::client::RpcError;
use crate::commands::Ctx;
use crate::cri_display::name_enum;
use crate::output::{emit, format_nanos, truncate_id};

/// How `events` prints each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Output format: a line of text or a JSON object per event
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: EventFormat,
}

const RPC: &str = "GetContainerEvents";

/// `CREATED`, `STARTED`, `STOPPED`, `DELETED` (`UNKNOWN` otherwise).
pub fn event_type(n: i32) -> &'static str {
    match ContainerEventType::try_from(n) {
        Ok(ContainerEventType::ContainerCreatedEvent) => "CREATED",
        Ok(ContainerEventType::ContainerStartedEvent) => "STARTED",
        Ok(ContainerEventType::ContainerStoppedEvent) => "STOPPED",
        Ok(ContainerEventType::ContainerDeletedEvent) => "DELETED",
        Err(_) => "UNKNOWN",
    }
}

fn event_type_name(n: i32) -> Option<&'static str> {
    ContainerEventType::try_from(n)
        .ok()
        .map(|t| t.as_str_name())
}

/// `<RFC 3339 time> <TYPE> container=<id> pod=<pod id>`, IDs cut to 13 characters.
pub fn event_line(event: &ContainerEventResponse) -> String {
    let pod = event
        .pod_sandbox_status
        .as_ref()
        .map_or("", |p| p.id.as_str());
    format!(
        "{} {} container={} pod={}",
        format_nanos(event.created_at),
        event_type(event.container_event_type),
        truncate_id(&event.container_id),
        truncate_id(pod)
    )
}

/// The event as one line of JSON, its type named.
pub fn event_json(event: &ContainerEventResponse) -> anyhow::Result<String> {
    let mut doc = serde_json::to_value(event)?;
    name_enum(&mut doc, "/container_event_type", event_type_name);
    Ok(serde_json::to_string(&doc)?)
}

/// `huskctl events`: runs until interrupted or huskd ends the stream; a stream error fails.
pub async fn events(ctx: &Ctx, args: EventsArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let mut stream = client
        .unary(
            RPC,
            client.runtime().get_container_events(GetEventsRequest {}),
        )
        .await?;
    loop {
        let event = stream
            .message()
            .await
            .map_err(|status| RpcError::Status { rpc: RPC, status })?;
        let Some(event) = event else {
            return Ok(());
        };
        let line = match args.output {
            EventFormat::Text => event_line(&event),
            EventFormat::Json => event_json(&event)?,
        };
        emit(&format!("{line}\n"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::PodSandboxStatus;

    fn event() -> ContainerEventResponse {
        ContainerEventResponse {
            container_id: "0123456789abcdef0123".into(),
            container_event_type: ContainerEventType::ContainerStoppedEvent as i32,
            created_at: 1_700_000_000_123_456_789,
            pod_sandbox_status: Some(PodSandboxStatus {
                id: "abcdefabcdefabcdef".into(),
                ..Default::default()
            }),
            containers_statuses: vec![],
        }
    }

    #[test]
    fn lines() {
        assert_eq!(
            event_line(&event()),
            "2023-11-14T22:13:20Z STOPPED container=0123456789abc pod=abcdefabcdefa"
        );
        assert_eq!(event_type(0), "CREATED");
        assert_eq!(event_type(1), "STARTED");
        assert_eq!(event_type(3), "DELETED");
        assert_eq!(event_type(9), "UNKNOWN");
    }

    #[test]
    fn json_names_the_type() {
        let text = event_json(&event()).expect("json");
        assert!(!text.contains('\n'));
        let doc: serde_json::Value = serde_json::from_str(&text).expect("parses");
        assert_eq!(doc["container_event_type"], "CONTAINER_STOPPED_EVENT");
        assert_eq!(doc["container_id"], "0123456789abcdef0123");
        assert_eq!(doc["pod_sandbox_status"]["id"], "abcdefabcdefabcdef");
    }
}
