//! Latency histograms, and the rounding of the numbers the summary shows.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The highest latency the histograms hold, in microseconds (an hour); longer ones are
/// recorded as this.
const HIGHEST_LATENCY_US: u64 = 3_600_000_000;

pub(super) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

pub(super) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_LATENCY_US, 3).expect("constant bounds are valid")
}

pub(super) fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> Option<f64> {
    (!histogram.is_empty()).then(|| ms(histogram.value_at_quantile(quantile)))
}

/// `count` events in `seconds`, as a rate; 0 over no time.
pub(super) fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// `value` rounded to `places` decimals, so the JSON reads well.
pub(super) fn round(value: f64, places: i32) -> f64 {
    let scale = 10_f64.powi(places);
    (value * scale).round() / scale
}

pub(super) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// `value` is `expected` to within the histograms' precision (3 digits).
#[cfg(test)]
pub(super) fn assert_close(value: Option<f64>, expected: f64) {
    let value = value.expect("a value");
    assert!(
        (value - expected).abs() <= expected * 0.002,
        "{value} is not {expected}"
    );
}
