//! SVG charts drawn with plotters' SVG backend: one series per allocator over named categories
//! (phases, sizes, ...).

use crate::error::{Error, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// One line or bar group member: a label (e.g. an allocator) and one value per category.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label; its first word picks the colour ([`super::series_color`]).
    pub label: String,
    /// One value per category; `None` leaves a gap.
    pub values: Vec<Option<f64>>,
}

/// Size of every chart, in pixels.
pub const SIZE: (u32, u32) = (760, 400);

fn err(e: impl std::fmt::Display) -> Error {
    Error::Failed(format!("drawing a chart: {e}"))
}

fn y_range(series: &[Series]) -> (f64, f64) {
    let vals = series.iter().flat_map(|s| s.values.iter().flatten().copied());
    let (lo, hi) = vals.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = (hi - lo).max(1.0);
    (if lo < 0.0 { lo - 0.05 * span } else { 0.0 }, hi + 0.08 * span)
}

/// The drawing area every chart of this module is drawn on.
type Frame<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws the common frame (caption, axes labelled with the categories, y label, legend) and lets
/// `body` draw the series into it. Returns the SVG document.
fn framed(
    title: &str,
    categories: &[String],
    y_label: &str,
    series: &[Series],
    body: impl FnOnce(&mut Frame<'_, '_>) -> Result<()>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (lo, hi) = y_range(series);
        let n = categories.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), lo..hi)
            .map_err(err)?;
        let cats = categories.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(RGBColor(240, 240, 240))
            .x_labels(n)
            .x_label_formatter(&move |x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < cats.len() {
                    cats[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_desc(y_label)
            .draw()
            .map_err(err)?;
        body(&mut chart)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A line chart: categories along x (evenly spaced, labelled), one line with markers per series.
/// Returns the SVG document.
pub fn line_chart(
    title: &str,
    categories: &[String],
    y_label: &str,
    series: &[Series],
) -> Result<String> {
    framed(title, categories, y_label, series, |chart| {
        for (k, s) in series.iter().enumerate() {
            let (r, g, b) = super::series_color(&s.label, k);
            let color = RGBColor(r, g, b);
            let points: Vec<(f64, f64)> =
                s.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as f64, v))).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
        }
        Ok(())
    })
}

/// A grouped bar chart: one group per category, one bar per series in each group.
pub fn bar_chart(
    title: &str,
    categories: &[String],
    y_label: &str,
    series: &[Series],
) -> Result<String> {
    framed(title, categories, y_label, series, |chart| {
        let k_all = series.len().max(1) as f64;
        let group = 0.8;
        let w = group / k_all;
        for (k, s) in series.iter().enumerate() {
            let (r, g, b) = super::series_color(&s.label, k);
            let color = RGBColor(r, g, b);
            let bars: Vec<Rectangle<(f64, f64)>> = s
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    v.map(|v| {
                        let x0 = i as f64 - group / 2.0 + k as f64 * w;
                        Rectangle::new([(x0, 0.0), (x0 + w * 0.9, v)], color.filled())
                    })
                })
                .collect();
            chart.draw_series(bars).map_err(err)?.label(s.label.clone()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
            });
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_is_an_svg_naming_its_series() {
        let cats = vec!["alloc".to_string(), "free".to_string()];
        let s = vec![Series { label: "system".into(), values: vec![Some(61.0), Some(0.5)] }];
        let svg = line_chart("seed", &cats, "MiB", &s).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("system") && svg.contains("alloc"));
        let svg = bar_chart("seed", &cats, "MiB", &s).unwrap();
        assert!(svg.contains("<rect"));
    }
}
