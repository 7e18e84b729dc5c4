//! Container log files in the CRI format, read straight from disk as crictl (kubelet) does:
//! lines `<RFC3339Nano> <stdout|stderr> <P|F>[:tags] <content>`, partial (`P`) lines joined
//! to the next full (`F`) one of the same stream. Supports `--tail`, `--since`,
//! `--timestamps` and following (`-f`) across rotation (rename and recreate) and truncation.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, FixedOffset, Timelike as _, Utc};

/// Which output a line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One physical line of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine<'a> {
    pub timestamp: DateTime<FixedOffset>,
    pub stream: Stream,
    /// `P`: the message continues on the next line of the same stream.
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one line (without its `\n`).
pub fn parse_line(line: &[u8]) -> Result<LogLine<'_>, String> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let timestamp = fields.next().unwrap_or_default();
    let timestamp = std::str::from_utf8(timestamp)
        .ok()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or("no valid timestamp")?;
    let stream = match fields.next() {
        Some(b"stdout") => Stream::Stdout,
        Some(b"stderr") => Stream::Stderr,
        _ => return Err("no stream (stdout or stderr)".into()),
    };
    let tag = fields.next().ok_or("no tag (F or P)")?;
    // Tags are `:`-separated; the first says partial or full (kept forward compatible).
    let partial = tag.split(|b| *b == b':').next() == Some(b"P");
    Ok(LogLine {
        timestamp,
        stream,
        partial,
        content: fields.next().unwrap_or_default(),
    })
}

/// A whole message: a full line, with the partial lines before it joined on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The first piece's time.
    pub timestamp: DateTime<FixedOffset>,
    pub stream: Stream,
    pub content: Vec<u8>,
    /// False for trailing partial lines never completed (printed without a newline).
    pub complete: bool,
}

impl Message {
    /// The bytes printed for the message: `[<timestamp> ]<content>\n`.
    pub fn render(&self, timestamps: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content.len() + 40);
        if timestamps {
            out.extend_from_slice(rfc3339_nano(&self.timestamp).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.content);
        if self.complete {
            out.push(b'\n');
        }
        out
    }
}

/// Go's `time.RFC3339Nano`: trailing zeros of the fraction dropped, `Z` for UTC.
pub fn rfc3339_nano(t: &DateTime<FixedOffset>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let frac = format!(".{nanos:09}");
        s.push_str(frac.trim_end_matches('0'));
    }
    if t.offset().local_minus_utc() == 0 {
        s.push('Z');
    } else {
        s.push_str(&t.format("%:z").to_string());
    }
    s
}

/// Joins partial lines into messages, per stream.
#[derive(Debug, Default)]
pub struct Joiner {
    pending: [Option<Message>; 2],
}

impl Joiner {
    /// Adds a line; returns the message it completes.
    pub fn push(&mut self, line: LogLine<'_>) -> Option<Message> {
        let slot = &mut self.pending[line.stream as usize];
        match slot {
            Some(m) => m.content.extend_from_slice(line.content),
            None => {
                *slot = Some(Message {
                    timestamp: line.timestamp,
                    stream: line.stream,
                    content: line.content.to_vec(),
                    complete: false,
                })
            }
        }
        if line.partial {
            return None;
        }
        let mut message = slot.take()?;
        message.complete = true;
        Some(message)
    }

    /// The messages left incomplete, oldest first.
    pub fn drain(&mut self) -> Vec<Message> {
        let mut left: Vec<Message> = self.pending.iter_mut().filter_map(Option::take).collect();
        left.sort_by_key(|m| m.timestamp);
        left
    }
}

/// What to print and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only the last N messages (of those since `since`).
    pub tail: Option<usize>,
    /// Only messages at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Prefix each message with its time.
    pub timestamps: bool,
    /// Keep printing what is appended while the container runs.
    pub follow: bool,
    /// How often to look for more when following.
    pub poll: Duration,
    /// How often to ask whether the container still runs when the file is idle.
    pub liveness_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tail: None,
            since: None,
            timestamps: false,
            follow: false,
            poll: Duration::from_millis(100),
            liveness_every: Duration::from_secs(1),
        }
    }
}

