//! The monitor's steady state: one `poll` over the container's output, its stdin, the pidfd,
//! SIGCHLD and the control connections; CRI log writing, reaping, and the orderly end.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use husk_monitor::MonitorConfig;
use husk_monitor::cri_log::{CriLogWriter, Stream, timestamp_now};
use husk_monitor::protocol::{ExitRecord, frame};
use husk_sys::signalfd::SignalFd;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{Pid, WaitOptions};

use super::clients::{Client, Mode};
use super::oom::oom_killed;
use super::queue::ByteQueue;
use super::start::{Started, open_log};

/// Most control connections served at once; more are closed on accept.
pub const MAX_CLIENTS: usize = 32;
const MAX_FDS: usize = 6 + MAX_CLIENTS;
/// How long output is still collected after the container exited (a background process may
/// hold the pipes open).
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);
/// How long waiters and attach clients get to take the final replies.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);
/// One read from the container's output.
pub const READ_BUF: usize = 16 * 1024;
/// Stdin bytes accepted from clients but not yet taken by the container.
const STDIN_BUF: usize = 16 * 1024;

#[derive(Debug, Clone, Copy)]
enum Token {
    Listener,
    Output(usize),
    Stdin,
    Pidfd,
    Sigchld,
    Client(usize),
}

/// Everything the running monitor holds.
pub struct Monitor {
    pub(super) cfg: MonitorConfig,
    pub(super) listener: UnixListener,
    /// stdout, stderr read ends (or the pty master in slot 0).
    outputs: [Option<OwnedFd>; 2],
    stdin_pipe: Option<OwnedFd>,
    pub(super) pty: Option<OwnedFd>,
    pub(super) stdin_open: bool,
    stdin_close_pending: bool,
    pub(super) stdin_once_done: bool,
    pub(super) stdin_buf: ByteQueue,
    log: Option<File>,
    writer: CriLogWriter,
    log_failed: bool,
    pub(super) clients: Vec<Client>,
    pub(super) read_buf: Vec<u8>,
    pub(super) pid: Pid,
    pidfd: Option<OwnedFd>,
    sigchld: SignalFd,
    pub(super) exit: Option<ExitRecord>,
    drain_deadline: Option<Instant>,
}

impl Monitor {
    /// Takes over what [`super::start::start`] set up.
    pub fn new(cfg: MonitorConfig, s: Started) -> Self {
        let stdin_open = cfg.stdin && (s.stdin.is_some() || s.pty.is_some());
        Self {
            cfg,
            listener: s.listener,
            outputs: [s.stdout, s.stderr],
            stdin_pipe: s.stdin,
            pty: s.pty,
            stdin_open,
            stdin_close_pending: false,
            stdin_once_done: false,
            stdin_buf: ByteQueue::with_limit(STDIN_BUF),
            log: s.log,
            writer: CriLogWriter::new(),
            log_failed: false,
            clients: Vec::with_capacity(MAX_CLIENTS),
            read_buf: Vec::with_capacity(READ_BUF),
            pid: s.pid,
            pidfd: Some(s.pidfd),
            sigchld: s.sigchld,
            exit: None,
            drain_deadline: None,
        }
    }

