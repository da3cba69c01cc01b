//! Bounded waiting, and the beat of the agent's long-running services: every
//! retry loop of the agent has a deadline, grows its
//! pause with jitter, and ends in an error that says what it waited for.

use std::time::{Duration, Instant};

/// Pauses between attempts start here and grow by a quarter up to
/// `MAX_PAUSE`: short first, because a local etcd is typically ready well
/// within a second (BENCHMARKS.md) and every extra pause is latency.
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// A wait says what it waits for, and the last answer, at least this often:
/// callers log a reason when it changes, and an operator watching a node
/// that has waited ten minutes for the same reason must still see it wait.
const SAY_EVERY: Duration = Duration::from_secs(30);

/// What one attempt concluded.
pub enum Attempt<T> {
    Done(T),
    /// Not yet; the reason is reported if the deadline passes.
    Retry(String),
}

#[derive(Debug, thiserror::Error)]
#[error("gave up after {waited:.1?} waiting for {what}; last answer: {last}")]
pub struct TimedOut {
    pub what: String,
    pub waited: Duration,
    pub last: String,
}

/// Calls `attempt` until it is done or `budget` has passed.
///
/// Jitter keeps nodes that booted together from probing in lockstep. The
/// budget is checked between attempts, never inside one: every attempt
/// bounds its own I/O (gateway calls and probes by their timeouts, a DNS
/// lookup by its deadline in `discovery::dns_srv`), so a wait ends at most
/// one attempt's bound past its budget.
pub fn retry<T>(
    what: &str,
    budget: Duration,
    attempt: impl FnMut() -> Attempt<T>,
) -> Result<T, TimedOut> {
    retry_steady(FIRST_PAUSE, Duration::ZERO, what, budget, attempt)
}

/// [`retry`] that pauses only `first` between attempts for the first
/// `steady_for`, then backs off as `retry` does: for a wait that usually
/// ends within a fraction of a second, where every pause is latency.
pub fn retry_steady<T>(
    first: Duration,
    steady_for: Duration,
    what: &str,
    budget: Duration,
    attempt: impl FnMut() -> Attempt<T>,
) -> Result<T, TimedOut> {
    let pace = Pace {
        first,
        steady_for,
        say_every: SAY_EVERY,
    };
    wait(pace, what, budget, attempt, &mut |waited, last| {
        tracing::info!(
            what,
            "still waiting for {what} after {}s; last answer: {last}",
            waited.as_secs()
        )
    })
}

/// How a wait paces its attempts and its reminders.
struct Pace {
    first: Duration,
    steady_for: Duration,
    say_every: Duration,
}

/// [`retry_steady`], with `say(waited, last)` called at most
/// `pace.say_every` apart while it waits.
fn wait<T>(
    pace: Pace,
    what: &str,
    budget: Duration,
    mut attempt: impl FnMut() -> Attempt<T>,
    say: &mut dyn FnMut(Duration, &str),
) -> Result<T, TimedOut> {
    let start = Instant::now();
    let mut said_at = Duration::ZERO;
    let mut pause = pace.first;
    loop {
        let last = match attempt() {
            Attempt::Done(value) => return Ok(value),
            Attempt::Retry(reason) => reason,
        };
        let waited = start.elapsed();
        if waited >= budget {
            return Err(TimedOut {
                what: what.to_owned(),
                waited,
                last,
            });
        }
        tracing::debug!(what, last = %last, "not yet, retrying");
        if waited - said_at >= pace.say_every {
            say(waited, &last);
            said_at = waited;
        }
        let jittered = pause.mul_f64(0.5 + fastrand::f64());
        std::thread::sleep(jittered.min(budget - waited));
        pause = next_pause(pause, waited, pace.steady_for);
    }
}

/// The pause after `pause`, `waited` into a wait that keeps its pace for
/// `steady_for`: a quarter longer once that has passed, up to `MAX_PAUSE`.
fn next_pause(pause: Duration, waited: Duration, steady_for: Duration) -> Duration {
    if waited < steady_for {
        pause
    } else {
        pause.mul_f64(1.25).min(MAX_PAUSE)
    }
}

/// What one beat of a periodic service came to.
pub enum Beat {
    Done,
    /// Not this time; logged when the reason is new.
    Missed(anyhow::Error),
    /// The service has nothing more to do.
    Stop,
}

