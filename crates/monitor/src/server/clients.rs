//! Control connections: JSON-line requests (`status`, `wait`, `reopen_log`, `attach`), and
//! attach connections once switched to binary frames (stdin in, output and exit out).

use std::os::unix::net::UnixStream;

use husk_monitor::protocol::{Ack, Request, StatusReply};
use rustix::event::PollFlags;
use rustix::net::SendFlags;
use serde::Serialize;

use super::event_loop::{Monitor, READ_BUF};
use super::frames::{FrameEvent, FrameReader};
use super::queue::ByteQueue;

/// The longest request line accepted.
const MAX_REQUEST: usize = 4096;
/// Output frames queued for one attach client before it is dropped as too slow.
const ATTACH_QUEUE: usize = 64 * 1024;

/// What a connection is doing.
#[derive(Debug)]
pub enum Mode {
    /// Reading request lines.
    Request,
    /// Sent `wait`; answered at the exit.
    Waiting,
    /// Switched to frames.
    Attached(Attach),
}

/// An attach connection's choices and parser.
#[derive(Debug)]
pub struct Attach {
    /// Its stdin frames go to the container.
    pub stdin: bool,
    /// It gets stdout frames.
    pub stdout: bool,
    /// It gets stderr frames.
    pub stderr: bool,
    frames: FrameReader,
    read_closed: bool,
}

/// One control connection.
#[derive(Debug)]
pub struct Client {
    pub stream: UnixStream,
    pub mode: Mode,
    request: Vec<u8>,
    pub out: ByteQueue,
    /// Removed after the current poll round.
    pub dead: bool,
}

impl Client {
    /// A fresh, non-blocking connection.
    pub fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            mode: Mode::Request,
            request: Vec::with_capacity(MAX_REQUEST),
            out: ByteQueue::with_limit(512),
            dead: false,
        }
    }

    /// The poll events it needs; `stdin_room` is how much it may send us now.
    pub fn interest(&self, stdin_room: usize) -> PollFlags {
        let mut ev = PollFlags::empty();
        if !self.out.is_empty() {
            ev |= PollFlags::OUT;
        }
        match &self.mode {
            Mode::Request | Mode::Waiting => ev |= PollFlags::IN,
            Mode::Attached(a) if !a.read_closed && stdin_room > 0 => ev |= PollFlags::IN,
            Mode::Attached(_) => {}
        }
        ev
    }

    /// Sends what is queued without blocking.
    pub fn flush(&mut self) -> rustix::io::Result<()> {
        let stream = &self.stream;
        self.out
            .write_with(|d| rustix::net::send(stream, d, SendFlags::NOSIGNAL | SendFlags::DONTWAIT))
    }

    fn reply(&mut self, value: &impl Serialize) {
        match serde_json::to_vec(value) {
            Ok(mut json) => {
                json.push(b'\n');
                self.out.push_unbounded(&json);
            }
            Err(_) => self.dead = true,
        }
        if self.flush().is_err() {
            self.dead = true;
        }
    }
}

impl Monitor {
    /// How many bytes a client may send now: stdin data must fit in the stdin queue.
    pub(super) fn stdin_room(&self, c: &Client) -> usize {
        match &c.mode {
            Mode::Attached(a) if a.stdin && self.stdin_open => self.stdin_buf.free().min(READ_BUF),
            _ => READ_BUF,
        }
    }

    pub(super) fn client_event(&mut self, idx: usize, ev: PollFlags) {
        if self.clients[idx].dead {
            return;
        }
        if ev.intersects(PollFlags::ERR | PollFlags::NVAL) {
            self.clients[idx].dead = true;
            return;
        }
        if ev.contains(PollFlags::OUT) && self.clients[idx].flush().is_err() {
            self.clients[idx].dead = true;
            return;
        }
        if ev.intersects(PollFlags::IN | PollFlags::HUP) {
            self.client_readable(idx);
        }
        if ev.contains(PollFlags::HUP) {
            self.clients[idx].dead = true;
        }
    }

    fn client_readable(&mut self, idx: usize) {
        let room = self.stdin_room(&self.clients[idx]);
        if room == 0 {
            return;
        }
        let mut buf = std::mem::take(&mut self.read_buf);
        let spare = buf.spare_capacity_mut();
        let room = room.min(spare.len());
        let read = rustix::io::read(&self.clients[idx].stream, &mut spare[..room]);
        match read {
            Ok(([], _)) => self.client_eof(idx),
            Ok((data, _)) => match self.clients[idx].mode {
                Mode::Attached(_) => self.attach_input(idx, data),
                Mode::Waiting => {}
                Mode::Request => self.request_input(idx, data),
            },
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(_) => self.clients[idx].dead = true,
        }
        self.read_buf = buf;
    }

    fn client_eof(&mut self, idx: usize) {
        let c = &mut self.clients[idx];
        match &mut c.mode {
            Mode::Attached(a) => {
                a.read_closed = true;
                let listening = a.stdout || a.stderr;
                self.detach_stdin(idx);
                if !listening {
                    self.clients[idx].dead = true;
                }
            }
            // A closed connection cancels its request.
            Mode::Request | Mode::Waiting => c.dead = true,
        }
    }

