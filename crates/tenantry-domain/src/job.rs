//! Background jobs: states, what happens after a failure, retry backoff, and schedules. No I/O: the
//! store applies these decisions atomically, the worker runtime supplies time and randomness.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a job is in its life.
///
/// ```text
/// scheduled ──(run_at reached)──▶ available ──claim──▶ running ──ok──▶ completed
///                                    ▲                  │  │
///                                    └──(backoff)── retryable ◀─ retryable error / lease expired
///                                                       │  └──▶ dead (permanent error, attempts exhausted)
///                     cancel (not finished) ──▶ cancelled;  retry / replay (dead, cancelled) ──▶ available
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Scheduled,
    Available,
    Running,
    Retryable,
    /// Held while its tenant is suspended or deleted; back in the queue when it is resumed or
    /// restored.
    Paused,
    Completed,
    Cancelled,
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        Self::Scheduled,
        Self::Available,
        Self::Running,
        Self::Retryable,
        Self::Paused,
        Self::Completed,
        Self::Cancelled,
        Self::Dead,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Available => "available",
            Self::Running => "running",
            Self::Retryable => "retryable",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Dead => "dead",
        }
    }

    /// Finished jobs never run again unless an operator retries or replays them.
    pub const fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Dead)
    }

    /// Waiting to be claimed (now or at `run_at`).
    pub const fn is_pending(self) -> bool {
        matches!(self, Self::Scheduled | Self::Available | Self::Retryable)
    }

    /// Not running and not finished: waiting to be claimed, or paused with its tenant.
    pub const fn is_queued(self) -> bool {
        self.is_pending() || matches!(self, Self::Paused)
    }

    /// Whether an operator may send the job back to the queue (`:retry`, replay).
    pub const fn can_retry(self) -> bool {
        matches!(
            self,
            Self::Dead | Self::Cancelled | Self::Retryable | Self::Scheduled
        )
    }

    /// Whether `:cancel` applies (a running job stops at its next heartbeat).
    pub const fn can_cancel(self) -> bool {
        !self.is_finished()
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|st| st.as_str()).collect();
                format!("unknown job state '{s}' ({})", known.join(", "))
            })
    }
}

/// Why an attempt ended without success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The handler said: try again later.
    Retryable,
    /// The handler said: this will never work.
    Permanent,
    /// The worker stopped heartbeating (crash, OOM kill, partition); counted as a failed attempt.
    LeaseExpired,
    /// No handler is registered for the kind on the worker that claimed it.
    UnknownKind,
}

impl FailureKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::Permanent => "permanent",
            Self::LeaseExpired => "lease_expired",
            Self::UnknownKind => "unknown_kind",
        }
    }
}

impl FromStr for FailureKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Self::Retryable,
            Self::Permanent,
            Self::LeaseExpired,
            Self::UnknownKind,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown error kind '{s}'"))
    }
}

/// One failed attempt, kept in the job's error history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptError {
    pub attempt: u32,
    pub kind: FailureKind,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// Longest error message kept per attempt (longer ones are cut on a character boundary).
pub const MAX_ERROR_MESSAGE: usize = 2_000;

impl AttemptError {
    pub fn new(attempt: u32, kind: FailureKind, message: &str, at: DateTime<Utc>) -> Self {
        let mut message = message.to_owned();
        if message.len() > MAX_ERROR_MESSAGE {
            let mut cut = MAX_ERROR_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        Self {
            attempt,
            kind,
            message,
            at,
        }
    }
}

/// How a kind is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter: a uniform delay in `[0, min(cap, base·2^(attempt-1))]`.
    /// `unit` is a random number in `[0, 1)` supplied by the caller.
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .base
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.cap)
            .min(self.cap);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// What a failed attempt leads to: back to the queue at a later time, or dead.
    pub fn after_failure(
        &self,
        attempt: u32,
        max_attempts: u32,
        kind: FailureKind,
        now: DateTime<Utc>,
        unit: f64,
    ) -> AfterFailure {
        if matches!(kind, FailureKind::Permanent | FailureKind::UnknownKind)
            || attempt >= max_attempts
        {
            return AfterFailure::Dead;
        }
        let delay = chrono::Duration::from_std(self.backoff(attempt, unit))
            .unwrap_or(chrono::Duration::MAX);
        AfterFailure::RetryAt(now + delay)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(DateTime<Utc>),
    Dead,
}