/// Runs `beat` every `every` until it says stop or fails: a missed beat is
/// logged as `missed: <reason>` once per new reason and the next good one as
/// `again`, so a peer down for hours costs the journal two lines, not one
/// per beat.
pub fn every_beat(
    every: Duration,
    again: &str,
    missed: &str,
    mut beat: impl FnMut() -> anyhow::Result<Beat>,
) -> anyhow::Result<()> {
    let mut said = String::new();
    loop {
        match beat()? {
            Beat::Stop => return Ok(()),
            Beat::Done if !said.is_empty() => {
                tracing::info!("{again}");
                said.clear();
            }
            Beat::Done => {}
            Beat::Missed(e) => {
                let reason = format!("{e:#}");
                if reason != said {
                    tracing::warn!("{missed}: {reason}");
                    said = reason;
                }
            }
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_go_on_through_misses_until_told_to_stop_or_a_failure() {
        let mut beats = 0;
        let stopped = every_beat(Duration::ZERO, "again", "missed", || {
            beats += 1;
            Ok(match beats {
                1 | 2 => Beat::Missed(anyhow::anyhow!("down")),
                3 => Beat::Done,
                _ => Beat::Stop,
            })
        });
        assert!(stopped.is_ok());
        assert_eq!(beats, 4);
        let failed = every_beat(Duration::ZERO, "again", "missed", || anyhow::bail!("fatal"));
        assert_eq!(failed.unwrap_err().to_string(), "fatal");
    }

    #[test]
    fn pauses_keep_their_pace_then_grow_to_the_cap() {
        let ms = Duration::from_millis;
        let steady = Duration::from_secs(2);
        assert_eq!(next_pause(ms(4), ms(1999), steady), ms(4));
        assert_eq!(next_pause(ms(4), ms(2000), steady), ms(5));
        assert_eq!(next_pause(ms(20), ms(0), Duration::ZERO), ms(25));
        assert_eq!(next_pause(MAX_PAUSE, ms(0), Duration::ZERO), MAX_PAUSE);
    }

    #[test]
    fn returns_once_an_attempt_succeeds() {
        let mut calls = 0;
        let got = retry("three calls", Duration::from_secs(5), || {
            calls += 1;
            if calls < 3 {
                Attempt::Retry(format!("call {calls}"))
            } else {
                Attempt::Done(calls)
            }
        });
        assert_eq!(got.unwrap(), 3);
    }

    #[test]
    fn a_long_wait_says_what_it_waits_for_at_every_interval() {
        let pace = |say_every| Pace {
            first: Duration::from_millis(5),
            steady_for: Duration::from_secs(60),
            say_every,
        };
        let mut said: Vec<(Duration, String)> = Vec::new();
        let mut calls = 0;
        let waited = wait::<()>(
            pace(Duration::from_millis(100)),
            "peers",
            Duration::from_millis(550),
            || {
                calls += 1;
                Attempt::Retry(format!("down {calls}"))
            },
            &mut |waited, last| said.push((waited, last.to_owned())),
        );
        assert!(waited.is_err());
        // Five at most (100 ms apart in 550 ms); fewer only on a loaded machine.
        assert!((3..=5).contains(&said.len()), "{said:?}");
        for pair in said.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(gap >= Duration::from_millis(100), "{said:?}");
            assert!(gap < Duration::from_millis(400), "{said:?}");
        }
        assert!(said[0].1.starts_with("down "), "{said:?}");

        let mut quiet = 0;
        let _ = wait::<()>(
            pace(SAY_EVERY),
            "peers",
            Duration::from_millis(200),
            || Attempt::Retry("down".into()),
            &mut |_, _| quiet += 1,
        );
        assert_eq!(quiet, 0, "a short wait says nothing extra");
    }

    #[test]
    fn gives_up_with_the_last_reason_after_the_budget() {
        let start = Instant::now();
        let err = retry::<()>("nothing", Duration::from_millis(300), || {
            Attempt::Retry("still down".into())
        })
        .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        let text = err.to_string();
        assert!(
            text.contains("waiting for nothing") && text.contains("still down"),
            "{text}"
        );
    }
}
