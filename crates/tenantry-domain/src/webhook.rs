//! Webhooks' pure rules (issue 15): the filter language of subscriptions, the delivery policy,
//! the backoff with full jitter, and what a receiver's answer means for the message (retry, and
//! when; dead; the subscription gone). No I/O: time and randomness are passed in.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ValidationErrors;

// ---------------------------------------------------------------------------------------------
// Delivery policy
// ---------------------------------------------------------------------------------------------

/// How one subscription's messages are delivered. Defaults (seed 001): 8 attempts within 24 h.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryPolicy {
    /// How long one attempt may take, connection included (100–30 000 ms; default 10 000).
    pub timeout_ms: u32,
    /// Attempts before the message is dead-lettered (1–20; default 8).
    pub max_attempts: u32,
    /// Age after which a message is dead-lettered instead of tried again (60–604 800 s; default
    /// 86 400: 24 h).
    pub max_age_seconds: u32,
    /// The first retry's ceiling; each next one is 4 times the last (10 ms – 1 h; default 5 s).
    pub backoff_initial_ms: u32,
    /// The largest ceiling (≥ `backoff_initial_ms`, ≤ 24 h; default 6 h).
    pub backoff_max_ms: u32,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            max_attempts: 8,
            max_age_seconds: 86_400,
            backoff_initial_ms: 5_000,
            backoff_max_ms: 6 * 3_600_000,
        }
    }
}

impl DeliveryPolicy {
    pub fn validate(&self, field: &str, errors: &mut ValidationErrors) {
        let mut check = |name: &str, v: u32, lo: u32, hi: u32| {
            if !(lo..=hi).contains(&v) {
                errors.push(format!("{field}.{name}"), format!("must be {lo}–{hi}"));
            }
        };
        check("timeout_ms", self.timeout_ms, 100, 30_000);
        check("max_attempts", self.max_attempts, 1, 20);
        check("max_age_seconds", self.max_age_seconds, 60, 604_800);
        check("backoff_initial_ms", self.backoff_initial_ms, 10, 3_600_000);
        check(
            "backoff_max_ms",
            self.backoff_max_ms,
            self.backoff_initial_ms.max(10),
            86_400_000,
        );
    }

    /// The wait before attempt `next` (2 for the first retry): full jitter, a uniform draw
    /// (`unit` in [0, 1)) below a ceiling that grows 4× per attempt from `backoff_initial_ms` up
    /// to `backoff_max_ms`; never under 10 ms.
    pub fn backoff(&self, next: u32, unit: f64) -> Duration {
        let exp = next.saturating_sub(2).min(20);
        let ceiling = (u64::from(self.backoff_initial_ms))
            .saturating_mul(4u64.saturating_pow(exp))
            .min(u64::from(self.backoff_max_ms));
        let ms = (ceiling as f64 * unit.clamp(0.0, 1.0)) as u64;
        Duration::from_millis(ms.max(10))
    }
}

/// How a subscription's messages are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Delivered concurrently (up to the subscription's cap).
    #[default]
    None,
    /// Messages with the same partition key one at a time, in commit order.
    PerKey,
}

impl Ordering {
    pub fn as_str(self) -> &'static str {
        match self {
            Ordering::None => "none",
            Ordering::PerKey => "per_key",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Ordering::None),
            "per_key" => Some(Ordering::PerKey),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What an attempt's answer means
// ---------------------------------------------------------------------------------------------

/// How an attempt ended, as the sender saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The receiver answered with this status; `retry_after` is its `Retry-After`, when sent.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No answer within the timeout.
    Timeout,
    /// No connection, a refused destination, a broken response.
    Error,
}

impl Answer {
    /// The bounded label of `webhook_deliveries_total`.
    pub fn class(&self) -> &'static str {
        match self {
            Answer::Status { code, .. } => match code {
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            },
            Answer::Timeout => "timeout",
            Answer::Error => "error",
        }
    }
}

/// What happens to a message after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    /// Tried again after this wait.
    Retry(Duration),
    /// No more attempts: dead-lettered, with why.
    Dead(String),
    /// `410 Gone`: the receiver wants no more; the subscription is disabled.
    Gone,
}

