//! `stats` and `statsp`: container and pod sandbox resource usage over the CRI runtime service.

use clap::Args;
use k8s_cri::v1::{
    ContainerStats, ContainerStatsFilter, ContainerStatsRequest, CpuUsage,
    ListContainerStatsRequest, ListContainerStatsResponse, ListPodSandboxStatsRequest,
    ListPodSandboxStatsResponse, MemoryUsage, PodSandboxStats, PodSandboxStatsFilter,
    PodSandboxStatsRequest, UInt64Value,
};

use crate::cli::{DataFormat, Format};
use crate::client::Client;
use crate::commands::Ctx;
use crate::commands::listing::parse_labels;
use crate::output::{Table, emit, human_size, print_data, truncate_id};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Container IDs (default: all containers matching the filters)
    pub ids: Vec<String>,
    /// Show all containers (default: only those using CPU or memory, i.e. running)
    #[arg(short, long)]
    pub all: bool,
    /// Only containers of this pod
    #[arg(short, long, value_name = "POD_ID")]
    pub pod: Option<String>,
    /// Only containers with this label (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct StatspArgs {
    /// Pod sandbox IDs (default: all pods matching the filters)
    pub ids: Vec<String>,
    /// Only pods with this label (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

/// `huskctl stats`: `ContainerStats` per given ID, else `ListContainerStats`.
pub async fn stats(ctx: &Ctx, args: StatsArgs) -> anyhow::Result<()> {
    let filter = ContainerStatsFilter {
        id: String::new(),
        pod_sandbox_id: args.pod.clone().unwrap_or_default(),
        label_selector: parse_labels(&args.label)?,
    };
    let client = ctx.connect().await?;
    let mut stats = if args.ids.is_empty() {
        list_container_stats(&client, filter).await?
    } else {
        let mut all = Vec::new();
        for id in &args.ids {
            all.extend(container_stats(&client, id).await?);
        }
        all
    };
    if !args.all {
        // As crictl: a container using neither CPU nor memory is not running.
        stats.retain(|s| cpu_nano_cores(s.cpu.as_ref()) != 0 || mem(s.memory.as_ref()) != 0);
    }
    match args.output {
        Format::Table => Ok(emit(&stats_table(&stats))?),
        Format::Json => print_data(DataFormat::Json, &ListContainerStatsResponse { stats }),
        Format::Yaml => print_data(DataFormat::Yaml, &ListContainerStatsResponse { stats }),
    }
}

async fn list_container_stats(
    client: &Client,
    filter: ContainerStatsFilter,
) -> anyhow::Result<Vec<ContainerStats>> {
    let request = ListContainerStatsRequest {
        filter: Some(filter),
    };
    Ok(client
        .unary(
            "ListContainerStats",
            client.runtime().list_container_stats(request),
        )
        .await?
        .stats)
}

async fn container_stats(client: &Client, id: &str) -> anyhow::Result<Option<ContainerStats>> {
    let request = ContainerStatsRequest {
        container_id: id.to_string(),
    };
    Ok(client
        .unary("ContainerStats", client.runtime().container_stats(request))
        .await?
        .stats)
}

/// `huskctl statsp`: `PodSandboxStats` per given ID, else `ListPodSandboxStats`.
pub async fn statsp(ctx: &Ctx, args: StatspArgs) -> anyhow::Result<()> {
    let filter = PodSandboxStatsFilter {
        id: String::new(),
        label_selector: parse_labels(&args.label)?,
    };
    let client = ctx.connect().await?;
    let stats = if args.ids.is_empty() {
        let request = ListPodSandboxStatsRequest {
            filter: Some(filter),
        };
        client
            .unary(
                "ListPodSandboxStats",
                client.runtime().list_pod_sandbox_stats(request),
            )
            .await?
            .stats
    } else {
        let mut all = Vec::new();
        for id in &args.ids {
            let request = PodSandboxStatsRequest {
                pod_sandbox_id: id.clone(),
            };
            let response = client
                .unary(
                    "PodSandboxStats",
                    client.runtime().pod_sandbox_stats(request),
                )
                .await?;
            all.extend(response.stats);
        }
        all
    };
    match args.output {
        Format::Table => Ok(emit(&pod_stats_table(&stats))?),
        Format::Json => print_data(DataFormat::Json, &ListPodSandboxStatsResponse { stats }),
        Format::Yaml => print_data(DataFormat::Yaml, &ListPodSandboxStatsResponse { stats }),
    }
}

fn value(v: Option<&UInt64Value>) -> u64 {
    v.map_or(0, |v| v.value)
}

fn cpu_nano_cores(cpu: Option<&CpuUsage>) -> u64 {
    value(cpu.and_then(|c| c.usage_nano_cores.as_ref()))
}

fn mem(memory: Option<&MemoryUsage>) -> u64 {
    value(memory.and_then(|m| m.working_set_bytes.as_ref()))
}

