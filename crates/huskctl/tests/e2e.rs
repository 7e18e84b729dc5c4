//! End to end: the real `huskctl` binary against a real `huskd` (in a temp root) whose
//! `docker.io` is mirrored to a real local `docker-registry` holding a busybox image.
//! huskd's binary is the one next to huskctl's in the target dir (`cargo build -p huskd`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use husk_test_support::oci::write_docker_save_archive;
use husk_test_support::{
    BuiltImage, Huskd, HuskdOptions, Registry, RegistryOptions, busybox_image, free_port,
};
use serde_json::Value;

const BUSYBOX: &str = "docker.io/library/busybox:latest";
const TABLE_HEADER: &str =
    "IMAGE                       TAG                 IMAGE ID            SIZE";
/// Columns are at least 20 wide (crictl's tabwriter), wider for docker.io/library/busybox.
const EMPTY_HEADER: &str = "IMAGE               TAG                 IMAGE ID            SIZE";
/// A registry name served directly by the local registry (no mirror, no dead upstream).
const DIRECT: &str = "registry.test";

/// `target/<profile>/huskd`, beside the huskctl under test.
fn huskd_bin() -> PathBuf {
    let huskctl = Path::new(env!("CARGO_BIN_EXE_huskctl"));
    let bin = huskctl
        .parent()
        .expect("huskctl has a parent dir")
        .join("huskd");
    if !bin.is_file() {
        panic!(
            "{} is missing: build huskd first (cargo build -p huskd)",
            bin.display()
        );
    }
    bin
}

/// A registry holding `library/busybox:latest`, and a huskd that pulls docker.io from it.
struct Env {
    huskd: Huskd,
    /// The pushed image.
    image: BuiltImage,
    _registry: Registry,
}

impl Env {
    async fn start() -> Env {
        let registry = Registry::start(RegistryOptions::default())
            .await
            .expect("start registry");
        let image = busybox_image(&["sh"]).expect("busybox image").build();
        registry
            .push_image("library/busybox", "latest", &image)
            .await
            .expect("push busybox");
        let huskd = Huskd::start(HuskdOptions::new(huskd_bin())).expect("start huskd");
        // The upstream is a closed local port: nothing can leave the machine.
        let hosts = format!(
            "server = \"http://127.0.0.1:{}\"\n\n[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            free_port(),
            registry.url()
        );
        huskd
            .write_hosts_toml("docker.io", &hosts)
            .expect("write hosts.toml");
        let direct = format!(
            "server = \"{url}\"\n\n[host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            url = registry.url()
        );
        huskd
            .write_hosts_toml(DIRECT, &direct)
            .expect("write hosts.toml");
        Env {
            huskd,
            image,
            _registry: registry,
        }
    }

