//! CheckpointContainer: a running container's processes dumped by CRIU (through
//! `<runtime> checkpoint --leave-running`), with its metadata and writable-layer changes, in one
//! uncompressed tar at the requested location, laid out as containerd's CRI and CRI-O write it
//! (checkpointctl and CRI restore code read these names):
//!
//! ```text
//! checkpoint/        CRIU images (inventory.img, pstree.img, core-*.img, pages-*.img, …)
//! config.dump        checkpointctl's ContainerConfig: id, name, image name/ref, runtime, times
//! spec.dump          the OCI runtime spec the container runs with (its config.json)
//! status.dump        the CRI ContainerStatus (JSON with the CRI's field names)
//! status             containerd's status record (checkpointctl shows times and pid from it)
//! rootfs-diff.tar    the writable layer as an OCI layer (deletions as `.wh.` whiteouts)
//! dump.log           CRIU's log; stats-dump: CRIU's statistics (when it wrote them)
//! container.log      the CRI log, when the container has one
//! ```
//!
//! The container is frozen (`<runtime> pause`, as CRI-O does) while CRIU dumps it and its
//! writable layer is read, so the two agree; it is thawed on every path and keeps running.
//! Namespaces the pod pinned are given by path in `config.json`, which both runtimes hand to
//! CRIU as external (network and pid), so they are not dumped. The work directory
//! (`<root>/tmp/checkpoint-*`, emptied at start) and a partial archive are removed on every path.

mod archive;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use husk_oci::{CheckpointOpts, OciError, OciRuntime};
use serde::Serialize;

use super::{ContainerRecord, ContainerState};
use crate::engine::{Engine, now_nanos};
use crate::error::{EngineError, Result, blocking};

