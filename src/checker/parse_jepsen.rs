//! Readers for the two Jepsen history formats in `../shared/histories/` (its README is the
//! spec), the detection of a file's format, and `--format`.
//!
//! - Jepsen etcd log (`etcd_NNN.log`): lines `INFO  jepsen.util - P\t:type\t:f\tVALUE` (tabs or
//!   spaces), one register; VALUE is `nil`, an integer, `[A B]` for cas, or `:timed-out`. Lines
//!   without `jepsen.util - ` or whose process is not a number (the nemesis) are noise.
//! - Jepsen kv EDN (`cNN-*.txt`): one EDN map per line,
//!   `{:process P, :type :invoke, :f :append, :key "K", :value "V"}`; keys start as "".
//!
//! Invariant: a line that looks like an event but cannot be read is an error naming the line,
//! never skipped. Owned by the checker.

use super::history::{
    parse_json_lines, Event, EventType, Format, History, HistoryError, OpFunction,
};

/// Guesses the format: a first non-blank line starting with `{:` is Jepsen EDN, with `{`
/// our JSON; otherwise any line containing `jepsen.util - ` makes it a Jepsen etcd log (whose
/// other lines, however many, are noise).
pub fn detect_format(text: &str) -> Result<Format, HistoryError> {
    let Some((i, first)) = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty()) else {
        return Err(HistoryError::new(0, "empty history", ""));
    };
    if let Some(rest) = first.trim_start().strip_prefix('{') {
        return Ok(if rest.trim_start().starts_with(':') {
            Format::JepsenKv
        } else {
            Format::Json
        });
    }
    if text.contains("jepsen.util - ") {
        return Ok(Format::JepsenEtcd);
    }
    Err(HistoryError::new(
        i + 1,
        "unrecognized history format (expected JSON lines, a Jepsen etcd log or Jepsen EDN maps)",
        first,
    ))
}

/// Reads a history in the given format.
pub fn parse(text: &str, format: Format) -> Result<History, HistoryError> {
    let mut h = match format {
        Format::Json => parse_json_lines(text)?,
        Format::JepsenEtcd => parse_etcd_log(text)?,
        Format::JepsenKv => parse_kv_edn(text)?,
    };
    h.format = format;
    Ok(h)
}

fn keyword_type(s: &str) -> Option<EventType> {
    match s {
        ":invoke" => Some(EventType::Invoke),
        ":ok" => Some(EventType::Ok),
        ":fail" => Some(EventType::Fail),
        ":info" => Some(EventType::Info),
        _ => None,
    }
}

fn keyword_function(s: &str) -> Option<OpFunction> {
    match s {
        ":read" => Some(OpFunction::Read),
        ":write" => Some(OpFunction::Write),
        ":cas" => Some(OpFunction::Cas),
        ":get" => Some(OpFunction::Get),
        ":put" => Some(OpFunction::Put),
        ":delete" => Some(OpFunction::Delete),
        ":append" => Some(OpFunction::Append),
        _ => None,
    }
}

/// `nil` → None, an integer → its text; anything else is an error.
fn etcd_scalar(s: &str) -> Result<Option<String>, String> {
    if s == "nil" {
        return Ok(None);
    }
    s.parse::<i64>()
        .map(|v| Some(v.to_string()))
        .map_err(|_| format!("expected nil or an integer, found {s:?}"))
}

