//! `update`: change a running container's Linux resources with `UpdateContainerResources`.

use clap::Args;
use k8s_cri::v1::{LinuxContainerResources, UpdateContainerResourcesRequest};

use crate::commands::{Ctx, each_id};
use crate::outln;

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Container IDs
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Memory limit in bytes, or with a unit: 64m, 1g, 512k (binary multiples)
    #[arg(long, value_name = "BYTES", value_parser = parse_memory)]
    pub memory: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(long, value_name = "N")]
    pub cpu_shares: Option<i64>,
    /// CPU CFS period in microseconds
    #[arg(long, value_name = "N")]
    pub cpu_period: Option<i64>,
    /// CPU CFS quota in microseconds
    #[arg(long, value_name = "N")]
    pub cpu_quota: Option<i64>,
    /// CPUs the container may use, e.g. 0-2,4
    #[arg(long, value_name = "CPUS")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use, e.g. 0,1
    #[arg(long, value_name = "MEMS")]
    pub cpuset_mems: Option<String>,
}

/// Parses `1048576`, `64m`, `64MB`, `1g`, `512k`, `10b` (multiples of 1024, as docker's).
pub fn parse_memory(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("invalid memory size {s:?} (use bytes or e.g. 64m)"))?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty()))
        .unwrap_or(unit);
    let scale: i64 = match unit {
        "" | "b" => 1,
        "k" | "ki" => 1 << 10,
        "m" | "mi" => 1 << 20,
        "g" | "gi" => 1 << 30,
        "t" | "ti" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown unit in memory size {s:?} (use b, k, m, g or t)"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("memory size {s:?} is too large"))
}

impl UpdateArgs {
    /// The requested resources; unset flags stay 0 or empty.
    pub fn resources(&self) -> LinuxContainerResources {
        LinuxContainerResources {
            cpu_period: self.cpu_period.unwrap_or_default(),
            cpu_quota: self.cpu_quota.unwrap_or_default(),
            cpu_shares: self.cpu_shares.unwrap_or_default(),
            memory_limit_in_bytes: self.memory.unwrap_or_default(),
            cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
            cpuset_mems: self.cpuset_mems.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// `huskctl update`: prints each updated container's ID.
pub async fn update(ctx: &Ctx, args: UpdateArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let resources = args.resources();
    each_id(&args.ids, async |id| {
        let request = UpdateContainerResourcesRequest {
            container_id: id.to_string(),
            linux: Some(resources.clone()),
            ..Default::default()
        };
        client
            .unary(
                "UpdateContainerResources",
                client.runtime().update_container_resources(request),
            )
            .await?;
        outln!("{id}");
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("1048576"), Ok(1 << 20));
        assert_eq!(parse_memory("64m"), Ok(64 << 20));
        assert_eq!(parse_memory("64M"), Ok(64 << 20));
        assert_eq!(parse_memory("64MB"), Ok(64 << 20));
        assert_eq!(parse_memory("64Mi"), Ok(64 << 20));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
        assert_eq!(parse_memory("512k"), Ok(512 << 10));
        assert_eq!(parse_memory("10b"), Ok(10));
        assert!(parse_memory("").is_err());
        assert!(parse_memory("m").is_err());
        assert!(parse_memory("5x").is_err());
        assert!(parse_memory("-1").is_err());
        assert!(parse_memory("99999999999t").is_err());
    }
}
