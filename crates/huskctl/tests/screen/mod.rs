//! A small terminal emulator for tests: replays what a program wrote to a pty (text, CR, LF,
//! the cursor movements and erasures progress bars use) and returns what the terminal shows at
//! the end, scrollback included: a line a program failed to overwrite stays visible here as it
//! would on a screen.

/// The terminal's contents after `bytes`, one string per row (trailing blanks trimmed), for a
/// terminal `width` columns wide.
pub fn replay(bytes: &[u8], width: usize) -> Vec<String> {
    let mut t = Term::new(width);
    let text = String::from_utf8_lossy(bytes);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    let mut params = String::new();
                    let mut fin = None;
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() || c == '@' || c == '~' {
                            fin = Some(c);
                            break;
                        }
                        params.push(c);
                    }
                    if let Some(f) = fin {
                        t.csi(&params, f);
                    }
                }
                // Two-character escapes (charset selection, save/restore): no effect here.
                Some('(' | ')') => {
                    chars.next();
                }
                _ => {}
            },
            '\r' => t.col = 0,
            '\n' => t.line_feed(),
            '\x08' => t.col = t.col.saturating_sub(1),
            '\t' => t.col = ((t.col / 8 + 1) * 8).min(width - 1),
            '\x07' => {}
            c if c.is_control() => {}
            c => t.put(c),
        }
    }
    t.rows
        .into_iter()
        .map(|r| r.into_iter().collect::<String>().trim_end().to_string())
        .collect()
}

/// Whether `bytes` hold any escape sequence or carriage return (a plain, line-by-line output
/// has neither).
pub fn has_terminal_control(bytes: &[u8]) -> bool {
    bytes.iter().any(|b| *b == 0x1b || *b == b'\r')
}

struct Term {
    width: usize,
    rows: Vec<Vec<char>>,
    row: usize,
    col: usize,
}

impl Term {
    fn new(width: usize) -> Self {
        Term {
            width,
            rows: vec![vec![]],
            row: 0,
            col: 0,
        }
    }

    fn line(&mut self) -> &mut Vec<char> {
        while self.rows.len() <= self.row {
            self.rows.push(vec![]);
        }
        &mut self.rows[self.row]
    }

    fn line_feed(&mut self) {
        self.row += 1;
        self.line();
    }

    /// Writes a character; past the last column (the "pending wrap" of a real terminal) the
    /// character goes to the start of the next row.
    fn put(&mut self, c: char) {
        if self.col >= self.width {
            self.col = 0;
            self.line_feed();
        }
        let col = self.col;
        let line = self.line();
        if line.len() <= col {
            line.resize(col + 1, ' ');
        }
        line[col] = c;
        self.col += 1;
    }

    fn csi(&mut self, params: &str, fin: char) {
        if params.starts_with('?') {
            return; // modes: cursor visibility and the like
        }
        let n = |default: usize| {
            params
                .split(';')
                .next()
                .and_then(|p| p.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        match fin {
            'A' => self.row = self.row.saturating_sub(n(1)),
            'B' => {
                self.row += n(1);
                self.line();
            }
            'C' => self.col = (self.col + n(1)).min(self.width - 1),
            'D' => self.col = self.col.min(self.width - 1).saturating_sub(n(1)),
            'G' => self.col = n(1) - 1,
            'K' => {
                let col = self.col.min(self.width);
                let mode = params.parse::<u8>().unwrap_or(0);
                let line = self.line();
                match mode {
                    0 => line.truncate(col),
                    1 => line.iter_mut().take(col + 1).for_each(|c| *c = ' '),
                    _ => line.clear(),
                }
            }
            'J' => {
                let (row, col) = (self.row, self.col.min(self.width));
                let mode = params.parse::<u8>().unwrap_or(0);
                self.line();
                match mode {
                    0 => {
                        self.rows[row].truncate(col);
                        self.rows.truncate(row + 1);
                    }
                    _ => self.rows.iter_mut().for_each(Vec::clear),
                }
            }
            _ => {} // colours and attributes (m), and the rest
        }
    }
}

#[test]
fn replay_overwrites_like_a_terminal() {
    // Two bars drawn, then redrawn in place (up one line, CR, erase line), then a line that
    // follows the right-padded last bar.
    // (A pty turns "\n" into "\r\n".)
    let bytes =
        b"a 1     \r\n\x1b[32mb 1\x1b[0m   \x1b[1A\r\x1b[2Ka 2\x1b[1B\r\x1b[2Kb 2     Done\r\n";
    assert_eq!(replay(bytes, 8), vec!["a 2", "b 2", "Done", ""]);
    assert!(has_terminal_control(bytes));
    assert!(!has_terminal_control(b"plain\nlines\n"));
}