/// The time limit when the request gives none.
pub const DEFAULT_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest time limit honoured: a larger one (up to `i64::MAX` seconds from the CRI, which
/// would overflow `Instant + Duration`) is clamped to it.
const MAX_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Names inside the archive (checkpointctl's `lib/metadata.go`).
const CHECKPOINT_DIR: &str = "checkpoint";
const CONFIG_DUMP: &str = "config.dump";
const SPEC_DUMP: &str = "spec.dump";
const STATUS_DUMP: &str = "status.dump";
const CONTAINERD_STATUS: &str = "status";
const ROOTFS_DIFF: &str = "rootfs-diff.tar";
const DUMP_LOG: &str = "dump.log";
const STATS_DUMP: &str = "stats-dump";
const CONTAINER_LOG: &str = "container.log";

impl Engine {
    /// Checkpoints a running container into an archive at `location` (an absolute path; an
    /// existing file there is replaced). The container keeps running. `timeout` bounds the
    /// whole operation. Returns the archive's size in bytes.
    pub async fn checkpoint_container(
        &self,
        id: &str,
        location: &Path,
        timeout: Duration,
    ) -> Result<u64> {
        check_location(location)?;
        let rec = self.container(id)?;
        let _lock = self.locks.lock(rec.id.clone()).await;
        let rec = self.container(&rec.id)?;
        if rec.state != ContainerState::Running {
            return Err(
                rec.wrong_state("container", "only a running container can be checkpointed")
            );
        }
        let (handler, rt) = self.runtime(&rec.runtime_handler)?;
        let work = self.images.tmp_dir().join(format!(
            "checkpoint-{}-{}",
            &rec.id[..12],
            hex::encode(rand::random::<[u8; 6]>())
        ));
        let (deadline, timeout) = deadline_within(Instant::now(), timeout);
        let job = Job {
            metadata: Metadata::new(&rec, handler),
            rec,
            rt: rt.clone(),
            location: location.to_path_buf(),
            work,
            deadline,
            timeout,
        };
        let (cid, started) = (job.rec.id.clone(), Instant::now());
        let bytes = blocking(move || job.run()).await?;
        tracing::info!(container = %cid, location = %location.display(), bytes, ms = started.elapsed().as_millis() as u64, "container checkpointed");
        Ok(bytes)
    }
}

/// The deadline `timeout` after `now`, the timeout clamped to [`MAX_CHECKPOINT_TIMEOUT`] (and,
/// should even that not fit the clock, to what does): never an overflow panic.
fn deadline_within(now: Instant, timeout: Duration) -> (Instant, Duration) {
    let timeout = timeout.min(MAX_CHECKPOINT_TIMEOUT);
    match now.checked_add(timeout) {
        Some(deadline) => (deadline, timeout),
        None => (now, Duration::ZERO),
    }
}

/// The location must be an absolute path naming a file.
fn check_location(location: &Path) -> Result<()> {
    if location.as_os_str().is_empty() {
        return Err(EngineError::Invalid(
            "checkpoint location is required".into(),
        ));
    }
    if !location.is_absolute() {
        return Err(EngineError::Invalid(format!(
            "checkpoint location {location:?} must be an absolute path"
        )));
    }
    if !matches!(
        location.components().next_back(),
        Some(Component::Normal(_))
    ) {
        return Err(EngineError::Invalid(format!(
            "checkpoint location {location:?} must name a file"
        )));
    }
    Ok(())
}

/// One checkpoint, run off the async runtime.
struct Job {
    rec: ContainerRecord,
    rt: OciRuntime,
    metadata: Metadata,
    location: PathBuf,
    /// Scratch directory: CRIU images, its log, the rootfs diff, the metadata files.
    work: PathBuf,
    deadline: Instant,
    timeout: Duration,
}

impl Job {
    fn run(self) -> Result<u64> {
        self.check_location_dir()?;
        let work = WorkDir::create(&self.work)?;
        let images = work.0.join(CHECKPOINT_DIR);
        create_private_dir(&images)?;
        let spec = std::fs::read(self.rec.spec_path())
            .map_err(|e| EngineError::io("read", self.rec.spec_path(), e))?;

        // Frozen while CRIU dumps and the writable layer is read: the two then agree.
        self.rt
            .pause(&self.rec.id)
            .map_err(|e| self.runtime_error(e))?;
        let frozen = self.dump(&images).and_then(|()| {
            let dumped_at = now_nanos();
            self.rootfs_diff(&spec, &work.0.join(ROOTFS_DIFF))
                .map(|()| dumped_at)
        });
        let thawed = self.rt.resume(&self.rec.id);
        if let Err(e) = &thawed {
            tracing::error!(container = %self.rec.id, error = %e, "cannot thaw the container after its checkpoint");
        }
        let dumped_at = frozen?;
        thawed.map_err(|e| self.runtime_error(e))?;

        self.metadata.write(&work.0, &spec, dumped_at)?;
        let mut parts = vec![
            archive::Part::new(&images, CHECKPOINT_DIR),
            archive::Part::new(&work.0.join(CONFIG_DUMP), CONFIG_DUMP),
            archive::Part::new(&work.0.join(SPEC_DUMP), SPEC_DUMP),
            archive::Part::new(&work.0.join(STATUS_DUMP), STATUS_DUMP),
            archive::Part::new(&work.0.join(CONTAINERD_STATUS), CONTAINERD_STATUS),
            archive::Part::new(&work.0.join(ROOTFS_DIFF), ROOTFS_DIFF),
        ];
        for name in [DUMP_LOG, STATS_DUMP] {
            let p = work.0.join(name);
            if p.is_file() {
                parts.push(archive::Part::new(&p, name));
            }
        }
        if let Some(log) = &self.rec.log_path
            && log.is_file()
        {
            parts.push(archive::Part::new(log, CONTAINER_LOG));
        }
        archive::write_archive(&self.location, &parts, self.deadline)
            .map_err(|e| e.into_engine(&self.location, self.timeout))
    }

    /// The directory of the location must exist, and the location must not be a directory.
    fn check_location_dir(&self) -> Result<()> {
        let loc = &self.location;
        let parent = loc.parent().unwrap_or(Path::new("/"));
        if !parent.is_dir() {
            return Err(EngineError::Invalid(format!(
                "checkpoint location {loc:?}: directory {parent:?} does not exist"
            )));
        }
        if loc.is_dir() {
            return Err(EngineError::Invalid(format!(
                "checkpoint location {loc:?} is a directory"
            )));
        }
        Ok(())
    }

    /// `<runtime> checkpoint --leave-running` into `images`, within what is left of the time.
    fn dump(&self, images: &Path) -> Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        let opts = CheckpointOpts {
            image_path: images.to_path_buf(),
            work_path: self.work.clone(),
            leave_running: true,
            timeout: Some(left),
            ..Default::default()
        };
        self.rt
            .checkpoint(&self.rec.id, &opts)
            .map_err(|e| self.runtime_error(e))
    }

    /// `rootfs-diff.tar` from the writable layer, leaving out mount points (their content
    /// lives elsewhere).
    fn rootfs_diff(&self, spec: &[u8], out: &Path) -> Result<()> {
        let skip = mount_destinations(spec);
        archive::write_rootfs_diff(&self.rec.rw_dir.join("upper"), &skip, out, self.deadline)
            .map_err(|e| e.into_engine(out, self.timeout))
    }

    /// Runtime errors in the engine's terms: a container that exited meanwhile is in the wrong
    /// state, a runtime timeout is the checkpoint's.
    fn runtime_error(&self, e: OciError) -> EngineError {
        match e {
            OciError::NotRunning { .. } | OciError::NotFound { .. } => EngineError::WrongState {
                what: "container",
                id: self.rec.id.clone(),
                state: "EXITED".into(),
                message: "only a running container can be checkpointed".into(),
            },
            OciError::Timeout { .. } => self.timed_out(),
            other => other.into(),
        }
    }

    fn timed_out(&self) -> EngineError {
        EngineError::Timeout {
            what: format!("checkpoint of container {}", self.rec.id),
            secs: self.timeout.as_secs(),
        }
    }
}

/// Destinations of the spec's mounts, relative to the rootfs (`etc/hosts`, `dev/shm`, …).
fn mount_destinations(spec: &[u8]) -> Vec<PathBuf> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(spec) else {
        return vec![];
    };
    let mounts = v["mounts"].as_array().cloned().unwrap_or_default();
    mounts
        .iter()
        .filter_map(|m| m["destination"].as_str())
        .map(|d| {
            Path::new(d)
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n),
                    _ => None,
                })
                .collect::<PathBuf>()
        })
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

