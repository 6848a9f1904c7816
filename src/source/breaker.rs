//! A circuit breaker per source: when too many of a database's statements fail the way a
//! struggling database fails (cannot connect, connection lost, timeouts), Portico sends it
//! nothing for a cool-down, then lets a few probes through before trusting it again.
//!
//! [`BreakerSource`] wraps a driver, so every statement any part sends (reads, counts,
//! aggregates, writes, procedure calls, change polls, snapshot reads, readiness pings)
//! passes the one [`CircuitBreaker`] of its source.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::call::{Call, CallOutcome};
use super::select::{Aggregate, Select};
use super::write::{Step, WriteOutcome};
use super::{Dialect, RowCount, Rows, Source, SourceError, SourceFuture, Statement};
use crate::config::BreakerConfig;
use crate::telemetry::metrics::{BreakerLabels, SourceLabels, SourceMetrics};

/// Whether a source's statements reach its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Statements go through; their outcomes are counted.
    Closed,
    /// Nothing is sent until the cool-down ends.
    Open,
    /// A few probes go through; the others are refused until they tell.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The gauge's value: 0 closed, 1 half-open, 2 open.
    pub fn level(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// What a finished statement says of the database's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The database answered (rows, or a refusal of this statement: a constraint, a syntax
    /// or conversion error).
    Answered,
    /// The database is struggling: cannot connect, connection lost, a timeout.
    Failed,
    /// Says nothing of the database: Portico's own shedding (`source-busy`), a request the
    /// driver cannot do, a statement abandoned by its caller.
    Neutral,
}

impl Outcome {
    /// The outcome a statement's result stands for.
    pub fn of<T>(result: &Result<T, SourceError>) -> Self {
        match result {
            Ok(_) => Outcome::Answered,
            Err(SourceError::Unavailable { .. } | SourceError::Timeout { .. }) => Outcome::Failed,
            Err(SourceError::Constraint { .. } | SourceError::Query { .. }) => Outcome::Answered,
            Err(
                SourceError::Busy { .. }
                | SourceError::BreakerOpen { .. }
                | SourceError::Unsupported { .. },
            ) => Outcome::Neutral,
        }
    }
}

/// How many slices the window is kept in: outcomes leave it a tenth of a window at a time.
const SLICES: usize = 10;

/// Outcomes counted in one slice of the window.
#[derive(Debug, Clone, Copy, Default)]
struct Slice {
    /// Which slice since the epoch this one holds.
    index: u128,
    answered: u32,
    failed: u32,
}

/// The outcomes of the last `length`, in fixed slices (bounded memory at any rate).
#[derive(Debug)]
struct Window {
    epoch: Instant,
    slice_nanos: u128,
    slices: [Slice; SLICES],
}

impl Window {
    fn new(length: Duration, epoch: Instant) -> Self {
        Self {
            epoch,
            slice_nanos: (length.as_nanos() / SLICES as u128).max(1),
            slices: [Slice::default(); SLICES],
        }
    }

    fn index(&self, now: Instant) -> u128 {
        now.saturating_duration_since(self.epoch).as_nanos() / self.slice_nanos
    }

    fn record(&mut self, now: Instant, failed: bool) {
        let index = self.index(now);
        let slice = &mut self.slices[(index % SLICES as u128) as usize];
        if slice.index != index {
            *slice = Slice {
                index,
                ..Slice::default()
            };
        }
        match failed {
            true => slice.failed = slice.failed.saturating_add(1),
            false => slice.answered = slice.answered.saturating_add(1),
        }
    }

    /// `(statements, failed)` within the window ending at `now`.
    fn totals(&self, now: Instant) -> (u32, u32) {
        let index = self.index(now);
        self.slices
            .iter()
            .filter(|s| s.index <= index && s.index + SLICES as u128 > index)
            .fold((0u32, 0u32), |(all, failed), s| {
                (
                    all.saturating_add(s.answered).saturating_add(s.failed),
                    failed.saturating_add(s.failed),
                )
            })
    }

    fn clear(&mut self) {
        self.slices = [Slice::default(); SLICES];
    }
}

/// Where the breaker is, with what each state keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, answered: u32 },
}

/// Leave to send one statement, from the breaker state it was given in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Outcomes of passes from an earlier state are not counted in the next.
    generation: u64,
}

