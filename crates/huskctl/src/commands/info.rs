//! `version` and `info`: the CRI `Version` and verbose `Status` calls.

use k8s_cri::v1::{StatusRequest, VersionRequest};

use crate::cli::{InfoArgs, VersionArgs};
use crate::commands::Ctx;
use crate::outln;
use crate::output::{print_data, status_with_info};

/// The CRI API version huskctl speaks.
const CRI_VERSION: &str = "v1";

/// `huskctl version`: like `crictl version`.
pub async fn version(ctx: &Ctx, args: VersionArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let request = VersionRequest {
        version: CRI_VERSION.into(),
    };
    let v = client
        .unary("Version", client.runtime().version(request))
        .await?;
    match args.output {
        Some(format) => print_data(format, &v)?,
        None => {
            outln!("Version:  {}", v.version);
            outln!("RuntimeName:  {}", v.runtime_name);
            outln!("RuntimeVersion:  {}", v.runtime_version);
            outln!("RuntimeApiVersion:  {}", v.runtime_api_version);
        }
    }
    Ok(())
}

/// `huskctl info`: conditions, handlers and huskd's verbose info, as `crictl info`.
pub async fn info(ctx: &Ctx, args: InfoArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let status = client
        .unary(
            "Status",
            client.runtime().status(StatusRequest { verbose: true }),
        )
        .await?;
    let extra = vec![
        (
            "runtime_handlers",
            serde_json::to_value(&status.runtime_handlers)?,
        ),
        ("features", serde_json::to_value(status.features)?),
    ];
    let doc = status_with_info(&status.status, extra, &status.info)?;
    print_data(args.output, &doc)
}