/// Where messages go.
pub trait Sink {
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

/// Whether the container may still write to its log (asked while following an idle file).
pub trait Liveness {
    fn running(&mut self) -> impl Future<Output = anyhow::Result<bool>>;
}

/// What reading found besides messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines not in the CRI format, skipped (as kubelet does).
    pub malformed: usize,
}

/// Prints the log at `path` to `sink` per `opts`; when following, returns once `live` says the
/// container stopped and the file (and any file rotated in after it) is drained.
pub async fn read_log(
    path: &Path,
    opts: &Options,
    sink: &mut impl Sink,
    live: &mut impl Liveness,
) -> anyhow::Result<Stats> {
    let mut reader = Reader::open(path, opts.since)?;
    let ts = opts.timestamps;

    match opts.tail {
        Some(n) => {
            let mut last = VecDeque::with_capacity(n.min(4096) + 1);
            let mut keep = |m: Message| -> io::Result<()> {
                last.push_back(m);
                if last.len() > n {
                    last.pop_front();
                }
                Ok(())
            };
            reader.read_available(&mut keep)?;
            if !opts.follow {
                reader.finish(&mut keep)?;
            }
            for m in last {
                put(sink, &m, ts)?;
            }
        }
        None => {
            reader.read_available(&mut |m| put(sink, &m, ts))?;
            if !opts.follow {
                reader.finish(&mut |m| put(sink, &m, ts))?;
            }
        }
    }
    sink.flush()?;
    if !opts.follow {
        return Ok(reader.stats);
    }

    let mut checked: Option<Instant> = None;
    loop {
        if reader.read_available(&mut |m| put(sink, &m, ts))? {
            sink.flush()?;
            tokio::time::sleep(opts.poll).await;
            continue;
        }
        if reader.follow_rotation(path, &mut |m| put(sink, &m, ts))? {
            sink.flush()?;
            continue;
        }
        reader.check_truncation()?;
        if checked.is_none_or(|at| at.elapsed() >= opts.liveness_every) {
            checked = Some(Instant::now());
            if !live.running().await? {
                // Drain what was written before it stopped, in this file and any newer one.
                reader.read_available(&mut |m| put(sink, &m, ts))?;
                reader.follow_rotation(path, &mut |m| put(sink, &m, ts))?;
                reader.finish(&mut |m| put(sink, &m, ts))?;
                sink.flush()?;
                return Ok(reader.stats);
            }
        }
        tokio::time::sleep(opts.poll).await;
    }
}

fn put(sink: &mut impl Sink, m: &Message, timestamps: bool) -> io::Result<()> {
    sink.write(m.stream, &m.render(timestamps))
}

type Emit<'a> = dyn FnMut(Message) -> io::Result<()> + 'a;

/// An open log file: where reading got to and the unfinished line.
struct Reader {
    file: File,
    /// (device, inode): to notice the path pointing to a new file.
    identity: (u64, u64),
    position: u64,
    /// The bytes after the last `\n` read so far.
    fragment: Vec<u8>,
    joiner: Joiner,
    since: Option<DateTime<Utc>>,
    stats: Stats,
}

impl Reader {
    fn open(path: &Path, since: Option<DateTime<Utc>>) -> anyhow::Result<Reader> {
        let file = File::open(path)
            .with_context(|| format!("cannot open the log file {}", path.display()))?;
        let meta = file.metadata()?;
        Ok(Reader {
            file,
            identity: (meta.dev(), meta.ino()),
            position: 0,
            fragment: Vec::new(),
            joiner: Joiner::default(),
            since,
            stats: Stats::default(),
        })
    }