/// Reads a Jepsen etcd log.
pub fn parse_etcd_log(text: &str) -> Result<History, HistoryError> {
    const MARKER: &str = "jepsen.util - ";
    let mut h = History::default();
    for (i, line) in text.lines().enumerate() {
        let Some(at) = line.find(MARKER) else {
            continue;
        };
        let mut fields = line[at + MARKER.len()..].split_whitespace();
        let Some(Ok(process)) = fields.next().map(str::parse::<u64>) else {
            continue; // the nemesis or another logger message
        };
        let bad = |why: String| HistoryError::new(i + 1, why, line);
        let kind = fields
            .next()
            .and_then(keyword_type)
            .ok_or_else(|| bad("expected :invoke, :ok, :fail or :info".into()))?;
        let f = fields
            .next()
            .and_then(keyword_function)
            .filter(|f| matches!(f, OpFunction::Read | OpFunction::Write | OpFunction::Cas))
            .ok_or_else(|| bad("expected :read, :write or :cas".into()))?;
        let value_text = fields.collect::<Vec<_>>().join(" ");
        let mut event = Event::new(process, kind, f);
        let failed_or_unknown = matches!(kind, EventType::Fail | EventType::Info);
        match f {
            OpFunction::Cas if !failed_or_unknown || value_text.starts_with('[') => {
                let inner = value_text
                    .strip_prefix('[')
                    .and_then(|v| v.strip_suffix(']'))
                    .ok_or_else(|| bad("cas value must be [EXPECTED NEW]".into()))?;
                let parts: Vec<&str> = inner.split_whitespace().collect();
                if parts.len() != 2 {
                    return Err(bad("cas value must be [EXPECTED NEW]".into()));
                }
                event.expected = etcd_scalar(parts[0]).map_err(&bad)?;
                event.value = etcd_scalar(parts[1]).map_err(&bad)?;
            }
            _ if failed_or_unknown && value_text.starts_with(':') => {} // e.g. :timed-out
            _ => event.value = etcd_scalar(&value_text).map_err(&bad)?,
        }
        h.push(event, i + 1, line);
    }
    if h.events.is_empty() {
        return Err(HistoryError::new(0, "no jepsen.util events found", ""));
    }
    Ok(h)
}

/// An EDN value of the subset the kv histories use.
#[derive(Debug, Clone, PartialEq)]
enum Edn {
    Nil,
    Keyword(String),
    Str(String),
    Int(i64),
    Bool(bool),
    Vector(Vec<Edn>),
}

struct EdnReader<'a> {
    s: &'a [u8],
    at: usize,
}

impl EdnReader<'_> {
    fn skip_space(&mut self) {
        while self.at < self.s.len()
            && (self.s[self.at].is_ascii_whitespace() || self.s[self.at] == b',')
        {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.s.get(self.at).copied()
    }

    fn symbol(&mut self) -> &str {
        let start = self.at;
        while self.at < self.s.len() {
            let c = self.s[self.at];
            if c.is_ascii_whitespace() || matches!(c, b',' | b'}' | b']' | b'{' | b'[' | b'"') {
                break;
            }
            self.at += 1;
        }
        std::str::from_utf8(&self.s[start..self.at]).unwrap_or("")
    }

    fn value(&mut self) -> Result<Edn, String> {
        match self.peek() {
            None => Err("unexpected end of line".into()),
            Some(b'"') => {
                self.at += 1;
                let mut out = Vec::new();
                loop {
                    let Some(&c) = self.s.get(self.at) else {
                        return Err("unterminated string".into());
                    };
                    self.at += 1;
                    match c {
                        b'"' => break,
                        b'\\' => {
                            let Some(&e) = self.s.get(self.at) else {
                                return Err("unterminated string".into());
                            };
                            self.at += 1;
                            out.push(match e {
                                b'n' => b'\n',
                                b't' => b'\t',
                                b'r' => b'\r',
                                other => other,
                            });
                        }
                        other => out.push(other),
                    }
                }
                String::from_utf8(out)
                    .map(Edn::Str)
                    .map_err(|_| "string is not UTF-8".into())
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(b']') {
                        self.at += 1;
                        return Ok(Edn::Vector(items));
                    }
                    items.push(self.value()?);
                }
            }
            Some(_) => {
                let sym = self.symbol().to_string();
                match sym.as_str() {
                    "" => Err("unexpected character".into()),
                    "nil" => Ok(Edn::Nil),
                    "true" => Ok(Edn::Bool(true)),
                    "false" => Ok(Edn::Bool(false)),
                    s if s.starts_with(':') => Ok(Edn::Keyword(s.to_string())),
                    s => s
                        .parse::<i64>()
                        .map(Edn::Int)
                        .map_err(|_| format!("unsupported EDN value {s:?}")),
                }
            }
        }
    }

    /// Reads `{:k v, ...}` and nothing after it.
    fn map(&mut self) -> Result<Vec<(String, Edn)>, String> {
        if self.peek() != Some(b'{') {
            return Err("expected an EDN map {...}".into());
        }
        self.at += 1;
        let mut pairs = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.at += 1;
                break;
            }
            let Edn::Keyword(k) = self.value()? else {
                return Err("map keys must be keywords".into());
            };
            let v = self.value()?;
            pairs.push((k, v));
        }
        if self.peek().is_some() {
            return Err("text after the map".into());
        }
        Ok(pairs)
    }
}

