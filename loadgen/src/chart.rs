//! `docs/bench-chart.svg`: grouped bars per case, Switchboard beside Node,
//! normalized to Node = 1 on a log scale. Drawn with plotters' SVG backend
//! only: text goes into the SVG as `<text>` elements, so no font files or
//! system libraries are needed.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One group of bars: a figure of a case.
#[derive(Clone, Debug)]
pub struct Group {
    /// The case, short.
    pub title: String,
    /// The figure, e.g. `deliveries/s`.
    pub figure: String,
    /// Switchboard / Node.
    pub ratio: f64,
    pub lower_is_better: bool,
}

const SW: RGBColor = RGBColor(0x1f, 0x6f, 0xb4);
const NODE: RGBColor = RGBColor(0xa8, 0xa8, 0xa8);
const GOOD: RGBColor = RGBColor(0x1a, 0x7f, 0x37);
const BAD: RGBColor = RGBColor(0xb3, 0x26, 0x1e);
const GREY: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// Renders the chart as an SVG document.
pub fn render(groups: &[Group], subtitle: &str) -> anyhow::Result<String> {
    let width = (170 * groups.len().max(1) as u32 + 140).max(700);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 520)).into_drawing_area();
        draw(&root, groups, subtitle).map_err(|e| anyhow::anyhow!("drawing the chart: {e}"))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("drawing the chart: {e}"))?;
    }
    Ok(svg)
}

type DrawResult =
    Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw(root: &DrawingArea<SVGBackend<'_>, Shift>, groups: &[Group], subtitle: &str) -> DrawResult {
    root.fill(&WHITE)?;
    let n = groups.len().max(1);
    let lo = groups.iter().map(|g| g.ratio).fold(1.0f64, f64::min);
    let hi = groups.iter().map(|g| g.ratio).fold(1.0f64, f64::max);
    // Room below the lowest bar and above the highest label.
    let y_min = (lo / 2.0).max(1e-3);
    let y_max = hi * 2.5;

    let (top, _) = root.split_vertically(50);
    top.draw(&Text::new(
        "Switchboard relative to Node (Node = 1)",
        (10, 8),
        ("sans-serif", 20).into_font().color(&BLACK),
    ))?;
    top.draw(&Text::new(
        subtitle.to_string(),
        (10, 32),
        ("sans-serif", 12).into_font().color(&GREY),
    ))?;

    let mut chart = ChartBuilder::on(root)
        .margin_top(60)
        .margin_right(20)
        .margin_left(10)
        .x_label_area_size(70)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("× Node (log scale)")
        .y_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}×")
            } else {
                format!("{v}×")
            }
        })
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .draw()?;

    let half = 0.18;
    for (i, g) in groups.iter().enumerate() {
        let x = i as f64;
        chart.draw_series([
            Rectangle::new([(x - 2.0 * half, y_min), (x, 1.0)], NODE.filled()),
            Rectangle::new([(x, y_min), (x + 2.0 * half, g.ratio)], SW.filled()),
        ])?;
        // Green where Switchboard is better by more than 5 %, red where worse.
        let gain = if g.lower_is_better {
            1.0 / g.ratio
        } else {
            g.ratio
        };
        let color = if gain > 1.05 {
            GOOD
        } else if gain < 1.0 / 1.05 {
            BAD
        } else {
            GREY
        };
        let label = super::report::fmt_ratio(g.ratio);
        let above = Pos::new(HPos::Center, VPos::Bottom);
        chart.draw_series([
            Text::new(
                label,
                (x + half, g.ratio * 1.08),
                ("sans-serif", 13).into_font().color(&color).pos(above),
            ),
            Text::new(
                "1×".to_string(),
                (x - half, 1.08),
                ("sans-serif", 11).into_font().color(&GREY).pos(above),
            ),
        ])?;
        // Under the group: the case, the figure, which way is better.
        let (px, py) = chart.backend_coord(&(x, y_min));
        let center = Pos::new(HPos::Center, VPos::Top);
        root.draw(&Text::new(
            g.title.clone(),
            (px, py + 8),
            ("sans-serif", 12).into_font().color(&BLACK).pos(center),
        ))?;
        let dir = if g.lower_is_better {
            "(lower is better)"
        } else {
            "(higher is better)"
        };
        for (line, text) in [g.figure.as_str(), dir].into_iter().enumerate() {
            root.draw(&Text::new(
                text.to_string(),
                (px, py + 24 + 14 * line as i32),
                ("sans-serif", 11).into_font().color(&GREY).pos(center),
            ))?;
        }
    }
    // Node = 1 reference line.
    chart.draw_series([PathElement::new(
        vec![(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
        BLACK.stroke_width(1),
    )])?;

    // Legend, top right.
    let (w, _) = root.dim_in_pixel();
    let lx = w as i32 - 250;
    for (j, (name, color)) in [("Switchboard", SW), ("Node (reference, = 1)", NODE)]
        .into_iter()
        .enumerate()
    {
        let y = 10 + 18 * j as i32;
        root.draw(&Rectangle::new(
            [(lx, y), (lx + 14, y + 12)],
            color.filled(),
        ))?;
        root.draw(&Text::new(
            name,
            (lx + 20, y),
            ("sans-serif", 12).into_font().color(&BLACK),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_without_fonts() {
        let groups = vec![
            Group {
                title: "fanout 1k".into(),
                figure: "deliveries/s".into(),
                ratio: 24.0,
                lower_is_better: false,
            },
            Group {
                title: "fanout 10k @20k/s".into(),
                figure: "latency p99".into(),
                ratio: 0.4,
                lower_is_better: true,
            },
        ];
        let svg = render(&groups, "test").unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("24.0×"));
        assert!(svg.contains("0.40×"));
        assert!(svg.contains("fanout 10k @20k/s"));
    }
}