/// A state entered, and why (for the log line).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The state entered.
    pub entered: BreakerState,
    /// What led there.
    pub reason: String,
}

/// The breaker's state machine, on a clock its caller passes in.
#[derive(Debug)]
pub struct Machine {
    settings: BreakerConfig,
    phase: Phase,
    window: Window,
    generation: u64,
}

impl Machine {
    /// A closed breaker with `settings`, its window starting at `now`.
    pub fn new(settings: BreakerConfig, now: Instant) -> Self {
        Self {
            settings,
            phase: Phase::Closed,
            window: Window::new(settings.window, now),
            generation: 0,
        }
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// A pass for one statement, or how long to wait; and the state entered, if the cool-down
    /// just ended.
    pub fn admit(&mut self, now: Instant) -> (Result<Pass, Duration>, Option<Transition>) {
        if !self.settings.enabled {
            return (Ok(self.pass()), None);
        }
        let mut entered = None;
        if let Phase::Open { until } = self.phase {
            if now < until {
                return (Err(until - now), None);
            }
            entered = Some(self.enter(
                Phase::HalfOpen {
                    in_flight: 0,
                    answered: 0,
                },
                "the cool-down ended; probing the database".into(),
            ));
        }
        let pass = match &mut self.phase {
            Phase::HalfOpen {
                in_flight,
                answered,
            } => {
                if *in_flight + *answered < self.settings.probes {
                    *in_flight += 1;
                    Ok(self.pass())
                } else {
                    // The probes tell within a statement's time; a second is a fair wait.
                    Err(Duration::from_secs(1))
                }
            }
            _ => Ok(self.pass()),
        };
        (pass, entered)
    }

    /// Counts the outcome of a statement sent with `pass`; the state entered, if any.
    pub fn finish(&mut self, pass: Pass, outcome: Outcome, now: Instant) -> Option<Transition> {
        if !self.settings.enabled || pass.generation != self.generation {
            return None;
        }
        match (&mut self.phase, outcome) {
            (Phase::Closed, Outcome::Neutral) | (Phase::Open { .. }, _) => None,
            (Phase::Closed, outcome) => {
                self.window.record(now, outcome == Outcome::Failed);
                let (all, failed) = self.window.totals(now);
                let crossed = all >= self.settings.min_statements
                    && f64::from(failed) >= self.settings.failure_rate * f64::from(all);
                (outcome == Outcome::Failed && crossed).then(|| {
                    self.open(
                        now,
                        format!(
                            "{failed} of the last {all} statements failed within {:?}",
                            self.settings.window
                        ),
                    )
                })
            }
            (Phase::HalfOpen { in_flight, .. }, Outcome::Neutral) => {
                *in_flight = in_flight.saturating_sub(1);
                None
            }
            (Phase::HalfOpen { .. }, Outcome::Failed) => {
                Some(self.open(now, "a probe failed".into()))
            }
            (
                Phase::HalfOpen {
                    in_flight,
                    answered,
                },
                Outcome::Answered,
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                *answered += 1;
                (*answered >= self.settings.probes).then(|| {
                    self.window.clear();
                    self.enter(
                        Phase::Closed,
                        format!("{} probe(s) answered", self.settings.probes),
                    )
                })
            }
        }
    }

    fn pass(&self) -> Pass {
        Pass {
            generation: self.generation,
        }
    }

    fn open(&mut self, now: Instant, reason: String) -> Transition {
        self.window.clear();
        let until = now + self.settings.cool_down;
        self.enter(Phase::Open { until }, reason)
    }

    fn enter(&mut self, phase: Phase, reason: String) -> Transition {
        self.phase = phase;
        self.generation += 1;
        Transition {
            entered: self.state(),
            reason,
        }
    }
}

/// One source's breaker: the state machine on the real clock, its metrics and log lines.
pub struct CircuitBreaker {
    source: String,
    cool_down: Duration,
    machine: Mutex<Machine>,
    state: Gauge,
    transitions: Family<BreakerLabels, Counter>,
    refused: Counter,
}

impl CircuitBreaker {
    /// A closed breaker for `source`, counting into `metrics`.
    pub fn new(source: &str, settings: BreakerConfig, metrics: &SourceMetrics) -> Self {
        let labels = SourceLabels {
            source: source.to_string(),
        };
        // Not set here: a reload builds the breakers of kept sources too, and drops them, while
        // the running one may be open. A new series starts at 0 (closed); the scrape sets it
        // from the breakers serving.
        let state = metrics.breaker_state.get_or_create_owned(&labels);
        let refused = metrics.breaker_refused.get_or_create_owned(&labels);
        // At 0 from the start, so alerts see the series before it counts.
        refused.inc_by(0);
        for entered in [
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Closed,
        ] {
            metrics
                .breaker_transitions
                .get_or_create(&BreakerLabels {
                    source: source.to_string(),
                    state: entered.as_str(),
                })
                .inc_by(0);
        }
        Self {
            source: source.to_string(),
            cool_down: settings.cool_down,
            machine: Mutex::new(Machine::new(settings, Instant::now())),
            state,
            transitions: metrics.breaker_transitions.clone(),
            refused,
        }
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        self.lock().state()
    }

