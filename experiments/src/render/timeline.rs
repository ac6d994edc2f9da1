//! Time charts: x in milliseconds, y in MiB, one line per series, vertical markers for events.
//! Used by the exit and pool pages (and any experiment that samples memory over time).

use crate::error::{Error, Result};
use plotters::prelude::*;

/// A line on a timeline chart: label, points (ms, MiB), dashed or not.
pub struct Line {
    /// Legend label; its first word picks the colour ([`super::series_color`]).
    pub label: String,
    /// The points, (x, y).
    pub points: Vec<(f64, f64)>,
    /// Drawn thin and lighter: a secondary figure.
    pub thin: bool,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Failed(format!("drawing a timeline: {e}"))
}

/// A time chart (x in ms, y in MiB) with one line per entry; colours follow the allocator named
/// first in each label. Thin lines are drawn lighter, for secondary figures.
/// Vertical markers (x, label) are drawn as grey lines with their label at the top.
pub fn timeline_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line],
    markers: &[(f64, String)],
) -> Result<String> {
    let mut svg = String::new();
    {
        let lw = super::chart::legend_width(lines.iter().map(|l| l.label.as_str()));
        let root = SVGBackend::with_string(&mut svg, (760 + lw, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        // The legend goes in a strip to the right of the plot, where it covers no line.
        let (plot, side) = root.split_horizontally(760);
        let mut legend = Vec::new();
        let pts = lines.iter().flat_map(|l| l.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0.0f64, 1.0f64);
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            (x0, x1) = (0.0, 1.0);
        }
        if !markers.is_empty() {
            // Room on the right for the last marker's label.
            x1 += 0.22 * (x1 - x0);
        }
        let pad = 0.06 * (y1 - y0).max(1.0);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
            .map_err(err)?;
        chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(err)?;
        for (k, l) in lines.iter().enumerate() {
            let (r, g, b) = super::series_color(&l.label, k);
            let color =
                if l.thin { RGBColor(r, g, b).mix(0.45) } else { RGBColor(r, g, b).mix(1.0) };
            let width = if l.thin { 1 } else { 2 };
            chart
                .draw_series(LineSeries::new(l.points.clone(), color.stroke_width(width)))
                .map_err(err)?;
            legend.push((l.label.clone(), super::chart::Swatch::Line(color, width, false)));
        }
        let grey = BLACK.mix(0.45);
        for (i, (x, label)) in markers.iter().enumerate() {
            if *x < x0 || *x > x1 {
                continue;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*x, y0 - pad), (*x, y1 + pad)],
                    grey.stroke_width(1),
                )))
                .map_err(err)?;
            // Stagger labels so neighbouring markers stay readable.
            let y = y1 + pad - (i % 3) as f64 * 0.07 * (y1 - y0 + 2.0 * pad);
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" {label}"),
                    (*x, y),
                    ("sans-serif", 12).into_font().color(&BLACK),
                )))
                .map_err(err)?;
        }
        super::chart::draw_legend(&side, &legend)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