/// The scratch directory, removed with everything in it when dropped (on every path).
struct WorkDir(PathBuf);

impl WorkDir {
    fn create(path: &Path) -> Result<WorkDir> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| EngineError::io("create", parent, e))?;
        }
        create_private_dir(path)?;
        Ok(WorkDir(path.to_path_buf()))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove checkpoint work dir");
        }
    }
}

fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| EngineError::io("create", path, e))
}

/// What the metadata files say about the container.
#[derive(Debug, Clone)]
struct Metadata {
    config: ConfigDump,
    status: StatusDump,
    containerd: ContainerdStatus,
}

impl Metadata {
    fn new(rec: &ContainerRecord, handler: &str) -> Metadata {
        let image_name = husk_image::reference::Reference::parse(&rec.config.image)
            .ok()
            .and_then(|r| r.tagged())
            .unwrap_or_else(|| rec.config.image.clone());
        Metadata {
            config: ConfigDump {
                id: rec.id.clone(),
                name: rec.registrar_name.clone(),
                rootfs_image: rec.config.image.clone(),
                rootfs_image_ref: rec.image_ref.clone(),
                rootfs_image_name: image_name,
                runtime: handler.to_string(),
                created_time: rfc3339(rec.created_at),
                checkpointed_time: String::new(), // set when written
                restored_time: GO_ZERO_TIME.into(),
                restored: false,
            },
            status: StatusDump {
                id: rec.id.clone(),
                metadata: StatusMetadata {
                    name: rec.config.name.clone(),
                    attempt: rec.config.attempt,
                },
                state: CRI_CONTAINER_RUNNING,
                created_at: rec.created_at,
                started_at: rec.started_at,
                image: StatusImage {
                    image: rec.config.image.clone(),
                },
                image_ref: rec.image_ref.clone(),
                image_id: rec.image_id.to_string(),
                labels: rec.config.labels.clone(),
                annotations: rec.config.annotations.clone(),
                log_path: rec
                    .log_path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            },
            containerd: ContainerdStatus {
                created_at: rec.created_at,
                started_at: rec.started_at,
                finished_at: 0,
                exit_code: 0,
                pid: rec.pid.max(0) as u32,
                reason: String::new(),
                message: String::new(),
            },
        }
    }