    /// Leave to send one statement, or `BreakerOpen` with the wait left.
    pub fn admit(&self) -> Result<Ticket<'_>, SourceError> {
        let (pass, transition) = self.lock().admit(Instant::now());
        self.entered(transition);
        match pass {
            Ok(pass) => Ok(Ticket {
                breaker: self,
                pass: Some(pass),
            }),
            Err(wait) => {
                self.refused.inc();
                Err(SourceError::BreakerOpen {
                    source_name: self.source.clone(),
                    retry_after: Duration::from_secs(wait.as_secs_f64().ceil().max(1.0) as u64),
                })
            }
        }
    }

    fn finish(&self, pass: Pass, outcome: Outcome) {
        let transition = self.lock().finish(pass, outcome, Instant::now());
        self.entered(transition);
    }

    fn entered(&self, transition: Option<Transition>) {
        let Some(Transition { entered, reason }) = transition else {
            return;
        };
        self.state.set(entered.level());
        self.transitions
            .get_or_create(&BreakerLabels {
                source: self.source.clone(),
                state: entered.as_str(),
            })
            .inc();
        match entered {
            BreakerState::Open => {
                tracing::warn!(source = %self.source, %reason, cool_down = ?self.cool_down, "circuit breaker opened: no statements are sent to the source until the cool-down ends")
            }
            BreakerState::HalfOpen => {
                tracing::info!(source = %self.source, %reason, "circuit breaker half-open")
            }
            BreakerState::Closed => {
                tracing::warn!(source = %self.source, %reason, "circuit breaker closed: statements go to the source again")
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Machine> {
        // The machine is left consistent between its calls: a panic elsewhere does not spoil it.
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Leave for one statement; dropped unfinished (the caller went away), it counts as neutral.
pub struct Ticket<'a> {
    breaker: &'a CircuitBreaker,
    pass: Option<Pass>,
}

impl Ticket<'_> {
    /// Counts what `result` says of the database.
    pub fn finish<T>(mut self, result: &Result<T, SourceError>) {
        if let Some(pass) = self.pass.take() {
            self.breaker.finish(pass, Outcome::of(result));
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(pass) = self.pass.take() {
            self.breaker.finish(pass, Outcome::Neutral);
        }
    }
}

/// A source behind its circuit breaker: each call asks the breaker first and reports its
/// outcome after.
pub struct BreakerSource {
    inner: Arc<dyn Source>,
    breaker: CircuitBreaker,
}

impl BreakerSource {
    /// `inner` behind a breaker with `settings`.
    pub fn new(inner: Arc<dyn Source>, settings: BreakerConfig, metrics: &SourceMetrics) -> Self {
        let breaker = CircuitBreaker::new(inner.name(), settings, metrics);
        Self { inner, breaker }
    }

    /// Runs the call `work` makes when the breaker lets it through.
    fn guarded<'a, T: Send + 'a>(
        &'a self,
        work: impl FnOnce(&'a dyn Source) -> SourceFuture<'a, T> + Send + 'a,
    ) -> SourceFuture<'a, T> {
        Box::pin(async move {
            let ticket = self.breaker.admit()?;
            let result = work(&*self.inner).await;
            ticket.finish(&result);
            result
        })
    }
}

impl Source for BreakerSource {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    fn query(&self, statement: Statement) -> SourceFuture<'_, Rows> {
        self.guarded(move |inner| inner.query(statement))
    }

    fn write(&self, steps: Vec<Step>) -> SourceFuture<'_, WriteOutcome> {
        self.guarded(move |inner| inner.write(steps))
    }

    fn call(&self, call: Call) -> SourceFuture<'_, CallOutcome> {
        self.guarded(move |inner| inner.call(call))
    }

    fn ping(&self) -> SourceFuture<'_, ()> {
        self.guarded(|inner| inner.ping())
    }

    fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    fn count(&self, select: Select, estimate: bool) -> SourceFuture<'_, RowCount> {
        self.guarded(move |inner| inner.count(select, estimate))
    }

    fn aggregate(&self, aggregate: Aggregate) -> SourceFuture<'_, Rows> {
        self.guarded(move |inner| inner.aggregate(aggregate))
    }

    fn select(&self, select: Select) -> SourceFuture<'_, Rows> {
        self.guarded(move |inner| inner.select(select))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::select::Relation;

    fn settings() -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            failure_rate: 0.5,
            min_statements: 4,
            window: Duration::from_secs(10),
            cool_down: Duration::from_secs(5),
            probes: 2,
        }
    }

    /// Admits and finishes one statement with `outcome` at `now`.
    fn run(machine: &mut Machine, now: Instant, outcome: Outcome) -> Option<Transition> {
        let (pass, _) = machine.admit(now);
        machine.finish(pass.expect("admitted"), outcome, now)
    }

    fn opened(start: Instant) -> Machine {
        let mut machine = Machine::new(settings(), start);
        for _ in 0..3 {
            run(&mut machine, start, Outcome::Failed);
        }
        let t = run(&mut machine, start, Outcome::Failed).expect("opened");
        assert_eq!(t.entered, BreakerState::Open);
        machine
    }

    #[test]
    fn opens_at_the_failure_rate_once_the_window_holds_enough_statements() {
        let start = Instant::now();
        let mut machine = Machine::new(settings(), start);
        assert_eq!(run(&mut machine, start, Outcome::Failed), None);
        assert_eq!(run(&mut machine, start, Outcome::Answered), None);
        assert_eq!(
            run(&mut machine, start, Outcome::Answered),
            None,
            "1 of 3: below the minimum and the rate"
        );
        let t = run(&mut machine, start, Outcome::Failed).expect("2 of 4 failed: 0.5");
        assert_eq!(t.entered, BreakerState::Open);
        assert!(t.reason.contains("2 of the last 4"), "{}", t.reason);
        assert_eq!(machine.state(), BreakerState::Open);
    }

    #[test]
    fn neutral_outcomes_and_answers_below_the_rate_keep_it_closed() {
        let start = Instant::now();
        let mut machine = Machine::new(settings(), start);
        for _ in 0..20 {
            assert_eq!(run(&mut machine, start, Outcome::Neutral), None);
        }
        for _ in 0..3 {
            run(&mut machine, start, Outcome::Answered);
        }
        assert_eq!(run(&mut machine, start, Outcome::Failed), None, "1 of 4");
        assert_eq!(machine.state(), BreakerState::Closed);
    }

    #[test]
    fn failures_older_than_the_window_no_longer_count() {
        let start = Instant::now();
        let mut machine = Machine::new(settings(), start);
        for _ in 0..3 {
            run(&mut machine, start, Outcome::Failed);
        }
        let later = start + Duration::from_secs(11);
        assert_eq!(
            run(&mut machine, later, Outcome::Failed),
            None,
            "the three earlier failures left the window"
        );
        for _ in 0..2 {
            run(&mut machine, later, Outcome::Failed);
        }
        let t = run(
            &mut machine,
            later + Duration::from_secs(1),
            Outcome::Failed,
        );
        assert_eq!(t.map(|t| t.entered), Some(BreakerState::Open));
    }

    #[test]
    fn open_refuses_with_the_cool_down_left_then_lets_probes_through() {
        let start = Instant::now();
        let mut machine = opened(start);
        let (refused, _) = machine.admit(start + Duration::from_secs(2));
        assert_eq!(refused, Err(Duration::from_secs(3)));

        let after = start + Duration::from_secs(5);
        let (first, entered) = machine.admit(after);
        assert_eq!(entered.map(|t| t.entered), Some(BreakerState::HalfOpen));
        let (second, _) = machine.admit(after);
        let (third, _) = machine.admit(after);
        assert!(first.is_ok() && second.is_ok());
        assert_eq!(third, Err(Duration::from_secs(1)), "two probes at once");

        assert_eq!(
            machine.finish(first.unwrap(), Outcome::Answered, after),
            None
        );
        let (still, _) = machine.admit(after);
        assert!(still.is_err(), "an answered probe keeps its place");
        let closed = machine.finish(second.unwrap(), Outcome::Answered, after);
        assert_eq!(closed.map(|t| t.entered), Some(BreakerState::Closed));
        assert_eq!(
            run(&mut machine, after, Outcome::Failed),
            None,
            "closed with an empty window"
        );
    }

    #[test]
    fn a_failed_probe_opens_it_for_another_cool_down() {
        let start = Instant::now();
        let mut machine = opened(start);
        let after = start + Duration::from_secs(5);
        let (probe, _) = machine.admit(after);
        let (other, _) = machine.admit(after);
        let t = machine.finish(probe.unwrap(), Outcome::Failed, after);
        assert_eq!(t.map(|t| t.entered), Some(BreakerState::Open));
        assert_eq!(
            machine.finish(other.unwrap(), Outcome::Answered, after),
            None,
            "a probe of the earlier half-open state does not count"
        );
        let (refused, _) = machine.admit(after + Duration::from_secs(1));
        assert_eq!(refused, Err(Duration::from_secs(4)));
    }

    #[test]
    fn a_neutral_probe_frees_its_place() {
        let start = Instant::now();
        let mut machine = opened(start);
        let after = start + Duration::from_secs(5);
        let (first, _) = machine.admit(after);
        let (second, _) = machine.admit(after);
        machine.finish(first.unwrap(), Outcome::Neutral, after);
        let (third, _) = machine.admit(after);
        assert!(third.is_ok(), "the busy probe's place went to another");
        machine.finish(second.unwrap(), Outcome::Answered, after);
        let t = machine.finish(third.unwrap(), Outcome::Answered, after);
        assert_eq!(t.map(|t| t.entered), Some(BreakerState::Closed));
    }

    #[test]
    fn statements_of_the_closed_state_finishing_late_do_not_count_as_probes() {
        let start = Instant::now();
        let mut machine = Machine::new(settings(), start);
        let (late, _) = machine.admit(start);
        for _ in 0..4 {
            run(&mut machine, start, Outcome::Failed);
        }
        assert_eq!(machine.state(), BreakerState::Open);
        let after = start + Duration::from_secs(5);
        let (_probe, _) = machine.admit(after);
        assert_eq!(
            machine.finish(late.unwrap(), Outcome::Answered, after),
            None
        );
        let (second, _) = machine.admit(after);
        assert!(second.is_ok(), "the late answer took no probe's place");
        assert_eq!(machine.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn a_disabled_breaker_never_opens() {
        let start = Instant::now();
        let mut machine = Machine::new(
            BreakerConfig {
                enabled: false,
                ..settings()
            },
            start,
        );
        for _ in 0..50 {
            assert_eq!(run(&mut machine, start, Outcome::Failed), None);
        }
        assert_eq!(machine.state(), BreakerState::Closed);
    }

    /// A database that cannot be reached, counting what reaches it.
    struct Unreachable(std::sync::atomic::AtomicUsize);

    impl Unreachable {
        fn fail<T>(&self) -> SourceFuture<'_, T> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async {
                Err(SourceError::Unavailable {
                    source_name: "erp".into(),
                    detail: "08001".into(),
                })
            })
        }
    }

    impl Source for Unreachable {
        fn name(&self) -> &str {
            "erp"
        }
        fn dialect(&self) -> Dialect {
            Dialect::Postgres
        }
        fn query(&self, _: Statement) -> SourceFuture<'_, Rows> {
            self.fail()
        }
        fn write(&self, _: Vec<Step>) -> SourceFuture<'_, WriteOutcome> {
            self.fail()
        }
        fn call(&self, _: Call) -> SourceFuture<'_, CallOutcome> {
            self.fail()
        }
        fn ping(&self) -> SourceFuture<'_, ()> {
            self.fail()
        }
        fn count(&self, _: Select, _: bool) -> SourceFuture<'_, RowCount> {
            self.fail()
        }
        fn aggregate(&self, _: Aggregate) -> SourceFuture<'_, Rows> {
            self.fail()
        }
        fn select(&self, _: Select) -> SourceFuture<'_, Rows> {
            self.fail()
        }
    }

    /// Each kind of call through `source`, with whether it was refused by the open breaker.
    async fn every_call(source: &dyn Source) -> Vec<bool> {
        let select = || Select {
            relation: Relation::Table("JOBS".into()),
            columns: Vec::new(),
            filter: Vec::new(),
            order: Vec::new(),
            after: None,
            limit: 1,
            per_group: None,
        };
        let open = |e: SourceError| matches!(e, SourceError::BreakerOpen { .. });
        let statement = Statement {
            sql: "SELECT 1".into(),
            params: Vec::new(),
            columns: Vec::new(),
            max_rows: 1,
        };
        let call = Call {
            sql: "{CALL p()}".into(),
            params: Vec::new(),
            result_types: Vec::new(),
            max_rows: 1,
            commit: false,
        };
        let aggregate = Aggregate {
            relation: Relation::Table("JOBS".into()),
            filter: Vec::new(),
            groups: Vec::new(),
            measures: Vec::new(),
            limit: 1,
        };
        vec![
            source.query(statement).await.is_err_and(open),
            source.write(Vec::new()).await.is_err_and(open),
            source.call(call).await.is_err_and(open),
            source.ping().await.is_err_and(open),
            source.count(select(), true).await.is_err_and(open),
            source.aggregate(aggregate).await.is_err_and(open),
            source.select(select()).await.is_err_and(open),
        ]
    }

    #[tokio::test]
    async fn an_open_breaker_keeps_every_kind_of_statement_from_the_database() {
        let inner = Arc::new(Unreachable(Default::default()));
        let metrics = SourceMetrics::default();
        let source = BreakerSource::new(inner.clone(), settings(), &metrics);
        let labels = SourceLabels {
            source: "erp".into(),
        };
        assert_eq!(source.breaker_state(), BreakerState::Closed);
        // Seven failed calls, the fourth of which opens it.
        let refused = every_call(&source).await;
        assert_eq!(refused, [false, false, false, false, true, true, true]);
        assert_eq!(inner.0.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(source.breaker_state(), BreakerState::Open);
        assert_eq!(every_call(&source).await, [true; 7]);
        assert_eq!(
            inner.0.load(std::sync::atomic::Ordering::SeqCst),
            4,
            "nothing reached the database while open"
        );
        assert_eq!(metrics.breaker_state.get_or_create(&labels).get(), 2);
        assert_eq!(metrics.breaker_refused.get_or_create(&labels).get(), 10);
        let opened = BreakerLabels {
            source: "erp".into(),
            state: "open",
        };
        assert_eq!(metrics.breaker_transitions.get_or_create(&opened).get(), 1);
    }

    #[test]
    fn outcomes_tell_a_struggling_database_from_a_refused_statement() {
        let name = || "erp".to_string();
        let failed: [Result<(), SourceError>; 2] = [
            Err(SourceError::Unavailable {
                source_name: name(),
                detail: "08001".into(),
            }),
            Err(SourceError::Timeout {
                source_name: name(),
                timeout: Duration::from_secs(1),
            }),
        ];
        for result in &failed {
            assert_eq!(Outcome::of(result), Outcome::Failed, "{result:?}");
        }
        let answered: [Result<(), SourceError>; 2] = [
            Ok(()),
            Err(SourceError::Query {
                source_name: name(),
                detail: "22018".into(),
            }),
        ];
        for result in &answered {
            assert_eq!(Outcome::of(result), Outcome::Answered, "{result:?}");
        }
        let busy: Result<(), SourceError> = Err(SourceError::Busy {
            source_name: name(),
            retry_after: Duration::from_secs(1),
        });
        assert_eq!(Outcome::of(&busy), Outcome::Neutral);
    }
}