    /// Reads to the end of the file, handing over each completed message. Returns whether
    /// anything was read.
    fn read_available(&mut self, emit: &mut Emit<'_>) -> io::Result<bool> {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut any = false;
        loop {
            let n = self.file.read(&mut chunk)?;
            if n == 0 {
                return Ok(any);
            }
            any = true;
            self.position += n as u64;
            let mut data = &chunk[..n];
            while let Some(i) = data.iter().position(|b| *b == b'\n') {
                let line = if self.fragment.is_empty() {
                    self.line(&data[..i])
                } else {
                    self.fragment.extend_from_slice(&data[..i]);
                    let whole = std::mem::take(&mut self.fragment);
                    self.line(&whole)
                };
                if let Some(m) = line {
                    emit(m)?;
                }
                data = &data[i + 1..];
            }
            self.fragment.extend_from_slice(data);
        }
    }

    /// One line: the message it completes, if any, and if not before `since`.
    fn line(&mut self, bytes: &[u8]) -> Option<Message> {
        match parse_line(bytes) {
            Ok(line) => self.joiner.push(line).filter(|m| self.wanted(m)),
            Err(_) => {
                self.stats.malformed += 1;
                None
            }
        }
    }

    fn wanted(&self, m: &Message) -> bool {
        self.since.is_none_or(|since| m.timestamp >= since)
    }

    /// The end: the unfinished line counts as a line, incomplete messages are handed over.
    fn finish(&mut self, emit: &mut Emit<'_>) -> io::Result<()> {
        self.end_fragment(emit)?;
        for m in self.joiner.drain() {
            if self.wanted(&m) {
                emit(m)?;
            }
        }
        Ok(())
    }

    fn end_fragment(&mut self, emit: &mut Emit<'_>) -> io::Result<()> {
        if self.fragment.is_empty() {
            return Ok(());
        }
        let whole = std::mem::take(&mut self.fragment);
        match self.line(&whole) {
            Some(m) => emit(m),
            None => Ok(()),
        }
    }

