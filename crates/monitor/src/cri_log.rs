//! The CRI container log format: `<RFC3339Nano UTC> stdout|stderr F|P <content>\n`, written
//! from raw pipe reads with fixed buffers (lines over [`MAX_LINE`] become `P` records), and
//! parsed back (tests, fuzzing, tools).

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest content of one record; longer lines are split into `P` records.
pub const MAX_LINE: usize = 16 * 1024;
/// Length of a formatted timestamp (`2024-01-02T03:04:05.123456789Z`).
pub const TIMESTAMP_LEN: usize = 30;
/// Size of the buffer records are formatted into before they are written out.
const OUT_CAPACITY: usize = 2 * MAX_LINE + 256;
/// `<ts> stderr P ` + `\n`.
const RECORD_OVERHEAD: usize = TIMESTAMP_LEN + 10;

/// A formatted timestamp.
pub type Timestamp = [u8; TIMESTAMP_LEN];

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout (and all output of a tty).
    Stdout,
    /// The container's stderr.
    Stderr,
}

impl Stream {
    /// The stream's name in a log record.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// Formats `now` as RFC 3339 UTC with nine fraction digits.
pub fn timestamp_now() -> Timestamp {
    format_timestamp(SystemTime::now())
}

/// Formats a time as RFC 3339 UTC with nine fraction digits (times before 1970 format as
/// the epoch).
pub fn format_timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format_unix(d.as_secs(), d.subsec_nanos())
}

/// Formats seconds + nanoseconds since the epoch as RFC 3339 UTC with nine fraction digits.
pub fn format_unix(secs: u64, nanos: u32) -> Timestamp {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    put_digits(
        &mut out[0..4],
        u64::try_from(year.clamp(0, 9999)).unwrap_or(0),
    );
    put_digits(&mut out[5..7], u64::from(month));
    put_digits(&mut out[8..10], u64::from(day));
    put_digits(&mut out[11..13], rem / 3600);
    put_digits(&mut out[14..16], rem % 3600 / 60);
    put_digits(&mut out[17..19], rem % 60);
    put_digits(&mut out[20..29], u64::from(nanos.min(999_999_999)));
    out
}

/// Parses an RFC 3339 UTC timestamp (`Z` suffix, any number of fraction digits) into seconds
/// and nanoseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<(u64, u32)> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let mut nanos = 0u32;
    let rest = &b[19..b.len() - 1];
    if !rest.is_empty() {
        let digits = rest.strip_prefix(b".")?;
        if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for i in 0..9 {
            nanos = nanos * 10 + digits.get(i).map_or(0, |d| u32::from(d - b'0'));
        }
    }
    let days = days_from_civil(i64::try_from(year).ok()?, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + sec;
    Some((secs, nanos))
}

