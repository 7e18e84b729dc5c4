//! `port-forward`: local TCP ports forwarded into a pod through the CRI `PortForward` URL, one
//! fresh URL per accepted connection (tokens are single-use).

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use husk_streaming::client::{self, PortForwardOptions};
use k8s_cri::v1::PortForwardRequest;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::client::Client;
use crate::commands::Ctx;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  huskctl port-forward POD 8080:80      local 8080 to the pod's 80\n  \
                  huskctl port-forward POD 5432         local 5432 to the pod's 5432\n  \
                  huskctl port-forward POD 0:80 :443    free local ports (printed)\n\n\
                  Runs until interrupted (SIGINT/SIGTERM)."
)]
pub struct PortForwardArgs {
    /// Pod sandbox ID
    pub pod: String,
    /// Ports to forward as [LOCAL:]REMOTE; LOCAL 0 or empty (`:80`) picks a free port
    #[arg(required = true, value_name = "[LOCAL:]REMOTE", value_parser = parse_port_spec)]
    pub ports: Vec<PortSpec>,
    /// Local address to listen on
    #[arg(long, value_name = "IP", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub address: IpAddr,
}

/// One `LOCAL:REMOTE` pair; `local` 0 picks a free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub local: u16,
    pub remote: u16,
}

/// Parses `REMOTE`, `LOCAL:REMOTE` or `:REMOTE` (as kubectl).
pub fn parse_port_spec(s: &str) -> Result<PortSpec, String> {
    let port = |p: &str, what: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("invalid {what} port {p:?} in {s:?} (expected [LOCAL:]REMOTE)"))
    };
    let (local, remote) = match s.split_once(':') {
        Some(("", remote)) => (0, port(remote, "remote")?),
        Some((local, remote)) => (port(local, "local")?, port(remote, "remote")?),
        None => {
            let p = port(s, "remote")?;
            (p, p)
        }
    };
    if remote == 0 {
        return Err(format!("remote port 0 cannot be forwarded ({s:?})"));
    }
    Ok(PortSpec { local, remote })
}

/// Runs until SIGINT or SIGTERM.
pub async fn port_forward(ctx: &Ctx, args: PortForwardArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    // One request up front: an unknown pod, or a huskd without PortForward, fails here.
    request_url(&client, &args.pod, args.ports[0].remote).await?;
    let mut listeners = Vec::new();
    for spec in &args.ports {
        let listener = TcpListener::bind((args.address, spec.local))
            .await
            .with_context(|| {
                format!("listening on {}", SocketAddr::new(args.address, spec.local))
            })?;
        let local = listener.local_addr()?;
        say(&format!("Forwarding from {local} -> {}", spec.remote));
        listeners.push((listener, local, spec.remote));
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tasks = JoinSet::new();
    for (listener, local, remote) in listeners {
        tasks.spawn(serve(
            listener,
            local,
            remote,
            client.clone(),
            args.pod.clone(),
        ));
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        Some(r) = tasks.join_next() => r.context("a listener failed")?,
    }
    Ok(())
}

/// Accepts connections on `listener` forever, each forwarded on its own.
async fn serve(listener: TcpListener, local: SocketAddr, remote: u16, client: Client, pod: String) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                complain(&format!("huskctl: accepting on {local}: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        say(&format!("Handling connection for {}", local.port()));
        let (client, pod) = (client.clone(), pod.clone());
        tokio::spawn(async move {
            if let Err(e) = forward(tcp, remote, &client, &pod).await {
                complain(&format!(
                    "huskctl: error forwarding {local} -> {remote}: {e:#}"
                ));
            }
        });
    }
}

/// A line on stdout; a closed stdout must not stop the forwarding (`println!` would panic).
fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// A line on stderr, likewise.
fn complain(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Forwards one accepted connection through a fresh URL until both sides are done.
async fn forward(
    mut tcp: TcpStream,
    remote: u16,
    client: &Client,
    pod: &str,
) -> anyhow::Result<()> {
    let _ = tcp.set_nodelay(true);
    let url = request_url(client, pod, remote).await?;
    let mut stream = client::port_forward(&url, remote, &PortForwardOptions::default())
        .await
        .context("opening the port-forward stream")?;
    let errors = stream.error_channel();
    let copied = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await;
    drop(stream);
    drop(tcp);
    if let Some(message) = errors.message().await {
        bail!("{message}");
    }
    copied.context("copying")?;
    Ok(())
}

/// A fresh `PortForward` URL for `port` of `pod`.
async fn request_url(client: &Client, pod: &str, port: u16) -> anyhow::Result<String> {
    let request = PortForwardRequest {
        pod_sandbox_id: pod.to_owned(),
        port: vec![i32::from(port)],
    };
    let mut runtime = client.runtime();
    let response = client
        .unary("PortForward", runtime.port_forward(request))
        .await?;
    if response.url.is_empty() {
        bail!("huskd answered PortForward without a url");
    }
    Ok(response.url)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn spec(local: u16, remote: u16) -> PortSpec {
        PortSpec { local, remote }
    }

    #[test]
    fn port_specs() {
        assert_eq!(parse_port_spec("8080:80"), Ok(spec(8080, 80)));
        assert_eq!(parse_port_spec("5432"), Ok(spec(5432, 5432)));
        assert_eq!(parse_port_spec(":443"), Ok(spec(0, 443)));
        assert_eq!(parse_port_spec("0:443"), Ok(spec(0, 443)));
        assert_eq!(parse_port_spec(" 1 : 2 "), Ok(spec(1, 2)));
        for bad in [
            "", ":", "80:", "x:80", "80:x", "65536:80", "80:65536", "80:0", "0", "-1:80", "1:2:3",
        ] {
            assert!(parse_port_spec(bad).is_err(), "{bad:?} parsed");
        }
        let err = parse_port_spec("80:http").unwrap_err();
        assert!(
            err.contains("remote port") && err.contains("[LOCAL:]REMOTE"),
            "{err}"
        );
    }

    #[test]
    fn command_line() {
        let parse = |argv: &[&str]| {
            let mut full = vec!["huskctl", "port-forward"];
            full.extend_from_slice(argv);
            match Cli::try_parse_from(full).map(|c| c.command) {
                Ok(Command::PortForward(a)) => Some(a),
                _ => None,
            }
        };
        let a = parse(&["pod1", "8080:80", ":443"]).unwrap();
        assert_eq!(a.pod, "pod1");
        assert_eq!(a.ports, vec![spec(8080, 80), spec(0, 443)]);
        assert_eq!(a.address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let a = parse(&["--address", "0.0.0.0", "pod1", "80"]).unwrap();
        assert_eq!(a.address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(parse(&["pod1"]).is_none(), "ports are required");
        assert!(parse(&["pod1", "80:x"]).is_none());
        assert!(parse(&["--address", "localhost", "pod1", "80"]).is_none());
    }
}