    fn request_input(&mut self, idx: usize, data: &[u8]) {
        let mut request = std::mem::take(&mut self.clients[idx].request);
        if request.len() + data.len() > MAX_REQUEST && !data.contains(&b'\n') {
            let c = &mut self.clients[idx];
            c.reply(&Ack::error("request line too long"));
            c.dead = true;
            return;
        }
        request.extend_from_slice(data);
        let mut consumed = 0;
        while let Some(pos) = request[consumed..].iter().position(|&b| b == b'\n') {
            let line = &request[consumed..consumed + pos];
            consumed += pos + 1;
            if !line.iter().all(u8::is_ascii_whitespace) {
                self.handle_request(idx, line);
            }
            if !matches!(self.clients[idx].mode, Mode::Request) || self.clients[idx].dead {
                break;
            }
        }
        let rest = &request[consumed..];
        if matches!(self.clients[idx].mode, Mode::Attached(_)) {
            if !rest.is_empty() {
                self.attach_input(idx, rest);
            }
            return;
        }
        if rest.len() > MAX_REQUEST {
            let c = &mut self.clients[idx];
            c.reply(&Ack::error("request line too long"));
            c.dead = true;
            return;
        }
        request.drain(..consumed);
        self.clients[idx].request = request;
    }

    fn handle_request(&mut self, idx: usize, line: &[u8]) {
        let request: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                self.clients[idx].reply(&Ack::error(format!("bad request: {e}")));
                return;
            }
        };
        match request {
            Request::Status => {
                let status = StatusReply {
                    pid: self.pid.as_raw_pid(),
                    running: self.exit.is_none(),
                    exit: self.exit.clone(),
                };
                self.clients[idx].reply(&status);
            }
            // Answered when everything is final (log drained, exit file written), even if the
            // exit is already known: see `Monitor::finish`.
            Request::Wait => self.clients[idx].mode = Mode::Waiting,
            Request::ReopenLog => {
                let ack = match self.reopen_log() {
                    Ok(()) => Ack::ok(),
                    Err(e) => Ack::error(format!("reopening {:?}: {e}", self.cfg.log_path)),
                };
                self.clients[idx].reply(&ack);
            }
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                let (tty, has_stdin) = (self.cfg.tty, self.cfg.stdin);
                let c = &mut self.clients[idx];
                c.reply(&Ack::ok());
                c.out.grow_limit(ATTACH_QUEUE);
                c.request = Vec::new();
                c.mode = Mode::Attached(Attach {
                    stdin: stdin && has_stdin,
                    // A terminal has one output stream; it is reported as stdout.
                    stdout: stdout || (tty && stderr),
                    stderr: stderr && !tty,
                    frames: FrameReader::default(),
                    read_closed: false,
                });
            }
        }
    }

    fn attach_input(&mut self, idx: usize, data: &[u8]) {
        let Mode::Attached(a) = &mut self.clients[idx].mode else {
            return;
        };
        let mut frames = a.frames;
        let may_write_stdin = a.stdin;
        let mut close_stdin = false;
        let mut off = 0;
        while off < data.len() {
            let (used, event) = frames.next(&data[off..]);
            off += used;
            match event {
                None => {}
                Some(Ok(FrameEvent::Stdin(chunk))) => {
                    // Always fits: the read was limited to the queue's free room.
                    let dropped =
                        may_write_stdin && self.stdin_open && !self.stdin_buf.push(&[chunk]);
                    if dropped {
                        eprintln!("husk-monitor: stdin queue overflow");
                    }
                }
                Some(Ok(FrameEvent::Resize(cols, rows))) => {
                    if let Some(pty) = &self.pty {
                        let _ = husk_sys::pty::set_size(pty, cols, rows);
                    }
                }
                Some(Ok(FrameEvent::CloseStdin)) => close_stdin |= may_write_stdin,
                Some(Err(e)) => {
                    eprintln!("husk-monitor: {e}");
                    self.clients[idx].dead = true;
                    return;
                }
            }
        }
        if let Mode::Attached(a) = &mut self.clients[idx].mode {
            a.frames = frames;
        }
        self.flush_stdin();
        if close_stdin {
            self.request_stdin_close();
        }
    }

    /// A client that had stdin is gone (or closed its sending side): with `stdin_once`, the
    /// first such client closes the container's stdin.
    fn detach_stdin(&mut self, idx: usize) {
        let Mode::Attached(a) = &mut self.clients[idx].mode else {
            return;
        };
        if !std::mem::take(&mut a.stdin) {
            return;
        }
        if self.cfg.stdin_once && !self.stdin_once_done {
            self.stdin_once_done = true;
            self.request_stdin_close();
        }
    }

    /// Drops the connections marked dead during this round.
    pub(super) fn sweep_clients(&mut self) {
        for idx in 0..self.clients.len() {
            if self.clients[idx].dead {
                self.detach_stdin(idx);
            }
        }
        self.clients.retain(|c| !c.dead);
    }
}