fn put_digits(dst: &mut [u8], mut v: u64) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(year: i64, month: u64, day: u64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Turns raw stdout/stderr bytes into CRI log records. Holds each stream's unfinished line in a
/// fixed buffer and formats into a fixed output buffer: no allocation after [`CriLogWriter::new`].
#[derive(Debug)]
pub struct CriLogWriter {
    /// Unfinished line per stream; capacity [`MAX_LINE`], never grown.
    partial: [Vec<u8>; 2],
    out: Vec<u8>,
}

impl Default for CriLogWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl CriLogWriter {
    /// Allocates the buffers (touched, and so resident, only as far as they are used).
    pub fn new() -> Self {
        Self {
            partial: [Vec::with_capacity(MAX_LINE), Vec::with_capacity(MAX_LINE)],
            out: Vec::with_capacity(OUT_CAPACITY),
        }
    }

    /// Formats the records for `data` read from `stream` at `ts`; complete lines end up in the
    /// output buffer (written to `sink` when it fills), an unfinished line is kept. Call
    /// [`CriLogWriter::flush`] after a batch of reads.
    pub fn push(
        &mut self,
        stream: Stream,
        ts: &Timestamp,
        mut data: &[u8],
        sink: &mut impl Write,
    ) -> io::Result<()> {
        let mut result = Ok(());
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let r = self.line(stream, ts, &data[..i], sink);
                    result = result.and(r);
                    data = &data[i + 1..];
                }
                None => {
                    let r = self.append_partial(stream, ts, data, sink);
                    result = result.and(r);
                    data = &[];
                }
            }
        }
        result
    }

    /// Writes a stream's unfinished line as a final (`F`) record: the stream reached EOF.
    pub fn finish(
        &mut self,
        stream: Stream,
        ts: &Timestamp,
        sink: &mut impl Write,
    ) -> io::Result<()> {
        let s = stream.index();
        if self.partial[s].is_empty() {
            return Ok(());
        }
        let mut partial = std::mem::take(&mut self.partial[s]);
        let r = self.record(stream, ts, b'F', &partial, sink);
        partial.clear();
        self.partial[s] = partial;
        r
    }

    /// Writes out every formatted record (unfinished lines stay buffered).
    pub fn flush(&mut self, sink: &mut impl Write) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = sink.write_all(&self.out);
        // On error the records are dropped: a full disk must never stall the container.
        self.out.clear();
        r
    }

    /// Bytes of unfinished lines held for `stream`.
    pub fn pending(&self, stream: Stream) -> usize {
        self.partial[stream.index()].len()
    }

    /// One complete line (without its newline), joined to the stream's unfinished bytes.
    fn line(
        &mut self,
        stream: Stream,
        ts: &Timestamp,
        line: &[u8],
        sink: &mut impl Write,
    ) -> io::Result<()> {
        if self.partial[stream.index()].is_empty() {
            let mut rest = line;
            let mut result = Ok(());
            while rest.len() > MAX_LINE {
                result = result.and(self.record(stream, ts, b'P', &rest[..MAX_LINE], sink));
                rest = &rest[MAX_LINE..];
            }
            return result.and(self.record(stream, ts, b'F', rest, sink));
        }
        let r = self.append_partial(stream, ts, line, sink);
        r.and(self.finish(stream, ts, sink))
    }

    /// Bytes without a newline: kept, with full `P` records cut off while more bytes follow.
    fn append_partial(
        &mut self,
        stream: Stream,
        ts: &Timestamp,
        mut data: &[u8],
        sink: &mut impl Write,
    ) -> io::Result<()> {
        let s = stream.index();
        let mut result = Ok(());
        while !data.is_empty() {
            if self.partial[s].len() == MAX_LINE {
                let mut partial = std::mem::take(&mut self.partial[s]);
                result = result.and(self.record(stream, ts, b'P', &partial, sink));
                partial.clear();
                self.partial[s] = partial;
            }
            let take = (MAX_LINE - self.partial[s].len()).min(data.len());
            self.partial[s].extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        result
    }

    fn record(
        &mut self,
        stream: Stream,
        ts: &Timestamp,
        tag: u8,
        content: &[u8],
        sink: &mut impl Write,
    ) -> io::Result<()> {
        let mut result = Ok(());
        if self.out.len() + content.len() + RECORD_OVERHEAD > OUT_CAPACITY {
            result = self.flush(sink);
        }
        self.out.extend_from_slice(ts);
        self.out.push(b' ');
        self.out.extend_from_slice(stream.as_str().as_bytes());
        self.out.extend_from_slice(&[b' ', tag, b' ']);
        self.out.extend_from_slice(content);
        self.out.push(b'\n');
        result
    }
}

/// One parsed log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The timestamp as written.
    pub timestamp: &'a str,
    /// The stream.
    pub stream: Stream,
    /// `true` for a `P` (partial) record.
    pub partial: bool,
    /// The content, without the newline.
    pub content: &'a [u8],
}