    /// `config.dump`, `spec.dump`, `status.dump` and `status` into `dir`.
    fn write(&self, dir: &Path, spec: &[u8], checkpointed_at: i64) -> Result<()> {
        let config = ConfigDump {
            checkpointed_time: rfc3339(checkpointed_at),
            ..self.config.clone()
        };
        for (name, data) in [
            (CONFIG_DUMP, to_json(&config)?),
            (SPEC_DUMP, spec.to_vec()),
            (STATUS_DUMP, to_json(&self.status)?),
            (CONTAINERD_STATUS, to_json(&self.containerd)?),
        ] {
            let path = dir.join(name);
            write_private(&path, &data).map_err(|e| EngineError::io("write", &path, e))?;
        }
        Ok(())
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| EngineError::Task(format!("encode metadata: {e}")))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Go's zero `time.Time` as it marshals (a time that never happened: not restored).
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Unix nanoseconds as RFC 3339 with nanoseconds, as Go's `time.Time` marshals.
fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The CRI's `CONTAINER_RUNNING`.
const CRI_CONTAINER_RUNNING: i32 = 1;

/// `config.dump`: checkpointctl's `ContainerConfig` (field names as it reads them).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigDump {
    id: String,
    name: String,
    rootfs_image: String,
    rootfs_image_ref: String,
    rootfs_image_name: String,
    runtime: String,
    created_time: String,
    checkpointed_time: String,
    restored_time: String,
    restored: bool,
}

/// `status.dump`: the CRI `ContainerStatus` as Go's `encoding/json` writes the CRI types
/// (proto field names, zero values left out).
#[derive(Debug, Clone, Serialize)]
struct StatusDump {
    id: String,
    metadata: StatusMetadata,
    state: i32,
    created_at: i64,
    started_at: i64,
    image: StatusImage,
    image_ref: String,
    image_id: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    log_path: String,
}

#[derive(Debug, Clone, Serialize)]
struct StatusMetadata {
    name: String,
    #[serde(skip_serializing_if = "is_zero")]
    attempt: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize)]
struct StatusImage {
    image: String,
}

/// `status`: containerd's own status record, which checkpointctl reads from containerd
/// archives (Go field names).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerdStatus {
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    pid: u32,
    reason: String,
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_must_be_absolute_file_paths() {
        assert!(check_location(Path::new("/var/lib/kubelet/checkpoints/c.tar")).is_ok());
        for bad in ["", "c.tar", "./c.tar", "/", "/tmp/.."] {
            let e = check_location(Path::new(bad)).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{bad:?}: {e}");
        }
    }

    #[test]
    fn huge_timeouts_are_clamped_not_overflowed() {
        let now = Instant::now();
        for huge in [Duration::from_secs(i64::MAX as u64), Duration::MAX] {
            let (deadline, timeout) = deadline_within(now, huge);
            assert_eq!(timeout, MAX_CHECKPOINT_TIMEOUT);
            assert_eq!(deadline, now + MAX_CHECKPOINT_TIMEOUT);
        }
        let (deadline, timeout) = deadline_within(now, Duration::from_secs(7));
        assert_eq!(
            (deadline, timeout),
            (now + Duration::from_secs(7), Duration::from_secs(7))
        );
    }

    #[test]
    fn mount_points_are_relative_to_the_rootfs() {
        let spec = br#"{"mounts": [
            {"destination": "/proc", "type": "proc"},
            {"destination": "/etc/hosts", "type": "bind"},
            {"destination": "/dev/shm/", "type": "bind"},
            {"destination": "/", "type": "bind"}
        ]}"#;
        assert_eq!(
            mount_destinations(spec),
            [
                PathBuf::from("proc"),
                PathBuf::from("etc/hosts"),
                PathBuf::from("dev/shm")
            ]
        );
        assert!(mount_destinations(b"not json").is_empty());
    }

    #[test]
    fn times_marshal_like_go() {
        assert_eq!(
            rfc3339(1_500_000_000_000_000_001),
            "2017-07-14T02:40:00.000000001Z"
        );
    }

    #[test]
    fn metadata_uses_the_names_checkpointctl_reads() {
        let m = ConfigDump {
            id: "c".into(),
            name: "n".into(),
            rootfs_image: "busybox".into(),
            rootfs_image_ref: "docker.io/library/busybox@sha256:00".into(),
            rootfs_image_name: "docker.io/library/busybox:latest".into(),
            runtime: "runc".into(),
            created_time: rfc3339(0),
            checkpointed_time: rfc3339(0),
            restored_time: GO_ZERO_TIME.into(),
            restored: false,
        };
        let v = serde_json::to_value(&m).unwrap();
        for key in [
            "id",
            "name",
            "rootfsImage",
            "rootfsImageRef",
            "rootfsImageName",
            "runtime",
            "createdTime",
            "checkpointedTime",
            "restoredTime",
            "restored",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        let s = ContainerdStatus {
            created_at: 1,
            started_at: 2,
            finished_at: 0,
            exit_code: 0,
            pid: 7,
            reason: String::new(),
            message: String::new(),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["CreatedAt"], 1);
        assert_eq!(v["Pid"], 7);
    }
}
