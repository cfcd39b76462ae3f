//! How restarts of a crashed worker are spaced: exponential, with jitter, from backon.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// How restarts are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The longest first delay; restart `n` (from 0) waits at most
    /// `initial_delay * 2^n`.
    pub initial_delay: Duration,
    /// No delay is longer than this.
    pub maximum_delay: Duration,
    /// A child that stayed up this long counts as healthy: its next restart starts over
    /// from `initial_delay`.
    pub stable_uptime: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(250),
            maximum_delay: Duration::from_secs(30),
            stable_uptime: Duration::from_secs(60),
        }
    }
}

impl BackoffPolicy {
    /// Fresh delays: restart `n` waits between half and all of
    /// `min(initial_delay * 2^n, maximum_delay)`, so children that crashed together
    /// (say, the broker went away) do not all come back at the same instant. backon's
    /// jitter adds up to one delay to the delay, so it is given half of each.
    fn delays(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.initial_delay / 2)
            .with_max_delay(self.maximum_delay / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// The restart delays of one child.
#[derive(Debug)]
pub struct RestartBackoff {
    policy: BackoffPolicy,
    delays: ExponentialBackoff,
}

impl RestartBackoff {
    /// A backoff that has not restarted anything yet.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            delays: policy.delays(),
        }
    }

    /// The delay before restarting a child that ran for `uptime` and exited.
    pub fn delay_after_exit(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.policy.stable_uptime {
            self.delays = self.policy.delays();
        }
        // The delays never run out (`without_max_times`); the cap is the fallback.
        self.delays.next().unwrap_or(self.policy.maximum_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `delay` is within the jitter of `ceiling`: `[ceiling / 2, ceiling]`.
    fn within(delay: Duration, ceiling: Duration) -> bool {
        delay >= ceiling / 2 && delay <= ceiling
    }

    #[test]
    fn backoff_doubles_from_250_milliseconds_up_to_30_seconds() {
        let mut backoff = RestartBackoff::new(BackoffPolicy::default());
        let ceilings = [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
        for ceiling in ceilings.map(Duration::from_millis) {
            let delay = backoff.delay_after_exit(Duration::from_secs(1));
            assert!(within(delay, ceiling), "{delay:?} vs {ceiling:?}");
        }
        for _ in 0..1000 {
            let delay = backoff.delay_after_exit(Duration::from_secs(1));
            assert!(within(delay, Duration::from_secs(30)), "{delay:?}");
        }
    }

    #[test]
    fn backoff_grows_while_crashing_and_resets_after_a_stable_run() {
        let mut backoff = RestartBackoff::new(BackoffPolicy::default());
        let short_run = Duration::from_secs(1);
        for ceiling in [250, 500, 1000].map(Duration::from_millis) {
            let delay = backoff.delay_after_exit(short_run);
            assert!(within(delay, ceiling), "{delay:?} vs {ceiling:?}");
        }
        let stable_run = Duration::from_secs(60);
        let delay = backoff.delay_after_exit(stable_run);
        assert!(within(delay, Duration::from_millis(250)), "{delay:?}");
        let delay = backoff.delay_after_exit(short_run);
        assert!(within(delay, Duration::from_millis(500)), "{delay:?}");
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let delays: Vec<Duration> = (0..50)
            .map(|_| RestartBackoff::new(BackoffPolicy::default()).delay_after_exit(Duration::ZERO))
            .collect();
        let first = delays[0];
        assert!(delays.iter().any(|delay| *delay != first), "{delays:?}");
    }
}