    /// If `path` now names another file (the old one was rotated away), drains the old file
    /// and continues from the start of the new one. Returns whether it switched.
    fn follow_rotation(&mut self, path: &Path, emit: &mut Emit<'_>) -> io::Result<bool> {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            // Renamed away and not recreated yet: keep reading the old file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if (meta.dev(), meta.ino()) == self.identity {
            return Ok(false);
        }
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        self.read_available(emit)?;
        self.end_fragment(emit)?;
        let meta = file.metadata()?;
        self.file = file;
        self.identity = (meta.dev(), meta.ino());
        self.position = 0;
        self.read_available(emit)?;
        Ok(true)
    }

    /// A file cut short in place (copytruncate) is read again from its start.
    fn check_truncation(&mut self) -> io::Result<()> {
        if self.file.metadata()?.len() < self.position {
            self.file.seek(SeekFrom::Start(0))?;
            self.position = 0;
            self.fragment.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Collects what each stream got, and everything in order.
    #[derive(Default)]
    struct Capture {
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        both: Vec<u8>,
    }

    impl Sink for Capture {
        fn write(&mut self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
            match stream {
                Stream::Stdout => self.stdout.extend_from_slice(bytes),
                Stream::Stderr => self.stderr.extend_from_slice(bytes),
            }
            self.both.extend_from_slice(bytes);
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn out(&self) -> String {
            String::from_utf8_lossy(&self.stdout).into_owned()
        }
        fn err(&self) -> String {
            String::from_utf8_lossy(&self.stderr).into_owned()
        }
        fn all(&self) -> String {
            String::from_utf8_lossy(&self.both).into_owned()
        }
    }

    /// Runs until the flag is cleared.
    #[derive(Clone, Default)]
    struct Flag(Arc<AtomicBool>);

    impl Liveness for Flag {
        async fn running(&mut self) -> anyhow::Result<bool> {
            Ok(self.0.load(Ordering::SeqCst))
        }
    }

    const LOG: &str = "\
2024-01-02T03:04:05.100000000Z stdout F first line
2024-01-02T03:04:06.000000000Z stderr F oops
2024-01-02T03:04:07.123456789Z stdout P par
2024-01-02T03:04:07.200000000Z stderr P err-
2024-01-02T03:04:07.300000000Z stdout F tial
2024-01-02T03:04:07.400000000Z stderr F joined
this line is not in the CRI format
2024-01-02T03:04:08Z stdout F:extra  two  spaces
2024-01-02T03:04:09+02:00 stdout F
";

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    async fn read(text: &str, opts: Options) -> (Capture, Stats) {
        let f = file_with(text);
        let mut sink = Capture::default();
        let stats = read_log(f.path(), &opts, &mut sink, &mut Flag::default())
            .await
            .expect("reads");
        (sink, stats)
    }

    #[test]
    fn lines_parse() {
        let line = parse_line(b"2016-10-06T00:17:09.669794202Z stdout P  a b ").expect("parses");
        assert_eq!(line.stream, Stream::Stdout);
        assert!(line.partial);
        assert_eq!(line.content, b" a b ");
        assert_eq!(
            rfc3339_nano(&line.timestamp),
            "2016-10-06T00:17:09.669794202Z"
        );
        let full = parse_line(b"2016-10-06T00:17:09Z stderr F").expect("parses");
        assert_eq!(
            (full.stream, full.partial, full.content),
            (Stream::Stderr, false, &b""[..])
        );
        assert!(parse_line(b"garbage stdout F x").is_err());
        assert!(parse_line(b"2016-10-06T00:17:09Z stdin F x").is_err());
        assert!(parse_line(b"2016-10-06T00:17:09Z stdout").is_err());
    }

    #[test]
    fn timestamps_format_like_go() {
        let t = |s: &str| rfc3339_nano(&DateTime::parse_from_rfc3339(s).expect("time"));
        assert_eq!(
            t("2024-01-02T03:04:05.100000000Z"),
            "2024-01-02T03:04:05.1Z"
        );
        assert_eq!(t("2024-01-02T03:04:05Z"), "2024-01-02T03:04:05Z");
        assert_eq!(
            t("2024-01-02T03:04:05.5+02:00"),
            "2024-01-02T03:04:05.5+02:00"
        );
    }

    #[tokio::test]
    async fn streams_and_partials() {
        let (sink, stats) = read(LOG, Options::default()).await;
        assert_eq!(sink.out(), "first line\npartial\n two  spaces\n\n");
        assert_eq!(sink.err(), "oops\nerr-joined\n");
        assert_eq!(
            sink.all(),
            "first line\noops\npartial\nerr-joined\n two  spaces\n\n"
        );
        assert_eq!(stats.malformed, 1);
    }

    #[tokio::test]
    async fn timestamps_tail_and_since() {
        let opts = Options {
            timestamps: true,
            tail: Some(3),
            ..Options::default()
        };
        let (sink, _) = read(LOG, opts).await;
        assert_eq!(
            sink.all(),
            "2024-01-02T03:04:07.2Z err-joined\n\
             2024-01-02T03:04:08Z  two  spaces\n\
             2024-01-02T03:04:09+02:00 \n"
        );
        // A joined message carries its first piece's time.
        let opts = Options {
            timestamps: true,
            tail: Some(4),
            ..Options::default()
        };
        let (sink, _) = read(LOG, opts).await;
        assert!(
            sink.all()
                .starts_with("2024-01-02T03:04:07.123456789Z partial\n"),
            "{}",
            sink.all()
        );
        let (sink, _) = read(
            LOG,
            Options {
                tail: Some(0),
                ..Options::default()
            },
        )
        .await;
        assert_eq!(sink.all(), "");
        let since = DateTime::parse_from_rfc3339("2024-01-02T03:04:06Z")
            .expect("time")
            .with_timezone(&Utc);
        let (sink, _) = read(
            LOG,
            Options {
                since: Some(since),
                tail: Some(2),
                ..Options::default()
            },
        )
        .await;
        // The +02:00 line is 01:04:09 UTC: before `since`.
        assert_eq!(sink.all(), "err-joined\n two  spaces\n");
        let (sink, _) = read(
            LOG,
            Options {
                since: Some(since),
                ..Options::default()
            },
        )
        .await;
        assert_eq!(sink.all(), "oops\npartial\nerr-joined\n two  spaces\n");
    }

    #[tokio::test]
    async fn unfinished_lines_at_the_end() {
        let text =
            "2024-01-02T03:04:05Z stdout P no newline yet\n2024-01-02T03:04:06Z stdout F cut";
        let (sink, stats) = read(text, Options::default()).await;
        assert_eq!(sink.out(), "no newline yetcut\n");
        assert_eq!(stats.malformed, 0);
        let (sink, _) = read(
            "2024-01-02T03:04:05Z stderr P dangling\n",
            Options::default(),
        )
        .await;
        assert_eq!(sink.err(), "dangling");
    }

    #[tokio::test]
    async fn follow_survives_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-01-02T03:04:05Z stdout F one\n").expect("write");
        let running = Flag(Arc::new(AtomicBool::new(true)));
        let opts = Options {
            follow: true,
            poll: Duration::from_millis(5),
            liveness_every: Duration::from_millis(5),
            ..Options::default()
        };
        let mut live = running.clone();
        let mut sink = Capture::default();
        let reading = read_log(&path, &opts, &mut sink, &mut live);
        let append = |p: &Path, text: &str| {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .expect("open");
            f.write_all(text.as_bytes()).expect("append");
        };
        let writing = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            append(
                &path,
                "2024-01-02T03:04:06Z stdout F two\n2024-01-02T03:04:07Z stdout P thr",
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
            // Rotation: the old file's last line finishes after the rename, the message spans
            // both files.
            let rotated = dir.path().join("0.log.20240102-030407");
            std::fs::rename(&path, &rotated).expect("rename");
            append(&rotated, "ee-\n");
            tokio::time::sleep(Duration::from_millis(30)).await;
            append(&path, "2024-01-02T03:04:08Z stdout F four\n");
            tokio::time::sleep(Duration::from_millis(30)).await;
            append(&path, "2024-01-02T03:04:09Z stderr F five\n");
            running.0.store(false, Ordering::SeqCst);
        };
        let (read, ()) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(reading, writing)
        })
        .await
        .expect("follow ends once the container stopped");
        read.expect("reads");
        assert_eq!(sink.all(), "one\ntwo\nthree-four\nfive\n");
    }

    #[tokio::test]
    async fn follow_rereads_truncated_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-01-02T03:04:05Z stdout F a long first line\n").expect("write");
        let running = Flag(Arc::new(AtomicBool::new(true)));
        let opts = Options {
            follow: true,
            poll: Duration::from_millis(5),
            liveness_every: Duration::from_millis(5),
            ..Options::default()
        };
        let mut live = running.clone();
        let mut sink = Capture::default();
        let reading = read_log(&path, &opts, &mut sink, &mut live);
        let writing = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            std::fs::write(&path, "").expect("truncate");
            tokio::time::sleep(Duration::from_millis(30)).await;
            std::fs::write(&path, "2024-01-02T03:04:06Z stdout F b\n").expect("write");
            tokio::time::sleep(Duration::from_millis(30)).await;
            running.0.store(false, Ordering::SeqCst);
        };
        let (read, ()) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(reading, writing)
        })
        .await
        .expect("ends");
        read.expect("reads");
        assert_eq!(sink.all(), "a long first line\nb\n");
    }
}