/// The longest `Retry-After` honoured as given (a longer one is taken as this).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Decides after attempt number `attempt` (1-based) of a message first attempted `age` ago.
/// `Retry-After` on 429 and 503 is honoured: the next attempt is not before it (nor before the
/// backoff's draw, whichever is later). Other statuses, timeouts and errors retry with backoff;
/// past `max_attempts`, or when the next attempt would fall after `max_age`, the message is dead.
pub fn decide(
    policy: &DeliveryPolicy,
    attempt: u32,
    age: Duration,
    answer: &Answer,
    unit: f64,
) -> Decision {
    let mut wait = policy.backoff(attempt + 1, unit);
    match answer {
        Answer::Status { code, .. } if (200..300).contains(code) => return Decision::Delivered,
        Answer::Status { code: 410, .. } => return Decision::Gone,
        Answer::Status {
            code: 429 | 503,
            retry_after: Some(after),
        } => wait = wait.max((*after).min(MAX_RETRY_AFTER)),
        _ => {}
    }
    if attempt >= policy.max_attempts {
        return Decision::Dead(format!("{attempt} attempts made (max_attempts)"));
    }
    if age + wait > Duration::from_secs(u64::from(policy.max_age_seconds)) {
        return Decision::Dead(format!(
            "the next attempt would be {}s after the first, past max_age_seconds ({})",
            (age + wait).as_secs(),
            policy.max_age_seconds
        ));
    }
    Decision::Retry(wait)
}

// ---------------------------------------------------------------------------------------------
// The filter language
// ---------------------------------------------------------------------------------------------

/// The longest filter expression.
pub const MAX_FILTER_CHARS: usize = 2048;
const MAX_DEPTH: usize = 16;
const MAX_LIST: usize = 100;