    /// Runs huskctl against the daemon's socket (stdin from `input` or empty).
    fn huskctl_with(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let endpoint = format!("unix://{}", self.huskd.socket_path().display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_huskctl"))
            .arg("-r")
            .arg(&endpoint)
            .args(args)
            .env_remove("HUSK_ENDPOINT")
            .env_remove("CONTAINER_RUNTIME_ENDPOINT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run huskctl");
        let mut stdin = child.stdin.take().expect("stdin");
        if let Some(data) = input {
            stdin.write_all(data).expect("write stdin");
        }
        drop(stdin);
        child.wait_with_output().expect("wait for huskctl")
    }

    fn huskctl(&self, args: &[&str]) -> Output {
        self.huskctl_with(args, None)
    }

    /// stdout of a successful run.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.huskctl(args);
        assert!(
            out.status.success(),
            "huskctl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("huskctl {args:?}: {e}:\n{text}"))
    }

    fn image_id(&self) -> &str {
        self.image.image_id()
    }
}

/// The 13-character ID shown in tables.
fn short(id: &str) -> &str {
    &id.trim_start_matches("sha256:")[..13]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_info() {
    let env = Env::start().await;

    let text = env.ok(&["version"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "Version:  0.1.0");
    assert_eq!(lines[1], "RuntimeName:  husk");
    assert!(lines[2].starts_with("RuntimeVersion:  "), "{text}");
    assert_eq!(lines[3], "RuntimeApiVersion:  v1");
    let v = env.json(&["version", "-o", "json"]);
    assert_eq!(v["runtime_name"], "husk", "{v}");
    assert_eq!(v["runtime_api_version"], "v1", "{v}");

    let info = env.json(&["info"]);
    let status = info["status"].as_object().expect("status object");
    assert!(status.contains_key("conditions"), "{info}");
    assert!(info.get("runtime_handlers").is_some(), "{info}");
    let yaml = env.ok(&["info", "-o", "yaml"]);
    assert!(yaml.starts_with("status:"), "{yaml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_list_inspect_remove() {
    let env = Env::start().await;
    let id = env.image_id().to_owned();
    let manifest = env.image.manifest_digest.clone();

    assert_eq!(env.ok(&["images"]), format!("{EMPTY_HEADER}\n"));

    // Not a terminal: one line per finished layer, then what was fetched and the image ID.
    let out = env.ok(&["pull", "busybox"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let mut layer_lines: Vec<&str> = lines[0..2].to_vec();
    layer_lines.sort_unstable();
    let mut want: Vec<&str> = env
        .image
        .layers
        .iter()
        .map(|l| &l.digest.trim_start_matches("sha256:")[..12])
        .collect();
    want.sort_unstable();
    for (line, hex) in layer_lines.iter().zip(&want) {
        assert!(
            line.starts_with(&format!("{hex}: done (")) && line.ends_with(')'),
            "{line:?} in:\n{out}"
        );
    }
    let summary = regex::Regex::new(
        r"^Pulled docker\.io/library/busybox:latest \([\d.]+ [kM]B in \d+\.\d s, [\d.]+ [kMG]?B/s\)$",
    )
    .unwrap();
    assert!(summary.is_match(lines[2]), "{out}");
    assert_eq!(lines[3], format!("Image ID: {id}"));

    // Pulling again downloads nothing.
    let again = env.ok(&["pull", "busybox"]);
    assert_eq!(again.matches(": already exists").count(), 2, "{again}");
    assert!(
        again.ends_with(&format!(
            "\nImage is up to date for docker.io/library/busybox:latest\nImage ID: {id}\n"
        )),
        "{again}"
    );
    assert_eq!(env.ok(&["pull", "-q", BUSYBOX]), format!("{id}\n"));

    let table = env.ok(&["images"]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(rows[0], TABLE_HEADER);
    let cells: Vec<&str> = rows[1].split_whitespace().collect();
    assert_eq!(
        cells[..3],
        ["docker.io/library/busybox", "latest", short(&id)],
        "{table}"
    );
    assert!(
        cells[3].ends_with("MB") || cells[3].ends_with("kB"),
        "{table}"
    );
    let digests = env.ok(&["images", "--digests", "--no-trunc"]);
    assert!(digests.contains(&manifest), "{digests}");
    assert!(digests.contains(&id), "{digests}");

    let list = env.json(&["images", "-o", "json"]);
    let images = list["images"].as_array().expect("images array");
    assert_eq!(images.len(), 1, "{list}");
    assert_eq!(images[0]["id"], id.as_str());
    assert_eq!(images[0]["repo_tags"], serde_json::json!([BUSYBOX]));
    assert_eq!(
        images[0]["repo_digests"],
        serde_json::json!([format!("docker.io/library/busybox@{manifest}")])
    );
    assert!(images[0]["size"].as_u64().unwrap_or(0) > 0, "{list}");

    assert_eq!(env.ok(&["images", "-q"]), format!("{id}\n"));
    assert_eq!(env.ok(&["images", "-q", "busybox"]), format!("{id}\n"));
    assert_eq!(env.ok(&["images", "-q", "nosuch"]), "");

    let text = env.ok(&["inspecti", "busybox"]);
    assert!(
        text.starts_with("{\n  \"status\": {"),
        "status comes first:\n{text}"
    );
    let doc: Value = serde_json::from_str(&text).expect("inspecti json");
    assert_eq!(doc["status"]["id"], id.as_str());
    assert_eq!(doc["status"]["repo_tags"], serde_json::json!([BUSYBOX]));
    let spec = &doc["info"]["imageSpec"];
    assert!(spec.is_object(), "{doc}");
    assert_eq!(spec["config"]["Cmd"], serde_json::json!(["sh"]), "{doc}");
    assert_eq!(
        spec["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2),
        "{doc}"
    );
    let by_id = env.json(&["inspecti", &id]);
    assert_eq!(by_id["status"]["id"], id.as_str());
    let out = env.huskctl(&["inspecti", "nosuch:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "huskctl: image \"nosuch:1\" not found\n"
    );

    let fs = env.json(&["imagefsinfo"]);
    let first = &fs["image_filesystems"][0];
    let mountpoint = first["fs_id"]["mountpoint"].as_str().expect("mountpoint");
    assert!(
        Path::new(mountpoint).starts_with(env.huskd.root_dir()),
        "{mountpoint} is not under {}",
        env.huskd.root_dir().display()
    );
    assert!(
        first["used_bytes"]["value"].as_u64().unwrap_or(0) > 0,
        "{fs}"
    );
    assert!(first["timestamp"].as_i64().unwrap_or(0) > 0, "{fs}");
    let fs_table = env.ok(&["imagefsinfo", "-o", "table"]);
    assert!(fs_table.starts_with("TYPE "), "{fs_table}");
    assert!(fs_table.contains(mountpoint), "{fs_table}");

    assert_eq!(env.ok(&["rmi", "busybox"]), format!("Deleted: {BUSYBOX}\n"));
    assert_eq!(env.ok(&["images"]), format!("{EMPTY_HEADER}\n"));
    assert_eq!(env.ok(&["images", "-q"]), "");
    assert_eq!(
        env.json(&["images", "-o", "json"])["images"],
        serde_json::json!([])
    );
    let out = env.huskctl(&["rmi", "busybox"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "huskctl: image \"busybox\" not found\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_docker_save_archive() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let img = busybox_image(&["echo", "imported"])
        .expect("busybox image")
        .build();
    let tar = dir.path().join("offline.tar");
    write_docker_save_archive(&img, &["busybox:offline"], &tar).expect("write archive");
    let two_tags = dir.path().join("two-tags.tar");
    write_docker_save_archive(
        &img,
        &["busybox:offline", "example.com/tools/bb:1"],
        &two_tags,
    )
    .expect("write archive");

    // Two names, then removing one only untags.
    let out = env.ok(&["import", two_tags.to_str().expect("utf-8 path")]);
    assert_eq!(
        out,
        "Imported docker.io/library/busybox:offline\nImported example.com/tools/bb:1\n"
    );
    assert_eq!(
        env.ok(&["rmi", "example.com/tools/bb:1"]),
        "Deleted: example.com/tools/bb:1\n"
    );

    let out = env.ok(&["import", tar.to_str().expect("utf-8 path")]);
    assert_eq!(out, "Imported docker.io/library/busybox:offline\n");

    let table = env.ok(&["images"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert_eq!(
        rows[0][..3],
        [
            "docker.io/library/busybox",
            "offline",
            short(img.image_id())
        ],
        "{table}"
    );
    let list = env.json(&["images", "-o", "json"]);
    assert_eq!(list["images"][0]["id"], img.image_id());
    assert_eq!(
        list["images"][0]["repo_tags"],
        serde_json::json!(["docker.io/library/busybox:offline"])
    );

    // The same archive from stdin, quietly: idempotent.
    let data = std::fs::read(&tar).expect("read archive");
    let out = env.huskctl_with(&["import", "-q", "-"], Some(&data));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "docker.io/library/busybox:offline\n"
    );
    assert_eq!(env.ok(&["images", "-q"]), format!("{}\n", img.image_id()));

    // Not an archive: one line, exit 1.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar archive").expect("write junk");
    let out = env.huskctl(&["import", junk.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("huskctl: ") && err.lines().count() == 1,
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_of_a_missing_image_fails_with_one_line() {
    let env = Env::start().await;
    // Through the docker.io mirror (whose dead upstream is what huskd reports, as containerd
    // reports the first non-404 error), and straight from a registry that answers 404.
    let direct_missing = format!("{DIRECT}/library/busybox:nosuchtag");
    for name in [
        "nosuch",
        "docker.io/library/busybox:nosuchtag",
        &direct_missing,
    ] {
        let out = env.huskctl(&["pull", name]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("huskctl: "), "{err}");
        assert!(err.contains(name), "the error names {name}: {err}");
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(env.ok(&["images", "-q"]), "");
    let out = env.huskctl(&["pull", &direct_missing]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found"), "{err}");
    // The same registry does serve what exists.
    let id = env.image_id().to_owned();
    assert_eq!(
        env.ok(&["pull", "-q", &format!("{DIRECT}/library/busybox:latest")]),
        format!("{id}\n")
    );
}

/// The pod and container verbs against the real daemon: run, ps, pods, logs, exec, inspect,
/// stop, rm, stopp, rmp — with crictl-style config files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_a_pod_and_manage_it() {
    let env = Env::start().await;
    // Pods get their own network namespace with only lo.
    std::fs::write(
        env.huskd.cni_dir().join("net.d/99-loopback.conflist"),
        r#"{"cniVersion": "1.0.0", "name": "lo-only", "plugins": [{"type": "loopback"}]}"#,
    )
    .expect("write conflist");
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = dir.path().join("pod.json");
    let ctr = dir.path().join("ctr.yaml");
    std::fs::write(
        &pod,
        format!(
            r#"{{"metadata": {{"name": "web", "namespace": "default", "uid": "u-web"}},
                "logDirectory": "{}",
                "linux": {{"securityContext": {{"namespaceOptions": {{"pid": "CONTAINER"}}}}}}}}"#,
            dir.path().join("logs").display()
        ),
    )
    .expect("write pod config");
    std::fs::write(
        &ctr,
        "metadata:\n  name: app\nimage:\n  image: busybox\ncommand: [sh, -c, 'echo started; sleep 1000']\nlog_path: app.log\n",
    )
    .expect("write container config");
    let id = env
        .ok(&["run", ctr.to_str().unwrap(), pod.to_str().unwrap()])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");

    let ps = env.ok(&["ps"]);
    assert!(
        ps.contains(short(&id)) && ps.contains("Running") && ps.contains("web"),
        "{ps}"
    );
    let pods = env.json(&["pods", "-o", "json"]);
    assert_eq!(pods["items"][0]["metadata"]["name"], "web", "{pods}");

    let exec = env.huskctl(&["exec", &id[..13], "sh", "-c", "echo from-exec; exit 4"]);
    assert_eq!(exec.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "from-exec\n");

    // streaming exec: stdin piped through cat, and the exit code
    let exec = env.huskctl_with(&["exec", "-i", &id, "cat"], Some(b"through huskctl\n"));
    assert!(exec.status.success(), "{exec:?}");
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "through huskctl\n");
    let exec = env.huskctl_with(
        &["exec", "-i", &id, "sh", "-c", "cat >&2; exit 5"],
        Some(b"e"),
    );
    assert_eq!(exec.status.code(), Some(5), "{exec:?}");
    assert_eq!(String::from_utf8_lossy(&exec.stderr), "e");

    // attach: stdin into `cat`; stdin_once closes it when this client detaches, so cat ends
    let pod_for_attach = env.json(&["pods", "-o", "json"])["items"][0]["id"]
        .as_str()
        .expect("pod id")
        .to_string();
    let cat = dir.path().join("cat.yaml");
    std::fs::write(
        &cat,
        "metadata:\n  name: cat\nimage:\n  image: busybox\ncommand: [cat]\nstdin: true\nstdin_once: true\nlog_path: cat.log\n",
    )
    .expect("write cat config");
    let cat_id = env
        .ok(&[
            "create",
            &pod_for_attach,
            cat.to_str().unwrap(),
            pod.to_str().unwrap(),
        ])
        .trim()
        .to_string();
    env.ok(&["start", &cat_id]);
    let attach = env.huskctl_with(&["attach", "-i", &cat_id], Some(b"via attach\n"));
    assert!(attach.status.success(), "{attach:?}");
    assert_eq!(String::from_utf8_lossy(&attach.stdout), "via attach\n");
    env.ok(&["rm", "-f", &cat_id]);

    // port-forward to an httpd in the pod (it listens in the pod's network namespace only)
    env.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "mkdir -p /www && echo hello via port-forward > /www/index.html && httpd -p 8080 -h /www",
    ]);
    let pod_id = env.json(&["pods", "-o", "json"])["items"][0]["id"]
        .as_str()
        .expect("pod id")
        .to_string();
    let mut pf = Command::new(env!("CARGO_BIN_EXE_huskctl"))
        .arg("-r")
        .arg(format!("unix://{}", env.huskd.socket_path().display()))
        .args(["port-forward", &pod_id, "0:8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run huskctl port-forward");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(pf.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read the forwarding line");
    let local: u16 = line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no local port in {line:?}"));
    let mut body = String::new();
    for _ in 0..50 {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", local)).expect("connect");
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send");
        body.clear();
        let _ = std::io::Read::read_to_string(&mut c, &mut body);
        if body.contains("hello via port-forward") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(body.contains("hello via port-forward"), "{body}");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pf.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM port-forward");
    assert!(pf.wait().expect("wait port-forward").success());

    // logs: wait for the first line
    let mut logs = String::new();
    for _ in 0..50 {
        logs = env.ok(&["logs", &id]);
        if logs.contains("started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(logs, "started\n");

    // stats, statsp and update against the real cgroups
    let stats = env.ok(&["stats"]);
    assert!(
        stats.contains(short(&id)) && stats.contains("app"),
        "{stats}"
    );
    let statsp = env.ok(&["statsp"]);
    assert!(statsp.contains("web"), "{statsp}");
    env.ok(&["update", "--memory", "80m", &id]);
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/husk/{id}/memory.limit_in_bytes"
    ))
    .expect("memory cgroup");
    assert_eq!(limit.trim(), (80u64 << 20).to_string());

    let inspect = env.json(&["inspect", &id]);
    assert_eq!(inspect["status"]["metadata"]["name"], "app", "{inspect}");
    assert!(
        inspect["info"]["pid"].as_i64().unwrap_or(0) > 0,
        "{inspect}"
    );

    env.ok(&["stop", "-t", "1", &id]);
    let ps = env.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited"), "{ps}");
    env.ok(&["rm", &id]);
    assert!(!env.ok(&["ps", "-a"]).contains(short(&id)));
    let pod_id = pods["items"][0]["id"].as_str().expect("pod id").to_string();
    env.ok(&["stopp", &pod_id]);
    env.ok(&["rmp", &pod_id]);
    assert!(env.ok(&["pods", "-q"]).trim().is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&env.huskd.dir().display().to_string()),
        "no mounts left"
    );
}