/// When a schedule fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScheduleSpec {
    /// A cron expression in UTC; 5 fields, or 6 with seconds first.
    Cron(String),
    Interval(Duration),
}

/// Why a schedule is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("'{0}' is not a cron expression: {1}")]
    Cron(String, String),
    #[error("interval_seconds must be between 1 and 31536000")]
    Interval,
    #[error("the cron expression never fires")]
    Never,
    #[error(
        "'{0}' has {1} fields: give 5 (minute hour day month weekday), 6 (seconds first) or an alias (@yearly, @monthly, @weekly, @daily, @hourly)"
    )]
    Fields(String, usize),
}

/// What is wrong with a cron expression, for the person who wrote it (the parser's own messages
/// name its types: "CronPattern contains illegal character").
fn cron_problem(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError;
    match e {
        CronError::EmptyPattern => "it is empty".to_owned(),
        CronError::InvalidPattern(_) => {
            "give 5 fields (minute hour day month weekday), 6 (seconds first) or an alias (@yearly, @monthly, @weekly, @daily, @hourly)".to_owned()
        }
        CronError::IllegalCharacters(m) => match m.split_once("character ") {
            Some((_, rest)) => format!("the character {rest} is not allowed (digits, '*', ',', '-', '/', and names such as MON or JAN)"),
            None => "it contains a character that is not allowed".to_owned(),
        },
        CronError::ComponentError(m) if m.contains("out of bounds") => match m.split_once('(') {
            Some((_, range)) => format!("a value is out of its field's range ({}", range.trim_end_matches('.')),
            None => "a value is out of its field's range".to_owned(),
        },
        CronError::ComponentError(_) => "a field has a value or step it cannot take".to_owned(),
        CronError::InvalidDate | CronError::InvalidTime | CronError::TimeSearchLimitExceeded => {
            "it never matches a real date and time".to_owned()
        }
    }
}

fn parse_cron(expr: &str) -> Result<croner::Cron, ScheduleError> {
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| ScheduleError::Cron(expr.to_owned(), cron_problem(&e)))?;
    // croner also takes a seventh field (years): refused, so that what runs is what is documented
    let fields = expr.split_whitespace().count();
    if !expr.trim_start().starts_with('@') && fields > 6 {
        return Err(ScheduleError::Fields(expr.trim().to_owned(), fields));
    }
    Ok(cron)
}

impl ScheduleSpec {
    pub fn cron(expr: &str) -> Result<Self, ScheduleError> {
        parse_cron(expr)?;
        Ok(Self::Cron(expr.trim().to_owned()))
    }

    pub fn interval_seconds(secs: u64) -> Result<Self, ScheduleError> {
        if !(1..=365 * 24 * 3600).contains(&secs) {
            return Err(ScheduleError::Interval);
        }
        Ok(Self::Interval(Duration::from_secs(secs)))
    }

    /// The first fire time strictly after `after`: a cron match in whole seconds (the matcher
    /// would carry `after`'s fraction of a second over); an interval's exactly one interval on,
    /// so that its rhythm never shrinks (whole seconds, as every interval schedule starts on one,
    /// except after a staggered catch-up).
    pub fn next_after(&self, after: DateTime<Utc>) -> Result<DateTime<Utc>, ScheduleError> {
        match self {
            Self::Interval(d) => {
                Ok(after + chrono::Duration::from_std(*d).map_err(|_| ScheduleError::Interval)?)
            }
            Self::Cron(expr) => parse_cron(expr)?
                .find_next_occurrence(&after, false)
                .map(whole_second)
                .map_err(|_| ScheduleError::Never),
        }
    }