fn edn_scalar(v: &Edn) -> Result<Option<String>, String> {
    match v {
        Edn::Nil => Ok(None),
        Edn::Str(s) => Ok(Some(s.clone())),
        Edn::Int(i) => Ok(Some(i.to_string())),
        Edn::Bool(b) => Ok(Some(b.to_string())),
        Edn::Keyword(k) => Ok(Some(k.clone())),
        Edn::Vector(_) => Err("expected a scalar, found a vector".into()),
    }
}

/// Reads a Jepsen kv history (EDN maps, one per line).
pub fn parse_kv_edn(text: &str) -> Result<History, HistoryError> {
    let mut h = History::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| HistoryError::new(i + 1, why, line);
        let pairs = EdnReader {
            s: line.as_bytes(),
            at: 0,
        }
        .map()
        .map_err(&bad)?;
        let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let process = match get(":process") {
            Some(Edn::Int(p)) if *p >= 0 => *p as u64,
            Some(Edn::Keyword(_)) => continue, // :nemesis
            _ => return Err(bad("missing or bad :process".into())),
        };
        let kind = match get(":type") {
            Some(Edn::Keyword(k)) => keyword_type(k),
            _ => None,
        }
        .ok_or_else(|| bad("missing or bad :type".into()))?;
        let f = match get(":f") {
            Some(Edn::Keyword(k)) => keyword_function(k),
            _ => None,
        }
        .ok_or_else(|| bad("missing or unknown :f".into()))?;
        let mut event = Event::new(process, kind, f);
        if let Some(k) = get(":key") {
            event.key = edn_scalar(k).map_err(&bad)?;
        }
        match get(":value") {
            Some(Edn::Vector(items)) if f == OpFunction::Cas && items.len() == 2 => {
                event.expected = edn_scalar(&items[0]).map_err(&bad)?;
                event.value = edn_scalar(&items[1]).map_err(&bad)?;
            }
            Some(v) => event.value = edn_scalar(v).map_err(&bad)?,
            None => {}
        }
        h.push(event, i + 1, line);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats() {
        assert_eq!(detect_format("\n{\"process\":1}").unwrap(), Format::Json);
        assert_eq!(
            detect_format("{:process 0, :type :invoke}").unwrap(),
            Format::JepsenKv
        );
        assert_eq!(
            detect_format("INFO  jepsen.util - 0\t:invoke\t:read\tnil").unwrap(),
            Format::JepsenEtcd
        );
        let noisy = format!(
            "{}INFO  jepsen.util - 0\t:invoke\t:read\tnil\n",
            "INFO  jepsen.core - setting up\n".repeat(500)
        );
        assert_eq!(detect_format(&noisy).unwrap(), Format::JepsenEtcd);
        assert_eq!(detect_format("\nhello\n").unwrap_err().line, 2);
        assert_eq!(detect_format(" \n").unwrap_err().line, 0);
    }

    #[test]
    fn reads_etcd_lines() {
        let text = "noise\nINFO  jepsen.util - 2\t:invoke\t:cas\t[3 0]\n\
                    INFO  jepsen.util - 2   :info   :cas    :timed-out\n\
                    INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n\
                    INFO  jepsen.util - 7\t:ok\t:read\tnil\n";
        let h = parse_etcd_log(text).unwrap();
        assert_eq!(h.events.len(), 3);
        assert_eq!(h.lines, vec![2, 3, 5]);
        assert_eq!(h.events[0].expected.as_deref(), Some("3"));
        assert_eq!(h.events[0].value.as_deref(), Some("0"));
        assert_eq!(h.events[1].kind, EventType::Info);
        assert_eq!(h.events[2].value, None);
        let err = parse_etcd_log("INFO  jepsen.util - 1\t:ok\t:read\tseven\n").unwrap_err();
        assert_eq!(err.line, 1);
    }

    #[test]
    fn reads_edn_lines() {
        let text = "{:process 9, :type :invoke, :f :append, :key \"0\", :value \"x 9 \\\"0 y\"}\n\
                    {:process :nemesis, :type :info, :f :start, :value nil}\n\
                    {:process 1, :type :ok, :f :get, :key \"9\", :value \"\"}\n";
        let h = parse_kv_edn(text).unwrap();
        assert_eq!(h.events.len(), 2);
        assert_eq!(h.events[0].value.as_deref(), Some("x 9 \"0 y"));
        assert_eq!(h.events[1].value.as_deref(), Some(""));
        let err = parse_kv_edn("{:process 1, :type :ok\n").unwrap_err();
        assert_eq!(err.line, 1);
    }
}
