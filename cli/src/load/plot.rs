//! The `--plot` picture: throughput and latency percentiles per second, as SVG.

use super::report::Summary;
use super::timeline::Bucket;

/// A last, partial second narrower than this is left out of the plot (not of the JSON):
/// it holds too few events to say anything.
pub(super) const MIN_PLOTTED_WIDTH_S: f64 = 0.25;

/// The SVG picture: requests and outcomes per second above, latency percentiles per
/// second below.
pub(super) fn render_plot(summary: &Summary) -> anyhow::Result<String> {
    use plotters::prelude::*;

    let dark_green = RGBColor(0, 140, 60);
    let grey = RGBColor(150, 150, 150);
    let all = &summary.per_second;
    let buckets = match all.split_last() {
        Some((last, rest)) if !rest.is_empty() && last.width_s < MIN_PLOTTED_WIDTH_S => rest,
        _ => all.as_slice(),
    };
    let end_s = all
        .last()
        .map_or(1.0, |last| last.second as f64 + last.width_s)
        .max(1.0);
    let series = |value: fn(&Bucket) -> Option<f64>| -> Vec<(f64, f64)> {
        buckets
            .iter()
            .filter_map(|bucket| {
                let middle = bucket.second as f64 + bucket.width_s / 2.0;
                value(bucket).map(|value| (middle, value))
            })
            .collect()
    };
    let completed = series(|bucket| (bucket.width_s > 0.0).then_some(bucket.completed_per_s));
    let sent = series(|bucket| bucket.per_second(bucket.sent));
    let timeouts = series(|bucket| bucket.per_second(bucket.timeouts));
    let p50 = series(|bucket| bucket.p50_ms);
    let p99 = series(|bucket| bucket.p99_ms);
    let top = |lines: &[&[(f64, f64)]]| {
        lines
            .iter()
            .flat_map(|line| line.iter().map(|&(_, y)| y))
            .fold(0.0_f64, f64::max)
            .max(1.0)
            * 1.1
    };
    let throughput_top = top(&[&completed, &sent, &timeouts]);
    let latency_top = top(&[&p50, &p99]);
    let title = format!(
        "warren load: {} ({:.0} outcomes/s, p99 {} ms)",
        summary.headline(),
        summary.throughput_per_s,
        summary
            .latency_ms
            .p99
            .map_or_else(|| "-".to_owned(), |p99| format!("{p99:.1}"))
    );
    let legend = |color: RGBColor| {
        move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 720)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(&title, ("sans-serif", 18))?;
        let (upper, lower) = root.split_vertically(340);

        let mut chart = ChartBuilder::on(&upper)
            .caption("requests and outcomes per second", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..end_s, 0.0..throughput_top)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc("per second")
            .y_label_formatter(&|value| format!("{value:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        chart
            .draw_series(LineSeries::new(sent, grey.stroke_width(2)).point_size(2))?
            .label("sent")
            .legend(legend(grey));
        chart
            .draw_series(LineSeries::new(completed, BLUE.stroke_width(2)).point_size(3))?
            .label("outcomes")
            .legend(legend(BLUE));
        if summary.outcomes.timeout > 0 {
            chart
                .draw_series(LineSeries::new(timeouts, RED.stroke_width(2)).point_size(3))?
                .label("timeouts")
                .legend(legend(RED));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;

        let mut chart = ChartBuilder::on(&lower)
            .caption("latency, publish to outcome", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..end_s, 0.0..latency_top)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc("milliseconds")
            .light_line_style(WHITE)
            .draw()?;
        chart
            .draw_series(LineSeries::new(p99, RED.stroke_width(2)).point_size(3))?
            .label("p99")
            .legend(legend(RED));
        chart
            .draw_series(LineSeries::new(p50, dark_green.stroke_width(2)).point_size(3))?
            .label("p50")
            .legend(legend(dark_green));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::load::args::parse_args;
    use crate::load::run_state::Run;
    use crate::load::shape::Shape;
    use crate::load::timeline::Timeline;

    fn summary_of(buckets: Vec<Bucket>) -> Summary {
        let args = parse_args(&["--inflight", "10"]).expect("valid");
        let mut run = Run::new(
            Shape::Inflight { inflight: 10 },
            3,
            args.timeout,
            Instant::now(),
        );
        run.counts.results = 3;
        let ended = run.started + Duration::from_secs(2);
        let mut summary = Summary::of(
            run,
            &args,
            300,
            2,
            warren_runtime::OutcomeRecovery::OriginatorResends,
            ended,
        );
        summary.per_second = buckets;
        summary
    }

    #[test]
    fn the_plot_is_an_svg_with_lines_and_the_table_reads() {
        let mut timeline = Timeline::new();
        for millis in (0..3_000).step_by(10) {
            let at = Duration::from_millis(millis);
            timeline.record_sent(at);
            timeline.record_outcome(at, Duration::from_micros(500 + millis * 7));
        }
        let summary = summary_of(timeline.finish(Duration::from_millis(3_000)));
        let svg = render_plot(&summary).expect("a plot");
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("<polyline"), "{svg}");
        assert!(svg.contains("p99") && svg.contains("outcomes"));

        let table = summary.table();
        assert!(table.contains("3 results, 0 faults, 0 timeouts"), "{table}");
        assert!(table.contains("p99.9"), "{table}");
        let json: serde_json::Value =
            serde_json::to_value(&summary).expect("the summary serializes");
        assert_eq!(json["shape"]["kind"], "inflight");
        assert_eq!(json["outcomes"]["result"], 3);
        assert!(json.get("prefill").is_none());
    }

    #[test]
    fn a_plot_of_a_run_without_outcomes_still_draws() {
        let svg = render_plot(&summary_of(Vec::new())).expect("a plot");
        assert!(svg.contains("<svg"));
    }
}
