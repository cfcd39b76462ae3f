//! A quantile of a histogram's buckets, estimated as Prometheus's `histogram_quantile`
//! does: find the bucket the rank falls in and interpolate linearly inside it.

/// One bucket of a cumulative histogram: how many observations were at most
/// `upper_bound`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bucket {
    /// The bucket's `le`, in seconds (`+Inf` for the last).
    pub(super) upper_bound: f64,
    /// Observations at most `upper_bound` (cumulative).
    pub(super) count: f64,
}

/// A quantile estimated from buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Quantile {
    /// The estimate, in seconds.
    pub(super) seconds: f64,
    /// Whether the rank fell in the `+Inf` bucket: the estimate is then the highest
    /// finite bound, and the true value is above it.
    pub(super) beyond_last_bound: bool,
}

/// The `q` quantile (0 to 1) of `buckets` (cumulative, in any order), or `None` when
/// there is no estimate: nothing observed, no `+Inf` bucket, fewer than two buckets.
///
/// As Prometheus: buckets with the same bound are added together, a count lower than
/// the one before is raised to it (cumulative counts cannot fall), the lower bound of
/// the first bucket is 0 (or the bucket's own bound when that is not positive), and a
/// rank in the `+Inf` bucket gives the highest finite bound.
pub(super) fn histogram_quantile(q: f64, buckets: &[Bucket]) -> Option<Quantile> {
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    let mut sorted: Vec<Bucket> = buckets
        .iter()
        .copied()
        .filter(|bucket| !bucket.upper_bound.is_nan() && bucket.count.is_finite())
        .collect();
    sorted.sort_by(|a, b| a.upper_bound.total_cmp(&b.upper_bound));
    let mut merged: Vec<Bucket> = Vec::with_capacity(sorted.len());
    for bucket in sorted {
        match merged.last_mut() {
            Some(last) if last.upper_bound == bucket.upper_bound => last.count += bucket.count,
            _ => merged.push(bucket),
        }
    }
    let mut highest = f64::NEG_INFINITY;
    for bucket in &mut merged {
        highest = highest.max(bucket.count);
        bucket.count = highest;
    }
    let last = merged.last()?;
    if last.upper_bound != f64::INFINITY || merged.len() < 2 {
        return None;
    }
    let observations = last.count;
    if observations <= 0.0 {
        return None;
    }
    let mut rank = q * observations;
    let finite = &merged[..merged.len() - 1];
    let index = finite
        .iter()
        .position(|bucket| bucket.count >= rank)
        .unwrap_or(finite.len());
    if index == finite.len() {
        return Some(Quantile {
            seconds: finite.last()?.upper_bound,
            beyond_last_bound: true,
        });
    }
    let bucket = merged[index];
    if index == 0 && bucket.upper_bound <= 0.0 {
        return Some(Quantile {
            seconds: bucket.upper_bound,
            beyond_last_bound: false,
        });
    }
    let mut count = bucket.count;
    let start = match index.checked_sub(1).and_then(|before| merged.get(before)) {
        Some(before) => {
            count -= before.count;
            rank -= before.count;
            before.upper_bound
        }
        None => 0.0,
    };
    let seconds = start + (bucket.upper_bound - start) * (rank / count);
    seconds.is_finite().then_some(Quantile {
        seconds,
        beyond_last_bound: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        pairs
            .iter()
            .map(|&(upper_bound, count)| Bucket { upper_bound, count })
            .collect()
    }

    fn close(actual: Option<Quantile>, expected: f64) {
        let actual = actual.expect("an estimate");
        assert!(
            (actual.seconds - expected).abs() < 1e-9,
            "{actual:?} != {expected}"
        );
    }

    #[test]
    fn interpolates_inside_the_bucket_of_the_rank() {
        // 100 observations: 50 at most 0.1 s, 90 at most 0.5 s, all at most 1 s.
        let histogram = buckets(&[
            (0.1, 50.0),
            (0.5, 90.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ]);
        // Rank 99 is the 9th of the 10 in (0.5, 1]: 0.5 + 0.5 * 9/10.
        close(histogram_quantile(0.99, &histogram), 0.95);
        // Rank 50 is the last of the first bucket, which starts at 0.
        close(histogram_quantile(0.5, &histogram), 0.1);
        // Rank 25: half-way through (0, 0.1].
        close(histogram_quantile(0.25, &histogram), 0.05);
        // Rank 70: half-way through (0.1, 0.5].
        close(histogram_quantile(0.7, &histogram), 0.3);
    }

    #[test]
    fn matches_prometheus_on_warrens_buckets() {
        // One message in the 5 ms bucket: Prometheus gives 0.005 * 0.99.
        let mut histogram: Vec<Bucket> = warren_runtime::metrics::DURATION_BUCKETS
            .iter()
            .map(|&upper_bound| Bucket {
                upper_bound,
                count: 1.0,
            })
            .collect();
        histogram.push(Bucket {
            upper_bound: f64::INFINITY,
            count: 1.0,
        });
        close(histogram_quantile(0.99, &histogram), 0.00495);
    }

    #[test]
    fn a_rank_beyond_every_finite_bound_gives_the_highest_one() {
        let histogram = buckets(&[(0.1, 1.0), (10.0, 1.0), (f64::INFINITY, 5.0)]);
        let estimate = histogram_quantile(0.99, &histogram).expect("an estimate");
        assert_eq!(estimate.seconds, 10.0);
        assert!(estimate.beyond_last_bound);
    }

    #[test]
    fn no_estimate_without_observations_or_an_infinite_bucket() {
        assert_eq!(histogram_quantile(0.99, &[]), None);
        assert_eq!(
            histogram_quantile(0.99, &buckets(&[(0.1, 0.0), (f64::INFINITY, 0.0)])),
            None,
            "nothing observed"
        );
        assert_eq!(
            histogram_quantile(0.99, &buckets(&[(0.1, 3.0), (1.0, 5.0)])),
            None,
            "no +Inf bucket"
        );
        assert_eq!(
            histogram_quantile(0.99, &buckets(&[(f64::INFINITY, 5.0)])),
            None,
            "one bucket"
        );
        assert_eq!(
            histogram_quantile(1.5, &buckets(&[(1.0, 1.0), (f64::INFINITY, 1.0)])),
            None
        );
    }

    #[test]
    fn buckets_are_sorted_merged_and_made_monotonic() {
        // Out of order, one bound twice (two instances), one count that fell.
        let histogram = buckets(&[
            (f64::INFINITY, 100.0),
            (0.5, 45.0),
            (0.1, 30.0),
            (0.5, 45.0),
            (0.1, 20.0),
            (1.0, 80.0),
        ]);
        // Merged: 0.1 → 50, 0.5 → 90, 1.0 → 80 raised to 90, +Inf → 100.
        close(histogram_quantile(0.5, &histogram), 0.1);
        let estimate = histogram_quantile(0.95, &histogram).expect("an estimate");
        assert!(estimate.beyond_last_bound);
        assert_eq!(estimate.seconds, 1.0);
        // Garbage counts do not make an estimate out of nothing, nor panic.
        let garbage = buckets(&[(f64::NAN, 5.0), (1.0, f64::NAN), (f64::INFINITY, 0.0)]);
        assert_eq!(histogram_quantile(0.99, &garbage), None);
    }

    #[test]
    fn a_first_bucket_at_or_below_zero_is_its_own_bound() {
        let histogram = buckets(&[(-1.0, 10.0), (1.0, 10.0), (f64::INFINITY, 10.0)]);
        close(histogram_quantile(0.5, &histogram), -1.0);
    }
}