    /// The shortest gap between two firings, as far as the next few fire times show (an
    /// interval's own length; a cron expression's smallest gap among its next 24 firings).
    pub fn shortest_gap(&self, from: DateTime<Utc>) -> Result<Duration, ScheduleError> {
        match self {
            Self::Interval(d) => Ok(*d),
            Self::Cron(_) => {
                let mut at = self.next_after(from)?;
                let mut gap = Duration::MAX;
                for _ in 0..24 {
                    let Ok(next) = self.next_after(at) else { break };
                    gap = gap.min((next - at).to_std().unwrap_or(Duration::ZERO));
                    at = next;
                }
                Ok(gap)
            }
        }
    }

    /// The next fire time to store after a schedule fired at `fired`, never in the past relative to
    /// `now` (missed fire times are skipped, not backfilled).
    pub fn next_after_firing(
        &self,
        fired: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, ScheduleError> {
        let next = self.next_after(fired)?;
        if next > now {
            Ok(next)
        } else {
            self.next_after(now)
        }
    }

    /// The first fire time of a new schedule: an interval fires at once (never "one interval
    /// later"); a cron fires at its next match.
    pub fn first_fire(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, ScheduleError> {
        match self {
            Self::Interval(_) => Ok(whole_second(now)),
            Self::Cron(_) => self.next_after(now),
        }
    }
}

/// `t` without its fraction of a second: fire times are whole seconds.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// At scheduler start-up: an overdue schedule fires once, now (plus its stagger offset), whatever
/// it missed while nothing was running — no backfill storm.
pub fn catch_up_fire_time(
    next_fire: DateTime<Utc>,
    now: DateTime<Utc>,
    stagger: Duration,
) -> DateTime<Utc> {
    if next_fire <= now {
        now + chrono::Duration::from_std(stagger).unwrap_or_default()
    } else {
        next_fire
    }
}

/// The unique key a schedule's firing is enqueued with: two schedulers firing the same time (split
/// brain) enqueue one job.
pub fn fire_key(schedule: &str, fire_time: DateTime<Utc>) -> String {
    format!(
        "schedule:{schedule}:{}",
        fire_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn fire_times_are_whole_seconds_and_fields_are_checked() {
        let created: DateTime<Utc> = "2026-12-01T10:00:00.200750Z".parse().unwrap();
        let nightly = ScheduleSpec::cron("0 3 * * *").unwrap();
        assert_eq!(
            nightly.first_fire(created).unwrap(),
            "2026-12-02T03:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let every = ScheduleSpec::interval_seconds(60).unwrap();
        let first = every.first_fire(created).unwrap();
        assert_eq!(first.timestamp_subsec_nanos(), 0);
        assert!(first <= created, "an interval schedule fires at once");
        assert_eq!(every.next_after(first).unwrap().timestamp_subsec_nanos(), 0);
        // after a staggered catch-up (a fraction), the rhythm keeps the interval exactly
        let odd: DateTime<Utc> = "2026-12-01T10:00:10.600Z".parse().unwrap();
        let next = every.next_after(odd).unwrap();
        assert_eq!(
            next,
            "2026-12-01T10:01:10.600Z".parse::<DateTime<Utc>>().unwrap()
        );
        // 7 fields (a year) are refused; the aliases are fine
        assert!(matches!(
            ScheduleSpec::cron("0 0 3 * * * 2027"),
            Err(ScheduleError::Fields(_, 7))
        ));
        for alias in ["@yearly", "@monthly", "@weekly", "@daily", "@hourly"] {
            assert!(ScheduleSpec::cron(alias).is_ok(), "{alias}");
        }
        assert_eq!(
            ScheduleSpec::cron("* * * * * *")
                .unwrap()
                .shortest_gap(created)
                .unwrap(),
            Duration::from_secs(1)
        );
        assert_eq!(
            ScheduleSpec::cron("*/5 * * * *")
                .unwrap()
                .shortest_gap(created)
                .unwrap(),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn states_round_trip_and_classify() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>(), Ok(s));
            assert!(!(s.is_finished() && s.is_pending()));
        }
        assert!(JobState::Dead.can_retry() && !JobState::Completed.can_retry());
        assert!(JobState::Running.can_cancel() && !JobState::Dead.can_cancel());
        assert!("done".parse::<JobState>().is_err());
    }

    #[test]
    fn permanent_errors_and_exhausted_attempts_are_dead() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        assert_eq!(
            p.after_failure(1, 5, FailureKind::Permanent, now, 0.5),
            AfterFailure::Dead
        );
        assert_eq!(
            p.after_failure(5, 5, FailureKind::Retryable, now, 0.5),
            AfterFailure::Dead
        );
        assert_eq!(
            p.after_failure(5, 5, FailureKind::LeaseExpired, now, 0.5),
            AfterFailure::Dead
        );
        assert!(matches!(
            p.after_failure(2, 5, FailureKind::LeaseExpired, now, 0.5),
            AfterFailure::RetryAt(at) if at >= now
        ));
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let e = AttemptError::new(1, FailureKind::Retryable, &"é".repeat(3000), Utc::now());
        assert!(e.message.len() <= MAX_ERROR_MESSAGE + '…'.len_utf8());
        assert!(e.message.ends_with('…'));
    }

    proptest! {
        #[test]
        fn backoff_stays_within_the_jittered_exponential_ceiling(attempt in 1u32..100, unit in 0.0f64..1.0, base_ms in 1u64..10_000, cap_s in 1u64..3600) {
            let p = RetryPolicy { max_attempts: 100, base: Duration::from_millis(base_ms), cap: Duration::from_secs(cap_s) };
            let d = p.backoff(attempt, unit);
            prop_assert!(d <= p.cap);
            let ceiling = Duration::from_millis(base_ms).saturating_mul(1u32 << (attempt - 1).min(31)).min(p.cap);
            prop_assert!(d <= ceiling);
        }

        #[test]
        fn next_fire_is_always_in_the_future(secs in 1u64..100_000, fired_ago in 0i64..1_000_000) {
            let now = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
            let spec = ScheduleSpec::interval_seconds(secs).unwrap();
            let fired = now - chrono::Duration::seconds(fired_ago);
            prop_assert!(spec.next_after_firing(fired, now).unwrap() > now);
        }
    }

    #[test]
    fn cron_with_and_without_seconds() {
        let every_5_min = ScheduleSpec::cron("*/5 * * * *").unwrap();
        assert_eq!(
            every_5_min.next_after(t("2026-11-24T10:02:10Z")).unwrap(),
            t("2026-11-24T10:05:00Z")
        );
        let every_second = ScheduleSpec::cron("* * * * * *").unwrap();
        assert_eq!(
            every_second.next_after(t("2026-11-24T10:02:10Z")).unwrap(),
            t("2026-11-24T10:02:11Z")
        );
        assert!(matches!(
            ScheduleSpec::cron("every tuesday"),
            Err(ScheduleError::Cron(..))
        ));
        assert_eq!(
            ScheduleSpec::interval_seconds(0),
            Err(ScheduleError::Interval)
        );
    }

    #[test]
    fn new_interval_schedules_fire_at_once_and_overdue_ones_once_at_start() {
        let now = t("2026-11-24T10:00:00Z");
        let hourly = ScheduleSpec::interval_seconds(3600).unwrap();
        assert_eq!(hourly.first_fire(now).unwrap(), now);
        // down for a day: one firing now (+ stagger), not 24
        let overdue = now - chrono::Duration::hours(24);
        assert_eq!(
            catch_up_fire_time(overdue, now, Duration::from_secs(2)),
            now + chrono::Duration::seconds(2)
        );
        let future = now + chrono::Duration::minutes(5);
        assert_eq!(catch_up_fire_time(future, now, Duration::ZERO), future);
        assert_eq!(
            fire_key("nightly", now),
            "schedule:nightly:2026-11-24T10:00:00.000Z"
        );
    }
}