    /// Runs until the container has exited and everything is written, then returns.
    pub fn run(mut self) {
        // A SIGCHLD may have come before the signalfd existed.
        self.reap();
        loop {
            if let Some(deadline) = self.drain_deadline
                && (self.outputs.iter().all(Option::is_none) || Instant::now() >= deadline)
            {
                break;
            }
            let timeout = self
                .drain_deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            let mut tokens = [Token::Listener; MAX_FDS];
            let mut revents = [PollFlags::empty(); MAX_FDS];
            let n = match self.poll(&mut tokens, &mut revents, timeout) {
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    eprintln!("husk-monitor: poll: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            for i in 0..n {
                if !revents[i].is_empty() {
                    self.dispatch(tokens[i], revents[i]);
                }
            }
            self.after_batch();
        }
        self.finish();
    }

    fn poll(
        &self,
        tokens: &mut [Token; MAX_FDS],
        revents: &mut [PollFlags; MAX_FDS],
        timeout: Option<Duration>,
    ) -> rustix::io::Result<usize> {
        let dummy = self.listener.as_fd();
        let mut fds: [PollFd<'_>; MAX_FDS] =
            std::array::from_fn(|_| PollFd::from_borrowed_fd(dummy, PollFlags::empty()));
        let mut n = 0;
        macro_rules! add {
            ($fd:expr, $events:expr, $token:expr) => {{
                fds[n] = PollFd::from_borrowed_fd($fd, $events);
                tokens[n] = $token;
                n += 1;
            }};
        }
        add!(self.listener.as_fd(), PollFlags::IN, Token::Listener);
        for (i, out) in self.outputs.iter().enumerate() {
            if let Some(fd) = out {
                add!(fd.as_fd(), PollFlags::IN, Token::Output(i));
            }
        }
        if !self.stdin_buf.is_empty()
            && let Some(fd) = self.stdin_target()
        {
            add!(fd, PollFlags::OUT, Token::Stdin);
        }
        if let Some(fd) = &self.pidfd {
            add!(fd.as_fd(), PollFlags::IN, Token::Pidfd);
        }
        add!(self.sigchld.as_fd(), PollFlags::IN, Token::Sigchld);
        for (i, c) in self.clients.iter().enumerate() {
            let room = self.stdin_room(c);
            add!(c.stream.as_fd(), c.interest(room), Token::Client(i));
        }
        let ts = timeout.map(timespec);
        let ready = rustix::event::poll(&mut fds[..n], ts.as_ref())?;
        if ready > 0 {
            for (r, fd) in revents.iter_mut().zip(&fds[..n]) {
                *r = fd.revents();
            }
        }
        Ok(n)
    }

    fn dispatch(&mut self, token: Token, ev: PollFlags) {
        match token {
            Token::Listener => self.accept(),
            Token::Output(i) => self.output_ready(i),
            Token::Stdin => {
                if ev.intersects(PollFlags::ERR | PollFlags::HUP) && self.pty.is_none() {
                    self.close_stdin_now();
                } else {
                    self.flush_stdin();
                }
            }
            Token::Sigchld => self.reap(),
            Token::Pidfd => {
                self.reap();
                if self.exit.is_none() {
                    self.exit_of_a_stranger();
                }
            }
            Token::Client(i) => self.client_event(i, ev),
        }
    }

    fn after_batch(&mut self) {
        if let Some(log) = self.log.as_mut() {
            let r = self.writer.flush(log);
            self.note_log_result(r);
        }
        if self.stdin_close_pending && self.stdin_buf.is_empty() {
            self.close_stdin_now();
        }
        self.sweep_clients();
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS || stream.set_nonblocking(true).is_err() {
                        continue; // dropped: closed
                    }
                    self.clients.push(Client::new(stream));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn output_ready(&mut self, i: usize) {
        let stream = if i == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        let Some(fd) = &self.outputs[i] else { return };
        let mut buf = std::mem::take(&mut self.read_buf);
        // Read into spare capacity: pages are touched only as far as output ever reached.
        match rustix::io::read(fd, buf.spare_capacity_mut()) {
            Ok(([], _)) => self.output_eof(i),
            Ok((data, _)) => {
                if let Some(log) = self.log.as_mut() {
                    let r = self.writer.push(stream, &timestamp_now(), data, log);
                    self.note_log_result(r);
                }
                self.fanout(stream, data);
            }
            Err(Errno::AGAIN | Errno::INTR) => {}
            // EIO: the pty's last slave closed.
            Err(_) => self.output_eof(i),
        }
        self.read_buf = buf;
    }

    /// A failing log (full disk) never stops the container: say so once, drop the records.
    fn note_log_result(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r
            && !self.log_failed
        {
            eprintln!("husk-monitor: writing {:?}: {e}", self.cfg.log_path);
            self.log_failed = true;
        }
    }

    fn output_eof(&mut self, i: usize) {
        let stream = if i == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        self.outputs[i] = None;
        if let Some(log) = self.log.as_mut() {
            let _ = self.writer.finish(stream, &timestamp_now(), log);
        }
    }

    /// Sends output to every attached client that asked for it; a client whose queue is full
    /// is dropped, never waited for.
    fn fanout(&mut self, stream: Stream, data: &[u8]) {
        let kind = match stream {
            Stream::Stdout => frame::STDOUT,
            Stream::Stderr => frame::STDERR,
        };
        let header = frame::header(kind, data.len() as u32);
        for c in self.clients.iter_mut().filter(|c| !c.dead) {
            let Mode::Attached(a) = &c.mode else { continue };
            let wanted = match stream {
                Stream::Stdout => a.stdout,
                Stream::Stderr => a.stderr,
            };
            if wanted && (!c.out.push(&[&header, data]) || c.flush().is_err()) {
                c.dead = true;
            }
        }
    }

    pub(super) fn stdin_target(&self) -> Option<BorrowedFd<'_>> {
        if !self.stdin_open {
            return None;
        }
        match &self.pty {
            Some(pty) => Some(pty.as_fd()),
            None => self.stdin_pipe.as_ref().map(|f| f.as_fd()),
        }
    }

    pub(super) fn flush_stdin(&mut self) {
        let fd = match (self.stdin_open, &self.pty, &self.stdin_pipe) {
            (true, Some(pty), _) => pty.as_fd(),
            (true, None, Some(pipe)) => pipe.as_fd(),
            _ => {
                self.stdin_buf.clear();
                return;
            }
        };
        let r = self.stdin_buf.write_with(|d| rustix::io::write(fd, d));
        if r.is_err() {
            self.close_stdin_now();
        }
    }

    /// Closes the container's stdin once what clients sent has been written.
    pub(super) fn request_stdin_close(&mut self) {
        if !self.stdin_open || self.stdin_close_pending {
            return;
        }
        self.stdin_close_pending = true;
        if self.pty.is_some() {
            // A terminal has no separate stdin to close: send the EOF character (^D).
            self.stdin_buf.push(&[b"\x04"]);
        }
        self.flush_stdin();
    }

    fn close_stdin_now(&mut self) {
        self.stdin_open = false;
        self.stdin_close_pending = false;
        self.stdin_pipe = None;
        self.stdin_buf.clear();
    }

    /// Collects every exited child; the container's status becomes the exit record.
    fn reap(&mut self) {
        let _ = self.sigchld.drain();
        loop {
            // `wait`, not `waitpid(None)`: that one means "my process group" (wait4(0)).
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) if pid == self.pid => {
                    let (code, signal) = match status.terminating_signal() {
                        Some(sig) => (128 + sig, Some(sig)),
                        None => (status.exit_status().unwrap_or(0), None),
                    };
                    self.record_exit(code, signal);
                }
                Ok(Some(_)) => {}
                Err(Errno::INTR) => {}
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// The pidfd says the container is gone but it is not our child (it should have been
    /// reparented to us, the subreaper): its status is lost; record that instead of spinning.
    fn exit_of_a_stranger(&mut self) {
        if let Err(Errno::CHILD) = rustix::process::waitpid(Some(self.pid), WaitOptions::NOHANG) {
            eprintln!(
                "husk-monitor: pid {} exited but is not our child",
                self.pid.as_raw_pid()
            );
            self.record_exit(255, None);
        }
    }

    fn record_exit(&mut self, exit_code: i32, signal: Option<i32>) {
        let finished_at = String::from_utf8_lossy(&timestamp_now()).into_owned();
        self.exit = Some(ExitRecord {
            pid: self.pid.as_raw_pid(),
            exit_code,
            signal,
            oom_killed: oom_killed(&self.cfg.cgroup_oom_paths),
            finished_at,
        });
        self.pidfd = None;
        self.drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
        self.close_stdin_now();
    }

    /// `reopen_log`: complete records go to the old file, later ones to a new file at the path.
    pub(super) fn reopen_log(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.cfg.log_path else {
            return Ok(());
        };
        if let Some(old) = self.log.as_mut() {
            let _ = self.writer.flush(old);
        }
        self.log = Some(open_log(path)?);
        self.log_failed = false;
        Ok(())
    }

    /// The container is gone and its output drained: write the rest of the log and the exit
    /// file, answer waiters and attach clients, remove the socket.
    fn finish(mut self) {
        let ts = timestamp_now();
        if let Some(log) = self.log.as_mut() {
            let _ = self.writer.finish(Stream::Stdout, &ts, log);
            let _ = self.writer.finish(Stream::Stderr, &ts, log);
            let _ = self.writer.flush(log);
        }
        self.log = None;
        let Some(exit) = self.exit.clone() else {
            return;
        };
        match serde_json::to_vec(&exit) {
            Ok(json) => {
                if let Err(e) = husk_sys::fs::atomic_write(&self.cfg.exit_file, &json) {
                    eprintln!("husk-monitor: writing {:?}: {e}", self.cfg.exit_file);
                }
                self.goodbye(&json);
            }
            Err(e) => eprintln!("husk-monitor: encoding the exit record: {e}"),
        }
        let _ = std::fs::remove_file(&self.cfg.socket);
    }

    fn goodbye(&mut self, exit_json: &[u8]) {
        for c in self.clients.iter_mut().filter(|c| !c.dead) {
            match &c.mode {
                Mode::Waiting => {
                    c.out.push_unbounded(exit_json);
                    c.out.push_unbounded(b"\n");
                }
                Mode::Attached(_) => {
                    let header = frame::header(frame::EXIT, exit_json.len() as u32);
                    c.out
                        .grow_limit(c.out.len() + header.len() + exit_json.len());
                    c.out.push(&[&header, exit_json]);
                }
                Mode::Request => {}
            }
        }
        let deadline = Instant::now() + GOODBYE_TIMEOUT;
        loop {
            for c in self.clients.iter_mut() {
                if c.dead || c.flush().is_err() {
                    c.dead = true;
                    c.out.clear();
                }
            }
            let now = Instant::now();
            if now >= deadline || self.clients.iter().all(|c| c.out.is_empty()) {
                return;
            }
            let left = deadline - now;
            let pending: Vec<&Client> = self.clients.iter().filter(|c| !c.out.is_empty()).collect();
            let mut fds: Vec<PollFd<'_>> = pending
                .iter()
                .map(|c| PollFd::new(&c.stream, PollFlags::OUT))
                .collect();
            let ts = timespec(left);
            let _ = rustix::event::poll(&mut fds, Some(&ts));
        }
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: d.subsec_nanos().into(),
    }
}