/// Parses one record (with or without its trailing newline).
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |&b| b == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?;
    parse_timestamp(timestamp)?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or(b"");
    Some(Record {
        timestamp,
        stream,
        partial,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &Timestamp = b"2024-01-02T03:04:05.000000006Z";

    fn records(out: &[u8]) -> Vec<(Stream, bool, Vec<u8>)> {
        out.split_inclusive(|&b| b == b'\n')
            .map(|l| {
                let r = parse_record(l).unwrap();
                (r.stream, r.partial, r.content.to_vec())
            })
            .collect()
    }

    #[test]
    fn formats_known_timestamps() {
        assert_eq!(&format_unix(0, 0), b"1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            &format_unix(951_782_400, 5),
            b"2000-02-29T00:00:00.000000005Z"
        );
        assert_eq!(
            &format_unix(1_700_000_000, 123_456_789),
            b"2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            &format_unix(4_107_542_399, 0),
            b"2100-02-28T23:59:59.000000000Z"
        );
    }

    #[test]
    fn timestamps_round_trip_and_match_chrono() {
        let mut secs = 1u64;
        while secs < 250_000_000_000 {
            let nanos = (secs % 1_000_000_000) as u32;
            let ts = format_unix(secs, nanos);
            let s = std::str::from_utf8(&ts).unwrap();
            assert_eq!(parse_timestamp(s), Some((secs, nanos)));
            let c = chrono::DateTime::from_timestamp(secs as i64, nanos).unwrap();
            assert_eq!(s, c.format("%Y-%m-%dT%H:%M:%S.%9fZ").to_string());
            secs = secs * 3 + 7;
        }
        assert_eq!(
            parse_timestamp("2024-01-02T03:04:05Z"),
            Some((1_704_164_645, 0))
        );
        assert_eq!(
            parse_timestamp("2024-01-02T03:04:05.5Z"),
            Some((1_704_164_645, 500_000_000))
        );
        assert_eq!(parse_timestamp("2024-01-02T03:04:05.Z"), None);
        assert_eq!(parse_timestamp("2024-13-02T03:04:05Z"), None);
        assert_eq!(parse_timestamp("garbage"), None);
    }

    #[test]
    fn complete_lines_are_final_and_leftovers_wait_for_eof() {
        let mut w = CriLogWriter::new();
        let mut out = Vec::new();
        w.push(Stream::Stdout, TS, b"a\nb", &mut out).unwrap();
        w.push(Stream::Stderr, TS, b"err\n", &mut out).unwrap();
        w.push(Stream::Stdout, TS, b"c\npartial", &mut out).unwrap();
        w.flush(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "2024-01-02T03:04:05.000000006Z stdout F a\n\
             2024-01-02T03:04:05.000000006Z stderr F err\n\
             2024-01-02T03:04:05.000000006Z stdout F bc\n"
        );
        assert_eq!(w.pending(Stream::Stdout), 7);
        w.finish(Stream::Stdout, TS, &mut out).unwrap();
        w.finish(Stream::Stderr, TS, &mut out).unwrap();
        w.flush(&mut out).unwrap();
        let recs = records(&out);
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[3], (Stream::Stdout, false, b"partial".to_vec()));
    }

    #[test]
    fn empty_lines_are_records() {
        let mut w = CriLogWriter::new();
        let mut out = Vec::new();
        w.push(Stream::Stdout, TS, b"\n\n", &mut out).unwrap();
        w.flush(&mut out).unwrap();
        assert_eq!(records(&out), vec![(Stream::Stdout, false, vec![]); 2]);
    }

    #[test]
    fn long_lines_split_into_partial_records_whatever_the_read_sizes() {
        let line: Vec<u8> = (0..40 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        let mut input = line.clone();
        input.push(b'\n');
        for chunk in [1usize, 7, 4096, 16 * 1024, 16 * 1024 + 1, 100_000] {
            let mut w = CriLogWriter::new();
            let mut out = Vec::new();
            for piece in input.chunks(chunk) {
                w.push(Stream::Stdout, TS, piece, &mut out).unwrap();
            }
            w.flush(&mut out).unwrap();
            let recs = records(&out);
            let tags: Vec<bool> = recs.iter().map(|r| r.1).collect();
            assert_eq!(tags, vec![true, true, false], "chunk {chunk}");
            assert_eq!(recs[0].2.len(), MAX_LINE);
            assert_eq!(recs[1].2.len(), MAX_LINE);
            let joined: Vec<u8> = recs.iter().flat_map(|r| r.2.clone()).collect();
            assert_eq!(joined, line);
        }
    }

    #[test]
    fn a_line_of_exactly_max_is_one_final_record() {
        let mut input = vec![b'x'; MAX_LINE];
        input.push(b'\n');
        for chunk in [MAX_LINE, MAX_LINE + 1, 1000] {
            let mut w = CriLogWriter::new();
            let mut out = Vec::new();
            for piece in input.chunks(chunk) {
                w.push(Stream::Stderr, TS, piece, &mut out).unwrap();
            }
            w.flush(&mut out).unwrap();
            let recs = records(&out);
            assert_eq!(recs.len(), 1);
            assert_eq!(recs[0].2.len(), MAX_LINE);
            assert!(!recs[0].1);
        }
    }

    #[test]
    fn output_buffer_never_grows() {
        let mut w = CriLogWriter::new();
        let cap = (w.out.capacity(), w.partial[0].capacity());
        let mut sink = io::sink();
        let data: Vec<u8> = (0..300_000)
            .map(|i| if i % 5000 == 0 { b'\n' } else { b'y' })
            .collect();
        for piece in data.chunks(16 * 1024) {
            w.push(Stream::Stdout, TS, piece, &mut sink).unwrap();
        }
        w.push(Stream::Stdout, TS, &vec![b'z'; 70_000], &mut sink)
            .unwrap();
        assert_eq!((w.out.capacity(), w.partial[0].capacity()), cap);
    }

    #[test]
    fn bad_records_do_not_parse() {
        assert!(parse_record(b"2024-01-02T03:04:05Z stdout X a").is_none());
        assert!(parse_record(b"2024-01-02T03:04:05Z stdin F a").is_none());
        assert!(parse_record(b"nope stdout F a").is_none());
        let r = parse_record(b"2024-01-02T03:04:05Z stdout F a b\n").unwrap();
        assert_eq!(r.content, b"a b");
    }
}
