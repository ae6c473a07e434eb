//! The traffic picture on a vault's overview: requests per interval, stacked by status class,
//! drawn as an SVG the server renders (no charting script; the page's CSP allows none).
//!
//! [`traffic_svg`] is a pure function from the intervals to markup. Every piece of text in
//! it goes through [`escape`], so the caller may place the result in a page unescaped. The
//! colours are the stylesheet's (`.s2xx` ... `.s5xx`, `.sother` in `console.css`), so the
//! bars match the swatches of the legend and follow dark mode.

use std::fmt::Write as _;

/// The status classes, bottom to top of a bar: the CSS class and the word a person reads.
pub(crate) const CLASSES: [(&str, &str); 5] = [
    ("s2xx", "2xx"),
    ("s3xx", "3xx"),
    ("s4xx", "4xx"),
    ("s5xx", "5xx"),
    ("sother", "other"),
];

/// One bar: when its interval starts, as a person reads it (`label` in full for the bar's
/// tooltip, `tick` short for the time axis), and its requests per class, in the order of
/// [`CLASSES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interval {
    pub label: String,
    pub tick: String,
    pub counts: [u64; 5],
}

impl Interval {
    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The drawing's size in its own units; the stylesheet scales it to the page's width.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
/// Room for the count labels on the left and the time labels below.
const LEFT: f64 = 52.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;
/// How many time labels the axis carries.
const TICKS: usize = 4;

/// The picture of `intervals`, oldest first, titled `title` (its accessible name).
pub(crate) fn traffic_svg(intervals: &[Interval], title: &str) -> String {
    let plot_width = WIDTH - LEFT;
    let plot_height = HEIGHT - BOTTOM - TOP;
    let top = nice_ceiling(intervals.iter().map(Interval::total).max().unwrap_or(0));
    let slot = plot_width / intervals.len().max(1) as f64;
    // A gap between bars while they are wide enough to show one.
    let bar = if slot > 4.0 { slot - 1.0 } else { slot };
    let baseline = TOP + plot_height;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="traffic-title" xmlns="http://www.w3.org/2000/svg"><title id="traffic-title">{}</title>"#,
        escape(title)
    );
    // Count lines at 0, half and the top.
    for (fraction, value) in [(0.0, 0), (0.5, top / 2), (1.0, top)] {
        let y = baseline - plot_height * fraction;
        let _ = write!(
            svg,
            r#"<line class="rule" x1="{LEFT}" x2="{WIDTH}" y1="{y:.1}" y2="{y:.1}"/><text class="axis" x="{x:.1}" y="{ty:.1}" text-anchor="end">{value}</text>"#,
            x = LEFT - 6.0,
            ty = y + 4.0,
        );
    }
    for (index, interval) in intervals.iter().enumerate() {
        let x = LEFT + slot * index as f64;
        let mut y = baseline;
        let mut tooltip = interval.label.clone();
        for ((class, word), count) in CLASSES.iter().zip(interval.counts) {
            if count == 0 {
                continue;
            }
            let height = plot_height * count as f64 / top as f64;
            y -= height;
            let _ = write!(
                svg,
                r#"<rect class="{class}" x="{x:.2}" y="{y:.2}" width="{bar:.2}" height="{height:.2}"/>"#
            );
            let _ = write!(tooltip, ", {count} {word}");
        }
        if interval.total() == 0 {
            tooltip.push_str(", no requests");
        }
        // The whole column answers a pointer with its figures.
        let _ = write!(
            svg,
            r#"<rect class="hit" x="{x:.2}" y="{TOP}" width="{slot:.2}" height="{plot_height:.2}"><title>{}</title></rect>"#,
            escape(&tooltip)
        );
    }
    for tick in 0..TICKS {
        let index = tick * intervals.len() / TICKS;
        let Some(interval) = intervals.get(index) else {
            continue;
        };
        let x = LEFT + slot * index as f64;
        let _ = write!(
            svg,
            r#"<text class="axis" x="{x:.1}" y="{y:.1}">{}</text>"#,
            escape(&interval.tick),
            y = HEIGHT - 6.0,
        );
    }
    let _ = write!(
        svg,
        r#"<text class="axis" x="{WIDTH}" y="{y:.1}" text-anchor="end">now</text></svg>"#,
        y = HEIGHT - 6.0,
    );
    svg
}

/// The smallest of 1, 2, 5 times a power of ten that is at least `value` (and at least 1):
/// the top of the count axis, so that its labels are round.
fn nice_ceiling(value: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for factor in [1, 2, 5] {
            let candidate = step.saturating_mul(factor);
            if candidate >= value {
                return candidate;
            }
        }
        match step.checked_mul(10) {
            Some(next) => step = next,
            None => return value,
        }
    }
}

/// Text for XML content and attribute values, escaped as the console's templates escape.
fn escape(text: &str) -> String {
    match askama::filters::escape(text, askama::filters::Html) {
        Ok(escaped) => escaped.to_string(),
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(label: &str, counts: [u64; 5]) -> Interval {
        Interval {
            label: label.to_owned(),
            tick: label.to_owned(),
            counts,
        }
    }

    #[test]
    fn bars_stack_the_classes_bottom_up_scaled_to_a_round_top() {
        let svg = traffic_svg(
            &[
                interval("10:00", [3, 0, 1, 0, 0]),
                interval("10:01", [0, 0, 0, 0, 0]),
            ],
            "Requests per minute",
        );
        // Four requests at most: the axis goes to 5; the plot is 150 high from y = 158.
        assert!(svg.contains(">5</text>"), "{svg}");
        assert!(
            svg.contains(
                r#"<rect class="s2xx" x="52.00" y="68.00" width="333.00" height="90.00"/>"#
            ),
            "{svg}"
        );
        assert!(
            svg.contains(
                r#"<rect class="s4xx" x="52.00" y="38.00" width="333.00" height="30.00"/>"#
            ),
            "{svg}"
        );
        assert!(!svg.contains("s3xx"), "no empty segments: {svg}");
        assert!(svg.contains("<title>10:00, 3 2xx, 1 4xx</title>"), "{svg}");
        assert!(svg.contains("<title>10:01, no requests</title>"), "{svg}");
        assert!(
            svg.contains(r#"<title id="traffic-title">Requests per minute</title>"#),
            "{svg}"
        );
    }

    #[test]
    fn an_empty_picture_still_has_its_axes() {
        let svg = traffic_svg(&[interval("10:00", [0; 5])], "Nothing");
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"), "{svg}");
        assert!(svg.contains(">1</text>"), "the top is at least 1: {svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let none = traffic_svg(&[], "Nothing at all");
        assert!(none.ends_with("now</text></svg>"), "{none}");
    }

    #[test]
    fn text_is_escaped() {
        let svg = traffic_svg(
            &[interval("<script>alert(1)</script>", [1, 0, 0, 0, 0])],
            "a \"title\" & <b>",
        );
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
        assert!(
            svg.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{svg}"
        );
        assert!(svg.contains("a &#34;title&#34; &#38; &#60;b&#62;"), "{svg}");
    }

    #[test]
    fn the_top_of_the_axis_is_round() {
        let tops: Vec<u64> = [0, 1, 2, 3, 6, 10, 11, 49, 51, 999, 1001]
            .into_iter()
            .map(nice_ceiling)
            .collect();
        assert_eq!(tops, [1, 1, 2, 5, 10, 10, 20, 50, 100, 1000, 2000]);
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
    }
}
