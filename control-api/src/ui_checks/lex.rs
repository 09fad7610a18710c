//! A small lexer for the console's JavaScript: identifiers, strings (unescaped), template
//! literals (their text parts, with each `${...}` hole lexed into a stream of its own),
//! punctuation, and numbers and regular expression literals as opaque tokens; comments are
//! skipped. Enough for code written in the console's style, and no more (see `mod.rs`).

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    Ident(String),
    /// A '...' or "..." string, unescaped.
    Str(String),
    /// A template literal: the literal text around its `${...}` holes (holes + 1 parts).
    Tpl(Vec<String>),
    Punct(char),
    /// Numbers and regular expression literals.
    Other,
}

#[derive(Debug, Clone)]
pub(super) struct Tok {
    pub(super) kind: Kind,
    pub(super) line: usize,
}

/// A token stream; a template's holes are lexed into streams of their own.
pub(super) type Stream = Vec<Tok>;

struct Lexer<'a> {
    s: &'a [char],
    i: usize,
    line: usize,
    out: Stream,
    holes: Vec<Stream>,
}

impl<'a> Lexer<'a> {
    fn peek(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn push(&mut self, kind: Kind, line: usize) {
        self.out.push(Tok { kind, line });
    }

    /// Lex to the end, or (`in_hole`) up to and including the `}` that closes a `${` hole.
    fn run(&mut self, in_hole: bool) {
        let mut depth = 0usize;
        while let Some(c) = self.peek(0) {
            let line = self.line;
            match c {
                c if c.is_whitespace() => {
                    self.bump();
                }
                '/' if self.peek(1) == Some('/') => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                '/' if self.peek(1) == Some('*') => {
                    self.i += 2;
                    while self.peek(0).is_some() && !(self.peek(0) == Some('*') && self.peek(1) == Some('/')) {
                        self.bump();
                    }
                    self.i += 2;
                }
                '/' if self.regex_allowed() => {
                    self.regex();
                    self.push(Kind::Other, line);
                }
                '\'' | '"' => {
                    self.bump();
                    let v = self.string(c);
                    self.push(Kind::Str(v), line);
                }
                '`' => {
                    self.bump();
                    let parts = self.template();
                    self.push(Kind::Tpl(parts), line);
                }
                c if c.is_alphabetic() || c == '_' || c == '$' => {
                    let mut w = String::new();
                    while let Some(c) = self.peek(0).filter(|c| c.is_alphanumeric() || *c == '_' || *c == '$') {
                        w.push(c);
                        self.bump();
                    }
                    self.push(Kind::Ident(w), line);
                }
                c if c.is_ascii_digit() => {
                    while self.peek(0).is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '_') {
                        self.bump();
                    }
                    self.push(Kind::Other, line);
                }
                '}' if in_hole && depth == 0 => {
                    self.bump();
                    return;
                }
                _ => {
                    if c == '{' {
                        depth += 1;
                    } else if c == '}' {
                        depth = depth.saturating_sub(1);
                    }
                    self.bump();
                    self.push(Kind::Punct(c), line);
                }
            }
        }
    }

    /// Whether a `/` here starts a regular expression (not a division): the usual rule of
    /// thumb, by the token before it.
    fn regex_allowed(&self) -> bool {
        match self.out.last().map(|t| &t.kind) {
            None => true,
            Some(Kind::Punct(p)) => "(,=:[!&|?{};+-*%<>~^".contains(*p),
            Some(Kind::Ident(w)) => {
                matches!(w.as_str(), "return" | "typeof" | "case" | "in" | "of" | "delete" | "void" | "new" | "else")
            }
            _ => false,
        }
    }

    fn regex(&mut self) {
        self.bump();
        let mut class = false;
        while let Some(c) = self.bump() {
            match c {
                '\\' => {
                    self.bump();
                }
                '[' => class = true,
                ']' => class = false,
                '/' if !class => break,
                '\n' => break,
                _ => {}
            }
        }
        while self.peek(0).is_some_and(|c| c.is_alphabetic()) {
            self.bump();
        }
    }

    fn string(&mut self, quote: char) -> String {
        let mut v = String::new();
        while let Some(c) = self.bump() {
            match c {
                '\\' => match self.bump() {
                    Some('n') => v.push('\n'),
                    Some(e) => v.push(e),
                    None => break,
                },
                c if c == quote => break,
                c => v.push(c),
            }
        }
        v
    }

    /// After the opening backtick: the literal parts; each hole goes to `self.holes`.
    fn template(&mut self) -> Vec<String> {
        let mut parts = vec![String::new()];
        while let Some(c) = self.bump() {
            match c {
                '`' => break,
                '\\' => {
                    if let (Some(e), Some(last)) = (self.bump(), parts.last_mut()) {
                        last.push(e);
                    }
                }
                '$' if self.peek(0) == Some('{') => {
                    self.bump();
                    let mut hole = Lexer { s: self.s, i: self.i, line: self.line, out: Vec::new(), holes: Vec::new() };
                    hole.run(true);
                    self.i = hole.i;
                    self.line = hole.line;
                    self.holes.push(hole.out);
                    self.holes.extend(hole.holes);
                    parts.push(String::new());
                }
                c => {
                    if let Some(last) = parts.last_mut() {
                        last.push(c);
                    }
                }
            }
        }
        parts
    }
}

/// A file's token streams: the file itself first, then every template hole.
pub(super) fn lex(src: &str) -> Vec<Stream> {
    let chars: Vec<char> = src.chars().collect();
    let mut l = Lexer { s: &chars, i: 0, line: 1, out: Vec::new(), holes: Vec::new() };
    l.run(false);
    let mut all = vec![l.out];
    all.extend(l.holes);
    all
}

pub(super) fn is(t: Option<&Tok>, k: &Kind) -> bool {
    t.is_some_and(|t| &t.kind == k)
}

pub(super) fn ident(t: Option<&Tok>) -> Option<&str> {
    match t.map(|t| &t.kind) {
        Some(Kind::Ident(w)) => Some(w),
        _ => None,
    }
}

/// The literal text of a string or template token (template holes left out).
pub(super) fn literal(t: &Tok) -> Option<String> {
    match &t.kind {
        Kind::Str(s) => Some(s.clone()),
        Kind::Tpl(parts) => Some(parts.concat()),
        _ => None,
    }
}

/// The index of the bracket closing the one at `open`.
pub(super) fn closing(s: &[Tok], open: usize) -> usize {
    let mut depth = 0i32;
    for (i, t) in s.iter().enumerate().skip(open) {
        match t.kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// The arguments of the call whose `(` is at `open`, as index ranges into `s`.
pub(super) fn call_args(s: &[Tok], open: usize) -> Vec<std::ops::Range<usize>> {
    let end = closing(s, open);
    let mut args = Vec::new();
    let (mut depth, mut start) = (0i32, open + 1);
    for (i, t) in s.iter().enumerate().take(end).skip(open + 1) {
        match t.kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(')' | ']' | '}') => depth -= 1,
            Kind::Punct(',') if depth == 0 => {
                args.push(start..i);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < end {
        args.push(start..end);
    }
    args
}