/// A parsed filter: a predicate over a CloudEvent (its attributes, and `data.…` fields).
///
/// ```text
/// expr  := and ("or" and)*
/// and   := unary ("and" unary)*
/// unary := "not" unary | "(" expr ")" | path test
/// test  := ("==" | "!=" | "<" | "<=" | ">" | ">=") literal
///        | "in" list | "not" "in" list | "exists"
/// path  := name ("." name)*          (name: letters, digits, '_', '-'; `data.x.y` reads data)
/// list  := "[" literal ("," literal)* "]"
/// literal := 'text' | "text" | number | true | false | null
/// ```
///
/// A path that is absent satisfies only `!=` and `not in`. Ordering compares numbers with
/// numbers and strings with strings (anything else is false).
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Or(Vec<Filter>),
    And(Vec<Filter>),
    Not(Box<Filter>),
    Compare(Vec<String>, Op, Value),
    In(Vec<String>, Vec<Value>),
    Exists(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Num(f64),
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, String> {
    let b: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let at = i;
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => (out.push((at, Tok::LParen)), i += 1).1,
            ')' => (out.push((at, Tok::RParen)), i += 1).1,
            '[' => (out.push((at, Tok::LBracket)), i += 1).1,
            ']' => (out.push((at, Tok::RBracket)), i += 1).1,
            ',' => (out.push((at, Tok::Comma)), i += 1).1,
            '.' => (out.push((at, Tok::Dot)), i += 1).1,
            '=' | '!' | '<' | '>' => {
                let two = b.get(i + 1) == Some(&'=');
                let op = match (c, two) {
                    ('=', true) => Op::Eq,
                    ('!', true) => Op::Ne,
                    ('<', true) => Op::Le,
                    ('>', true) => Op::Ge,
                    ('<', false) => Op::Lt,
                    ('>', false) => Op::Gt,
                    _ => return Err(format!("at {at}: '{c}' must be followed by '=' here")),
                };
                out.push((at, Tok::Op(op)));
                i += if two { 2 } else { 1 };
            }
            '\'' | '"' => {
                let quote = c;
                let mut text = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(format!("at {at}: the string is not closed")),
                        Some('\\') => {
                            match b.get(i + 1) {
                                Some(e @ ('\\' | '\'' | '"')) => text.push(*e),
                                _ => {
                                    return Err(format!(
                                        "at {i}: only \\\\, \\' and \\\" escapes are allowed"
                                    ));
                                }
                            }
                            i += 2;
                        }
                        Some(ch) if *ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            text.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push((at, Tok::Str(text)));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < b.len()
                    && (b[i].is_ascii_digit() || matches!(b[i], '.' | 'e' | 'E' | '+' | '-'))
                {
                    // a '.' followed by a letter is a path dot, not a decimal point
                    if b[i] == '.' && !b.get(i + 1).is_some_and(char::is_ascii_digit) {
                        break;
                    }
                    i += 1;
                }
                let text: String = b[start..i].iter().collect();
                let n: f64 = text
                    .parse()
                    .map_err(|_| format!("at {start}: '{text}' is not a number"))?;
                if !n.is_finite() {
                    return Err(format!("at {start}: '{text}' is not a finite number"));
                }
                out.push((start, Tok::Num(n)));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == '-') {
                    i += 1;
                }
                out.push((start, Tok::Name(b[start..i].iter().collect())));
            }
            other => return Err(format!("at {at}: unexpected '{other}'")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |t| t.0)
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(n)) if n == k)
    }

    fn expect(&mut self, t: &Tok, what: &str) -> Result<(), String> {
        if self.peek() == Some(t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("at {}: {what} expected", self.at()))
        }
    }

    fn or(&mut self, depth: usize) -> Result<Filter, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} deep"));
        }
        let mut parts = vec![self.and(depth)?];
        while self.keyword("or") {
            self.pos += 1;
            parts.push(self.and(depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one")
        } else {
            Filter::Or(parts)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Filter, String> {
        let mut parts = vec![self.unary(depth)?];
        while self.keyword("and") {
            self.pos += 1;
            parts.push(self.unary(depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one")
        } else {
            Filter::And(parts)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} deep"));
        }
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let inner = self.or(depth + 1)?;
            self.expect(&Tok::RParen, "')'")?;
            return Ok(inner);
        }
        let path = self.path()?;
        match self.peek().cloned() {
            Some(Tok::Op(op)) => {
                self.pos += 1;
                Ok(Filter::Compare(path, op, self.literal()?))
            }
            Some(Tok::Name(n)) if n == "in" => {
                self.pos += 1;
                Ok(Filter::In(path, self.list()?))
            }
            Some(Tok::Name(n)) if n == "not" => {
                self.pos += 1;
                if !self.keyword("in") {
                    return Err(format!("at {}: 'in' expected after 'not'", self.at()));
                }
                self.pos += 1;
                Ok(Filter::Not(Box::new(Filter::In(path, self.list()?))))
            }
            Some(Tok::Name(n)) if n == "exists" => {
                self.pos += 1;
                Ok(Filter::Exists(path))
            }
            _ => Err(format!(
                "at {}: a comparison (==, !=, <, <=, >, >=, in, not in, exists) expected",
                self.at()
            )),
        }
    }

    fn path(&mut self) -> Result<Vec<String>, String> {
        let mut path = Vec::new();
        loop {
            match self.peek().cloned() {
                Some(Tok::Name(n)) if path.is_empty() && matches!(n.as_str(), "and" | "or") => {
                    return Err(format!("at {}: an attribute expected", self.at()));
                }
                Some(Tok::Name(n)) => {
                    self.pos += 1;
                    path.push(n);
                }
                // a numeric segment (an array index): `data.items.0.id`
                Some(Tok::Num(n)) if !path.is_empty() && n >= 0.0 && n.fract() == 0.0 => {
                    self.pos += 1;
                    path.push(format!("{}", n as u64));
                }
                _ => return Err(format!("at {}: an attribute expected", self.at())),
            }
            if self.peek() == Some(&Tok::Dot) {
                self.pos += 1;
            } else {
                return Ok(path);
            }
        }
    }

    fn literal(&mut self) -> Result<Value, String> {
        let at = self.at();
        let v = match self.peek().cloned() {
            Some(Tok::Str(s)) => Value::String(s),
            Some(Tok::Num(n)) => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
            Some(Tok::Name(n)) if n == "true" => Value::Bool(true),
            Some(Tok::Name(n)) if n == "false" => Value::Bool(false),
            Some(Tok::Name(n)) if n == "null" => Value::Null,
            _ => {
                return Err(format!(
                    "at {at}: a value ('text', a number, true, false, null) expected"
                ));
            }
        };
        self.pos += 1;
        Ok(v)
    }

    fn list(&mut self) -> Result<Vec<Value>, String> {
        self.expect(&Tok::LBracket, "'['")?;
        let mut items = vec![self.literal()?];
        while self.peek() == Some(&Tok::Comma) {
            self.pos += 1;
            items.push(self.literal()?);
            if items.len() > MAX_LIST {
                return Err(format!("a list has at most {MAX_LIST} values"));
            }
        }
        self.expect(&Tok::RBracket, "']'")?;
        Ok(items)
    }
}

impl Filter {
    /// Parses a filter expression; the error names the position (in characters) and what was
    /// expected there.
    pub fn parse(s: &str) -> Result<Filter, String> {
        let chars = s.chars().count();
        if chars > MAX_FILTER_CHARS {
            return Err(format!("at most {MAX_FILTER_CHARS} characters"));
        }
        let toks = lex(s)?;
        if toks.is_empty() {
            return Err("the expression is empty".into());
        }
        let mut p = Parser {
            toks,
            pos: 0,
            end: chars,
        };
        let f = p.or(0)?;
        if p.pos != p.toks.len() {
            return Err(format!("at {}: 'and', 'or' or the end expected", p.at()));
        }
        Ok(f)
    }

    /// Whether the CloudEvent `event` satisfies the filter.
    pub fn matches(&self, event: &Value) -> bool {
        match self {
            Filter::Or(parts) => parts.iter().any(|p| p.matches(event)),
            Filter::And(parts) => parts.iter().all(|p| p.matches(event)),
            Filter::Not(inner) => !inner.matches(event),
            Filter::Exists(path) => lookup(event, path).is_some_and(|v| !v.is_null()),
            Filter::In(path, list) => {
                lookup(event, path).is_some_and(|v| list.iter().any(|l| same(v, l)))
            }
            Filter::Compare(path, op, lit) => {
                let Some(v) = lookup(event, path) else {
                    return *op == Op::Ne;
                };
                match op {
                    Op::Eq => same(v, lit),
                    Op::Ne => !same(v, lit),
                    _ => match order(v, lit) {
                        Some(o) => match op {
                            Op::Lt => o.is_lt(),
                            Op::Le => o.is_le(),
                            Op::Gt => o.is_gt(),
                            _ => o.is_ge(),
                        },
                        None => false,
                    },
                }
            }
        }
    }
}

fn lookup<'a>(event: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = event;
    for seg in path {
        v = match v {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "specversion": "1.0", "type": "device.registered.v1", "subject": "d-1",
            "tenantid": "t", "edition": "standard",
            "data": {"device_id": "d-1", "temp": 21.5, "tags": ["a", "b"], "meta": {"site": "north"}}
        })
    }

    fn check(expr: &str) -> bool {
        Filter::parse(expr).unwrap().matches(&event())
    }

    #[test]
    fn the_issue_example_and_friends() {
        assert!(check("edition in ['enterprise','standard']"));
        assert!(!check("edition in ['enterprise']"));
        assert!(check("edition not in ['free']"));
        assert!(check("data.temp > 20 and data.temp <= 21.5"));
        assert!(!check("data.temp < 20"));
        assert!(check("data.meta.site == \"north\" or data.missing == 1"));
        assert!(check("not (data.meta.site == 'south')"));
        assert!(check("data.tags.1 == 'b'"));
        assert!(check("data.meta exists and not data.nothing exists"));
        assert!(check("data.nothing != 3"));
        assert!(!check("data.nothing == 3"));
        assert!(!check("data.temp > 'x'"), "mixed types do not order");
        assert!(check("type == 'device.registered.v1'"));
        assert!(check("data.temp == 21.50"));
        assert!(check("subject == 'd\\'1' or subject == 'd-1'"));
    }

    #[test]
    fn mistakes_say_where() {
        for (bad, want) in [
            ("", "empty"),
            ("edition in 'x'", "'['"),
            ("edition ==", "value"),
            ("edition = 'x'", "at 8"),
            ("(edition == 'x'", "')'"),
            ("edition == 'x' extra", "'and', 'or'"),
            ("edition 'x'", "comparison"),
            ("'open", "not closed"),
            ("and == 1", "attribute"),
            ("a == 1e999", "finite"),
        ] {
            let e = Filter::parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        let deep = format!("{}a == 1{}", "(".repeat(40), ")".repeat(40));
        assert!(Filter::parse(&deep).unwrap_err().contains("nested"));
        let nots = format!("{}a == 1", "not ".repeat(40));
        assert!(Filter::parse(&nots).unwrap_err().contains("nested"));
    }

    #[test]
    fn backoff_grows_four_fold_under_its_ceiling() {
        let p = DeliveryPolicy::default();
        assert_eq!(p.backoff(2, 1.0), Duration::from_secs(5));
        assert_eq!(p.backoff(3, 1.0), Duration::from_secs(20));
        assert_eq!(
            p.backoff(30, 1.0),
            Duration::from_millis(p.backoff_max_ms.into())
        );
        assert_eq!(p.backoff(2, 0.0), Duration::from_millis(10));
        // the default policy's 8 attempts fit in its 24 hours even at the ceilings
        let total: Duration = (2..=8).map(|n| p.backoff(n, 1.0)).sum();
        assert!(total < Duration::from_secs(86_400), "{total:?}");
        let mut e = ValidationErrors::default();
        p.validate("delivery_policy", &mut e);
        assert!(e.is_empty());
        let bad = DeliveryPolicy {
            backoff_max_ms: 5,
            timeout_ms: 1,
            ..p
        };
        bad.validate("delivery_policy", &mut e);
        assert_eq!(e.0.len(), 2, "{e:?}");
    }

    #[test]
    fn decisions() {
        let p = DeliveryPolicy {
            max_attempts: 3,
            max_age_seconds: 3600,
            ..DeliveryPolicy::default()
        };
        let s = |code| Answer::Status {
            code,
            retry_after: None,
        };
        let age = Duration::ZERO;
        assert_eq!(decide(&p, 1, age, &s(204), 0.5), Decision::Delivered);
        assert_eq!(decide(&p, 1, age, &s(410), 0.5), Decision::Gone);
        assert!(matches!(
            decide(&p, 1, age, &s(500), 0.5),
            Decision::Retry(_)
        ));
        assert!(matches!(
            decide(&p, 1, age, &s(400), 0.5),
            Decision::Retry(_)
        ));
        assert!(matches!(
            decide(&p, 1, age, &Answer::Timeout, 0.5),
            Decision::Retry(_)
        ));
        assert!(matches!(
            decide(&p, 3, age, &s(500), 0.5),
            Decision::Dead(_)
        ));
        // Retry-After is honoured on 429 and 503, not on other statuses
        let ra = |code, secs| Answer::Status {
            code,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            decide(&p, 1, age, &ra(429, 120), 0.0),
            Decision::Retry(Duration::from_secs(120))
        );
        assert_eq!(
            decide(&p, 1, age, &ra(503, 7), 0.0),
            Decision::Retry(Duration::from_secs(7))
        );
        assert_eq!(
            decide(&p, 1, age, &ra(500, 120), 0.0),
            Decision::Retry(Duration::from_millis(10))
        );
        // a wait that passes max_age dead-letters now
        assert!(matches!(
            decide(&p, 1, age, &ra(429, 7200), 0.0),
            Decision::Dead(m) if m.contains("max_age")
        ));
        assert_eq!(Answer::Timeout.class(), "timeout");
        assert_eq!(s(503).class(), "5xx");
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,80}") {
            let _ = Filter::parse(&s);
        }

        #[test]
        fn parsing_tokens_never_panics(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("a"), Just("data.x"), Just("=="), Just("!="), Just("<"), Just("in"),
                    Just("not"), Just("and"), Just("or"), Just("("), Just(")"), Just("["),
                    Just("]"), Just(","), Just("'s'"), Just("1.5"), Just("exists"), Just("null"),
                ],
                0..24,
            )
        ) {
            if let Ok(f) = Filter::parse(&parts.join(" ")) {
                let _ = f.matches(&json!({"a": 1, "data": {"x": "s"}}));
            }
        }

        #[test]
        fn backoff_stays_inside_the_policy(next in 2u32..40, unit in 0.0f64..1.0) {
            let p = DeliveryPolicy::default();
            let d = p.backoff(next, unit);
            prop_assert!(d <= Duration::from_millis(p.backoff_max_ms.into()));
            prop_assert!(d >= Duration::from_millis(10));
        }
    }
}
