//! A lenient reader for the JSON-like text models write: the subset of Python literals that
//! `ast.literal_eval` accepts, which the released reward code falls back to (after replacing every
//! `'` with `"`) when `json.loads` fails. It accepts what strict JSON rejects in practice: trailing
//! commas, `True`/`False`/`None`, tuples, sets, `#` comments, adjacent string concatenation.
//! Python quirks kept on purpose: a top-level `a, b` is a tuple (not a list), a newline outside
//! brackets ends the expression, the first line may not be indented, and only one sign may precede
//! a number. Complex and bytes literals are rejected (the rewards never see them).

use serde_json::Value;

/// A parsed literal, keeping the distinctions the rewards test (`list` vs `tuple`, `int` vs
/// `float`, `bool`).
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Literal>),
    Tuple(Vec<Literal>),
    Set(Vec<Literal>),
    /// Key/value pairs in order; a repeated key keeps its first position and its last value.
    Dict(Vec<(Literal, Literal)>),
}

/// Why a text is not a Python literal.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("not a Python literal at byte {at}: {reason}")]
pub struct LiteralError {
    pub at: usize,
    pub reason: &'static str,
}

impl Literal {
    /// A JSON value as Python's `json.loads` returns it.
    pub fn from_json(value: &Value) -> Literal {
        match value {
            Value::Null => Literal::None,
            Value::Bool(b) => Literal::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Literal::Int(i),
                None => Literal::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Literal::Str(s.clone()),
            Value::Array(items) => Literal::List(items.iter().map(Literal::from_json).collect()),
            Value::Object(map) => Literal::Dict(
                map.iter()
                    .map(|(k, v)| (Literal::Str(k.clone()), Literal::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// The JSON form (tuples and sets become arrays, non-string keys their Python `str`).
    pub fn to_json(&self) -> Value {
        match self {
            Literal::None => Value::Null,
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::from(*i),
            Literal::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            Literal::Str(s) => Value::String(s.clone()),
            Literal::List(items) | Literal::Tuple(items) | Literal::Set(items) => {
                Value::Array(items.iter().map(Literal::to_json).collect())
            }
            Literal::Dict(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.key_string(), v.to_json()))
                    .collect(),
            ),
        }
    }

    fn key_string(&self) -> String {
        match self {
            Literal::Str(s) => s.clone(),
            Literal::None => "None".into(),
            Literal::Bool(true) => "True".into(),
            Literal::Bool(false) => "False".into(),
            Literal::Int(i) => i.to_string(),
            Literal::Float(f) => f.to_string(),
            other => other.to_json().to_string(),
        }
    }

    pub fn is_dict(&self) -> bool {
        matches!(self, Literal::Dict(_))
    }

    /// The value under a string key of a dict.
    pub fn get(&self, key: &str) -> Option<&Literal> {
        match self {
            Literal::Dict(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(k, Literal::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The number Python's `isinstance(x, (int, float))` accepts; `bool` counts, as in Python.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Literal::Bool(b) => Some(f64::from(u8::from(*b))),
            Literal::Int(i) => Some(*i as f64),
            Literal::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Items of a list or tuple (what `len()` and indexing see in the reward code).
    pub fn items(&self) -> Option<&[Literal]> {
        match self {
            Literal::List(items) | Literal::Tuple(items) => Some(items),
            _ => None,
        }
    }

    fn hashable(&self) -> bool {
        match self {
            Literal::List(_) | Literal::Set(_) | Literal::Dict(_) => false,
            Literal::Tuple(items) => items.iter().all(Literal::hashable),
            _ => true,
        }
    }
}

/// Parse `text` as `ast.literal_eval` would (see the module notes for what is covered).
pub fn parse_lenient(text: &str) -> Result<Literal, LiteralError> {
    let text = text.trim_start_matches([' ', '\t']);
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
        src: text,
    };
    p.skip_leading_blank_lines()?;
    let value = p.sequence(0, true)?;
    p.skip(true);
    if p.pos < p.s.len() {
        return Err(p.err("unexpected text after the value"));
    }
    Ok(value)
}

const MAX_NESTING: usize = 200;

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, reason: &'static str) -> LiteralError {
        LiteralError {
            at: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_leading_blank_lines(&mut self) -> Result<(), LiteralError> {
        loop {
            let line_start = self.pos;
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\x0c')) {
                self.pos += 1;
            }
            match self.peek() {
                Some(b'\n' | b'\r') => self.pos += 1,
                Some(b'#') => self.skip(false),
                _ if self.pos > line_start => return Err(self.err("unexpected indent")),
                _ => return Ok(()),
            }
        }
    }

    /// Skip blanks and comments; newlines only inside brackets (`nl`), and escaped ones anywhere.
    fn skip(&mut self, nl: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\x0c' => self.pos += 1,
                b'\n' | b'\r' if nl => self.pos += 1,
                b'\\' if matches!(self.s.get(self.pos + 1), Some(b'\n' | b'\r')) => self.pos += 2,
                b'#' => {
                    while !matches!(self.peek(), None | Some(b'\n' | b'\r')) {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn eat(&mut self, c: u8, depth: usize) -> bool {
        self.skip(depth > 0);
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// `item (, item)* [,]` at top level or inside parentheses: a tuple when a comma appears.
    fn sequence(&mut self, depth: usize, top: bool) -> Result<Literal, LiteralError> {
        let first = self.item(depth)?;
        let mut items = vec![first];
        let mut comma = false;
        while self.eat(b',', depth) {
            comma = true;
            self.skip(depth > 0);
            if self.at_sequence_end(top) {
                break;
            }
            items.push(self.item(depth)?);
        }
        if comma {
            Ok(Literal::Tuple(items))
        } else {
            Ok(items.pop().unwrap_or(Literal::None))
        }
    }

    fn at_sequence_end(&self, top: bool) -> bool {
        match self.peek() {
            None => top,
            Some(b'\n' | b'\r' | b'#') => top,
            Some(b')') => !top,
            _ => false,
        }
    }

    fn item(&mut self, depth: usize) -> Result<Literal, LiteralError> {
        self.skip(depth > 0);
        let sign = match self.peek() {
            Some(b'-') => Some(-1.0),
            Some(b'+') => Some(1.0),
            _ => None,
        };
        if let Some(sign) = sign {
            self.pos += 1;
            self.skip(depth > 0);
            // Parentheses around the number are allowed (`-(1)`), a second sign is not.
            let value = if self.peek() == Some(b'(') {
                self.atom(depth)?
            } else {
                self.number()?
            };
            return match value {
                Literal::Int(i) if sign < 0.0 => Ok(Literal::Int(-i)),
                Literal::Int(i) => Ok(Literal::Int(i)),
                Literal::Float(f) => Ok(Literal::Float(sign * f)),
                _ => Err(self.err("a sign must precede a number")),
            };
        }
        self.atom(depth)
    }

    fn atom(&mut self, depth: usize) -> Result<Literal, LiteralError> {
        self.skip(depth > 0);
        // CPython's parser refuses more than 200 nested brackets; the limit also keeps a
        // degenerate "[[[[..." response from exhausting the stack.
        if depth >= MAX_NESTING && matches!(self.peek(), Some(b'[' | b'(' | b'{')) {
            return Err(self.err("too many nested brackets"));
        }
        match self.peek() {
            None => Err(self.err("the text ends where a value was expected")),
            Some(b'"') => self.strings(depth),
            Some(b'[') => {
                self.pos += 1;
                Ok(Literal::List(self.elements(b']', depth + 1)?))
            }
            Some(b'(') => {
                self.pos += 1;
                if self.eat(b')', depth + 1) {
                    return Ok(Literal::Tuple(Vec::new()));
                }
                let inner = self.sequence(depth + 1, false)?;
                if !self.eat(b')', depth + 1) {
                    return Err(self.err("expected ')'"));
                }
                Ok(inner)
            }
            Some(b'{') => {
                self.pos += 1;
                self.braces(depth + 1)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.pos;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
                    self.pos += 1;
                }
                match &self.src[start..self.pos] {
                    "True" => Ok(Literal::Bool(true)),
                    "False" => Ok(Literal::Bool(false)),
                    "None" => Ok(Literal::None),
                    _ => Err(LiteralError {
                        at: start,
                        reason: "a name is not a literal",
                    }),
                }
            }
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    /// Comma-separated items up to `close`, trailing comma allowed.
    fn elements(&mut self, close: u8, depth: usize) -> Result<Vec<Literal>, LiteralError> {
        let mut items = Vec::new();
        loop {
            if self.eat(close, depth) {
                return Ok(items);
            }
            items.push(self.item(depth)?);
            if self.eat(close, depth) {
                return Ok(items);
            }
            if !self.eat(b',', depth) {
                return Err(self.err("expected ',' or a closing bracket"));
            }
        }
    }

    fn braces(&mut self, depth: usize) -> Result<Literal, LiteralError> {
        if self.eat(b'}', depth) {
            return Ok(Literal::Dict(Vec::new()));
        }
        let first = self.item(depth)?;
        if !self.eat(b':', depth) {
            let mut items = vec![first];
            if self.eat(b',', depth) {
                items.extend(self.elements(b'}', depth)?);
            } else if !self.eat(b'}', depth) {
                return Err(self.err("expected ',' or '}' in a set"));
            }
            if !items.iter().all(Literal::hashable) {
                return Err(self.err("unhashable set element"));
            }
            let mut unique: Vec<Literal> = Vec::new();
            for item in items {
                if !unique.contains(&item) {
                    unique.push(item);
                }
            }
            return Ok(Literal::Set(unique));
        }
        let mut pairs: Vec<(Literal, Literal)> = Vec::new();
        let mut key = first;
        loop {
            let value = self.item(depth)?;
            if !key.hashable() {
                return Err(self.err("unhashable dict key"));
            }
            match pairs.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => pairs.push((key, value)),
            }
            if self.eat(b'}', depth) {
                return Ok(Literal::Dict(pairs));
            }
            if !self.eat(b',', depth) {
                return Err(self.err("expected ',' or '}' in a dict"));
            }
            if self.eat(b'}', depth) {
                return Ok(Literal::Dict(pairs));
            }
            key = self.item(depth)?;
            if !self.eat(b':', depth) {
                return Err(self.err("expected ':' in a dict"));
            }
        }
    }

    /// One or more adjacent double-quoted strings, concatenated.
    fn strings(&mut self, depth: usize) -> Result<Literal, LiteralError> {
        let mut out = String::new();
        loop {
            self.one_string(&mut out)?;
            let save = self.pos;
            self.skip(depth > 0);
            if self.peek() != Some(b'"') {
                self.pos = save;
                return Ok(Literal::Str(out));
            }
        }
    }

    fn one_string(&mut self, out: &mut String) -> Result<(), LiteralError> {
        self.pos += 1; // opening quote
        loop {
            let rest = &self.src[self.pos..];
            let Some(c) = rest.chars().next() else {
                return Err(self.err("unterminated string"));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(()),
                '\n' | '\r' => return Err(self.err("newline inside a string")),
                '\\' => self.escape(out)?,
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), LiteralError> {
        let Some(c) = self.src[self.pos..].chars().next() else {
            return Err(self.err("unterminated string"));
        };
        self.pos += c.len_utf8();
        let simple = match c {
            '\n' => Some(None),
            '\\' => Some(Some('\\')),
            '\'' => Some(Some('\'')),
            '"' => Some(Some('"')),
            'a' => Some(Some('\u{07}')),
            'b' => Some(Some('\u{08}')),
            'f' => Some(Some('\u{0c}')),
            'n' => Some(Some('\n')),
            'r' => Some(Some('\r')),
            't' => Some(Some('\t')),
            'v' => Some(Some('\u{0b}')),
            _ => None,
        };
        if let Some(ch) = simple {
            out.extend(ch);
            return Ok(());
        }
        let hex = |p: &mut Self, n: usize| -> Result<char, LiteralError> {
            let digits = p
                .src
                .get(p.pos..p.pos + n)
                .ok_or(p.err("truncated escape"))?;
            let code = u32::from_str_radix(digits, 16).map_err(|_| p.err("bad hex escape"))?;
            p.pos += n;
            char::from_u32(code).ok_or(p.err("escape is not a character"))
        };
        match c {
            'x' => out.push(hex(self, 2)?),
            'u' => out.push(hex(self, 4)?),
            'U' => out.push(hex(self, 8)?),
            '0'..='7' => {
                let mut code = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            code = code * 8 + u32::from(d - b'0');
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                out.push(char::from_u32(code).ok_or(self.err("bad octal escape"))?);
            }
            // Python keeps unknown escapes verbatim.
            other => {
                out.push('\\');
                out.push(other);
            }
        }
        Ok(())
    }

    fn number(&mut self) -> Result<Literal, LiteralError> {
        let start = self.pos;
        let radix = match self.s.get(self.pos..self.pos + 2) {
            Some(b"0x" | b"0X") => 16,
            Some(b"0o" | b"0O") => 8,
            Some(b"0b" | b"0B") => 2,
            _ => 10,
        };
        if radix != 10 {
            self.pos += 2;
            let digits_start = self.pos;
            while matches!(self.peek(), Some(c) if c.is_ascii_hexdigit() || c == b'_') {
                self.pos += 1;
            }
            let digits = self.src[digits_start..self.pos].replace('_', "");
            return i64::from_str_radix(&digits, radix)
                .map(Literal::Int)
                .map_err(|_| LiteralError {
                    at: start,
                    reason: "bad integer literal",
                });
        }
        let mut is_float = false;
        while let Some(c) = self.peek() {
            match c {
                b'0'..=b'9' | b'_' => self.pos += 1,
                b'.' => {
                    is_float = true;
                    self.pos += 1;
                }
                b'e' | b'E' => {
                    is_float = true;
                    self.pos += 1;
                    if matches!(self.peek(), Some(b'+' | b'-')) {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
        if matches!(self.peek(), Some(b'j' | b'J')) {
            return Err(self.err("complex numbers are not supported"));
        }
        if matches!(self.peek(), Some(c) if c.is_ascii_alphabetic() || c == b'_') {
            return Err(self.err("a name cannot start with a digit"));
        }
        let text = self.src[start..self.pos].replace('_', "");
        let bad = LiteralError {
            at: start,
            reason: "bad number literal",
        };
        if is_float {
            if text == "." {
                return Err(bad);
            }
            return text.parse::<f64>().map(Literal::Float).map_err(|_| bad);
        }
        if text.len() > 1 && text.starts_with('0') && text.bytes().any(|b| b != b'0') {
            return Err(LiteralError {
                at: start,
                reason: "leading zeros in a decimal integer",
            });
        }
        match text.parse::<i64>() {
            Ok(i) => Ok(Literal::Int(i)),
            // Python ints are unbounded; past i64 keep the magnitude as a float.
            Err(_) => text.parse::<f64>().map(Literal::Float).map_err(|_| bad),
        }
    }
}
