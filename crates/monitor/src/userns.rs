//! `husk-monitor userns`: the short-lived process that makes a pod's user namespace and, inside
//! it, the pod's network/IPC/UTS namespaces (a thread of huskd cannot: the kernel refuses
//! CLONE_NEWUSER in a multi-threaded process). The protocol, one line each way at a time:
//! 1. huskd writes the [`UsernsRequest`] as one JSON line; we unshare the user namespace and
//!    answer `ready`;
//! 2. huskd writes our `uid_map`/`gid_map` and then `go`; we unshare the other namespaces, set
//!    them up (hostname, `lo`, sysctls) and answer `done` (or `error: <why>`);
//! 3. huskd pins `/proc/<our pid>/ns/*` and closes our stdin; we exit.
//!
//! (`pause --userns <pin>` makes the PID-namespace init of such a pod inside its user namespace,
//! so that the containers can mount their `/proc`.)

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// What the pod's namespaces need besides the user namespace.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UsernsRequest {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    pub hostname: Option<String>,
    pub sysctls: Vec<(String, String)>,
    pub loopback_up: bool,
}

impl UsernsRequest {
    fn pin_request(&self) -> husk_sys::ns::PinRequest {
        // enter_new only looks at which pins are asked for; we pin nothing ourselves.
        let flag = |b: bool, kind: &str| b.then(|| PathBuf::from(format!("/proc/self/ns/{kind}")));
        husk_sys::ns::PinRequest {
            net: flag(self.net, "net"),
            ipc: flag(self.ipc, "ipc"),
            uts: flag(self.uts, "uts"),
            hostname: self.hostname.clone(),
            sysctls: self.sysctls.clone(),
            loopback_up: self.loopback_up,
        }
    }
}

/// `husk-monitor userns`.
pub fn run() -> ExitCode {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = std::io::stdout().lock();
    let mut say = |s: &str| {
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    };
    let req: UsernsRequest = match lines.next().map(|l| l.map(|l| serde_json::from_str(&l))) {
        Some(Ok(Ok(r))) => r,
        _ => {
            say("error: bad request");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = husk_sys::ns::unshare_user() {
        say(&format!("error: {e}"));
        return ExitCode::from(1);
    }
    say("ready");
    match lines.next() {
        Some(Ok(l)) if l == "go" => {}
        _ => return ExitCode::from(1),
    }
    if let Err(e) = husk_sys::ns::enter_new(&req.pin_request()) {
        say(&format!("error: {e}"));
        return ExitCode::from(1);
    }
    say("done");
    // Stay until huskd has pinned our namespaces and closed our stdin.
    for _ in lines.by_ref() {}
    ExitCode::SUCCESS
}
