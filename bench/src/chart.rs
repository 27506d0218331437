//! An SVG chart of `bench meeting` runs: CPU per forwarded packet and one-way delay (p50, p99) against the number
//! of subscribers, one line per target. Plain SVG, no dependencies: any browser shows it.

use std::fmt::Write;

use crate::meeting::Report;

const WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 300.0;
const MARGIN: f64 = 60.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// One panel's series: a name and (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// Subscribers of a run: every participant but the publisher's own copy, per meeting.
fn subscribers(r: &Report) -> f64 {
    r.participants.saturating_sub(1) as f64
}

/// The chart of `reports` (several targets and sizes), newest figures last.
pub fn svg(reports: &[Report], title: &str) -> String {
    let mut targets: Vec<&str> = reports.iter().map(|r| r.target.as_str()).collect();
    targets.dedup();
    targets.sort_unstable();
    targets.dedup();
    let series = |f: fn(&Report) -> Option<f64>, suffix: &str, dashed: bool| -> Vec<Series> {
        targets
            .iter()
            .map(|t| {
                let mut points: Vec<(f64, f64)> =
                    reports.iter().filter(|r| r.target == *t).filter_map(|r| Some((subscribers(r), f(r)?))).collect();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series { name: format!("{t}{suffix}"), points, dashed }
            })
            .collect()
    };
    let cpu = series(|r| r.server_cpu_ns_per_forwarded, "", false);
    let mut delay = series(|r| Some(r.delay_us_p50 as f64), " p50", false);
    delay.extend(series(|r| Some(r.delay_us_p99 as f64), " p99", true));
    let height = 2.0 * PANEL_HEIGHT + 3.0 * MARGIN;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" font-family=\"sans-serif\" \
         font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{MARGIN}\" y=\"24\" font-size=\"16\">{}</text>\n",
        escape(title)
    );
    let x_label = "subscribers per meeting";
    panel(&mut out, MARGIN, "CPU per forwarded packet (ns)", x_label, &cpu, &targets);
    panel(&mut out, 2.0 * MARGIN + PANEL_HEIGHT, "one-way delay (us)", x_label, &delay, &targets);
    out.push_str("</svg>\n");
    out
}

/// Panels of series over a shared x axis (time, say), one under the other, each series its own colour.
pub fn time_series(title: &str, x_label: &str, panels: &[(&str, Vec<Series>)]) -> String {
    let height = panels.len() as f64 * (PANEL_HEIGHT + MARGIN) + MARGIN;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" font-family=\"sans-serif\" \
         font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{MARGIN}\" y=\"24\" font-size=\"16\">{}</text>\n",
        escape(title)
    );
    for (i, (label, series)) in panels.iter().enumerate() {
        let top = MARGIN + i as f64 * (PANEL_HEIGHT + MARGIN);
        panel(&mut out, top, label, x_label, series, &[]);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, top: f64, label: &str, x_label: &str, series: &[Series], targets: &[&str]) {
    let points = series.iter().flat_map(|s| s.points.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points.map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let (left, width) = (MARGIN, WIDTH - 2.0 * MARGIN);
    let x = |v: f64| left + v / x_max * width;
    let y = |v: f64| top + PANEL_HEIGHT - v / y_max * PANEL_HEIGHT;
    let _ = writeln!(
        out,
        "<g><rect x=\"{left}\" y=\"{top}\" width=\"{width}\" height=\"{PANEL_HEIGHT}\" fill=\"none\" stroke=\"#999\"/>\
         <text x=\"{left}\" y=\"{}\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        top - 6.0,
        escape(label),
        left + width,
        top + PANEL_HEIGHT + 30.0,
        escape(x_label)
    );
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let _ = writeln!(out, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.0}</text>", left - 4.0, y(v) + 4.0);
        let v = x_max * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{v:.0}</text>",
            x(v),
            top + PANEL_HEIGHT + 16.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let target = targets.iter().position(|t| s.name.starts_with(t)).unwrap_or(i);
        let color = COLORS[target % COLORS.len()];
        let path: Vec<String> = s.points.iter().map(|(px, py)| format!("{:.1},{:.1}", x(*px), y(*py))).collect();
        let dash = if s.dashed { " stroke-dasharray=\"6 4\"" } else { "" };
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>",
            path.join(" ")
        );
        for (px, py) in &s.points {
            let _ = writeln!(out, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>", x(*px), y(*py));
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{}</text>",
            left + 10.0,
            top + 16.0 + 14.0 * i as f64,
            escape(&s.name)
        );
    }
    out.push_str("</g>\n");
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(target: &str, participants: usize, cpu: f64, p50: u64) -> Report {
        Report {
            target: target.into(),
            meetings: 1,
            participants,
            publishers: 1,
            joined: participants,
            join_success_percent: 100.0,
            joins_per_second: 0.0,
            errors: Vec::new(),
            join_ms_p50: 0.0,
            join_ms_max: 0.0,
            first_media_ms_p50: 0.0,
            first_media_ms_max: 0.0,
            sent: 1,
            expected: 1,
            received: 1,
            loss_percent: 0.0,
            delay_us_p50: p50,
            delay_us_p99: p50 * 3,
            delay_us_p999: p50 * 4,
            server_cpu_ns_per_forwarded: Some(cpu),
            server_worker_cpu_ns_per_forwarded: None,
            generator_cpu_ns_per_packet: None,
        }
    }

    #[test]
    fn one_line_per_target_and_percentile() {
        let reports = [
            report("sluice", 5, 700.0, 100),
            report("bare-udp", 5, 500.0, 80),
            report("sluice", 11, 600.0, 150),
            report("bare-udp", 11, 450.0, 90),
        ];
        let svg = svg(&reports, "test <run>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2 + 4, "CPU: 2 targets; delay: 2 targets x p50/p99");
        assert_eq!(svg.matches("<circle").count(), 12);
        assert!(svg.contains("test &lt;run&gt;"));
        assert!(svg.contains(">sluice p99<") && svg.contains(">bare-udp<"));
    }
}