/// The CPU % column: nanocores as a percentage of one core, 2 decimals (`1.5e7` → `1.50`).
pub fn cpu_percent(nano_cores: u64) -> String {
    format!("{:.2}", nano_cores as f64 / 1e7)
}

/// `CONTAINER  NAME  CPU %  MEM  DISK  INODES`, as crictl.
pub fn stats_table(stats: &[ContainerStats]) -> String {
    let mut table = Table::new(&["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"]);
    for s in stats {
        let attributes = s.attributes.clone().unwrap_or_default();
        let disk = s.writable_layer.as_ref();
        table.push(vec![
            truncate_id(&attributes.id),
            attributes.metadata.unwrap_or_default().name,
            cpu_percent(cpu_nano_cores(s.cpu.as_ref())),
            human_size(mem(s.memory.as_ref())),
            human_size(value(disk.and_then(|d| d.used_bytes.as_ref()))),
            value(disk.and_then(|d| d.inodes_used.as_ref())).to_string(),
        ]);
    }
    table.render()
}

/// `POD  NAME  CPU %  MEM  PROCESSES  RX  TX`; RX/TX are the default interface's.
pub fn pod_stats_table(stats: &[PodSandboxStats]) -> String {
    let mut table = Table::new(&["POD", "NAME", "CPU %", "MEM", "PROCESSES", "RX", "TX"]);
    for s in stats {
        let attributes = s.attributes.clone().unwrap_or_default();
        let linux = s.linux.clone().unwrap_or_default();
        let eth = linux
            .network
            .and_then(|n| n.default_interface)
            .unwrap_or_default();
        let processes = linux.process.and_then(|p| p.process_count);
        table.push(vec![
            truncate_id(&attributes.id),
            attributes.metadata.unwrap_or_default().name,
            cpu_percent(cpu_nano_cores(linux.cpu.as_ref())),
            human_size(mem(linux.memory.as_ref())),
            value(processes.as_ref()).to_string(),
            human_size(value(eth.rx_bytes.as_ref())),
            human_size(value(eth.tx_bytes.as_ref())),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{
        ContainerAttributes, ContainerMetadata, FilesystemUsage, LinuxPodSandboxStats,
        NetworkInterfaceUsage, NetworkUsage, PodSandboxAttributes, PodSandboxMetadata,
        ProcessUsage,
    };

    fn v(value: u64) -> Option<UInt64Value> {
        Some(UInt64Value { value })
    }

    #[test]
    fn cpu_percentages() {
        assert_eq!(cpu_percent(0), "0.00");
        assert_eq!(cpu_percent(15_000_000), "1.50");
        assert_eq!(cpu_percent(1_000_000_000), "100.00");
        assert_eq!(cpu_percent(2_345_678_901), "234.57");
        assert_eq!(cpu_percent(12_345), "0.00");
        assert_eq!(cpu_percent(55_555), "0.01");
    }

    #[test]
    fn container_table_golden() {
        let stats = [ContainerStats {
            attributes: Some(ContainerAttributes {
                id: "0123456789abcdef0123".into(),
                metadata: Some(ContainerMetadata {
                    name: "web".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            cpu: Some(CpuUsage {
                usage_nano_cores: v(25_000_000),
                ..Default::default()
            }),
            memory: Some(MemoryUsage {
                working_set_bytes: v(12_500_000),
                ..Default::default()
            }),
            writable_layer: Some(FilesystemUsage {
                used_bytes: v(4096),
                inodes_used: v(7),
                ..Default::default()
            }),
            swap: None,
        }];
        let golden = "\
CONTAINER           NAME                CPU %               MEM                 DISK                INODES
0123456789abc       web                 2.50                12.5MB              4.1kB               7
";
        assert_eq!(stats_table(&stats), golden);
        // Missing values read as zero.
        let empty = stats_table(&[ContainerStats::default()]);
        assert!(empty.ends_with("0.00                0B                  0B                  0\n"));
    }

    #[test]
    fn pod_table_golden() {
        let stats = [PodSandboxStats {
            attributes: Some(PodSandboxAttributes {
                id: "abcdefabcdefabcdef".into(),
                metadata: Some(PodSandboxMetadata {
                    name: "nginx-sandbox".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(CpuUsage {
                    usage_nano_cores: v(1_000_000),
                    ..Default::default()
                }),
                memory: Some(MemoryUsage {
                    working_set_bytes: v(2_000_000),
                    ..Default::default()
                }),
                network: Some(NetworkUsage {
                    default_interface: Some(NetworkInterfaceUsage {
                        name: "eth0".into(),
                        rx_bytes: v(1500),
                        tx_bytes: v(999),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                process: Some(ProcessUsage {
                    process_count: v(3),
                    ..Default::default()
                }),
                containers: vec![],
            }),
            windows: None,
        }];
        let golden = "\
POD                 NAME                CPU %               MEM                 PROCESSES           RX                  TX
abcdefabcdefa       nginx-sandbox       0.10                2MB                 3                   1.5kB               999B
";
        assert_eq!(pod_stats_table(&stats), golden);
    }
}
