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

/// Size of every chart's plotting part, in pixels; the legend is drawn to its right.
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

/// How a legend entry shows its series.
#[derive(Clone, Copy, Debug)]
pub enum Swatch {
    /// A line sample: colour, width, dashed or not.
    Line(RGBAColor, u32, bool),
    /// A filled box (bars).
    Bar(RGBAColor),
}

/// Width in pixels of a legend whose longest label is `labels`' longest.
pub fn legend_width<'a>(labels: impl IntoIterator<Item = &'a str>) -> u32 {
    let chars = labels.into_iter().map(|l| l.chars().count()).max().unwrap_or(0);
    (chars as u32 * 7 + 44).max(100)
}

/// Draws a legend into `area` (a strip beside the plot, so it never covers data): one entry per
/// series, top to bottom.
pub fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[(String, Swatch)],
) -> Result<()> {
    let top = 48;
    for (i, (label, swatch)) in entries.iter().enumerate() {
        let y = top + 20 * i as i32;
        match *swatch {
            Swatch::Line(color, width, dashed) => {
                let style = color.stroke_width(width);
                if dashed {
                    area.draw(&plotters::element::DashedPathElement::new(
                        vec![(6, y), (30, y)],
                        5,
                        3,
                        style,
                    ))
                    .map_err(err)?;
                } else {
                    area.draw(&PathElement::new(vec![(6, y), (30, y)], style)).map_err(err)?;
                }
            }
            Swatch::Bar(color) => {
                area.draw(&Rectangle::new([(10, y - 5), (24, y + 5)], color.filled()))
                    .map_err(err)?;
            }
        }
        area.draw(&Text::new(
            label.clone(),
            (36, y - 6),
            ("sans-serif", 12).into_font().color(&BLACK),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// The drawing area every chart of this module is drawn on.
type Frame<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws the common frame (caption, axes labelled with the categories, y label), lets `body`
/// draw the series into it, and draws the legend entries `body` returns beside the plot.
/// Returns the SVG document.
fn framed(
    title: &str,
    categories: &[String],
    y_label: &str,
    series: &[Series],
    body: impl FnOnce(&mut Frame<'_, '_>) -> Result<Vec<(String, Swatch)>>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let lw = legend_width(series.iter().map(|s| s.label.as_str()));
        let root = SVGBackend::with_string(&mut svg, (SIZE.0 + lw, SIZE.1)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plot, side) = root.split_horizontally(SIZE.0);
        let (lo, hi) = y_range(series);
        let n = categories.len().max(1);
        let mut chart = ChartBuilder::on(&plot)
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
        let entries = body(&mut chart)?;
        draw_legend(&side, &entries)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Whether an earlier series has the same colour as series `k` (the same allocator in another
/// variant): such a series is drawn dashed, with hollow markers, so the two stay apart.
fn repeats_colour(series: &[Series], k: usize) -> bool {
    let c = super::series_color(&series[k].label, k);
    (0..k).any(|j| super::series_color(&series[j].label, j) == c)
}

/// A line chart: categories along x (evenly spaced, labelled), one line with markers per series.
/// A series whose colour an earlier one already has (another variant of the same allocator) is
/// dashed with hollow markers. Returns the SVG document.
pub fn line_chart(
    title: &str,
    categories: &[String],
    y_label: &str,
    series: &[Series],
) -> Result<String> {
    framed(title, categories, y_label, series, |chart| {
        let mut legend = Vec::new();
        for (k, s) in series.iter().enumerate() {
            let (r, g, b) = super::series_color(&s.label, k);
            let color = RGBColor(r, g, b);
            let dashed = repeats_colour(series, k);
            let points: Vec<(f64, f64)> =
                s.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as f64, v))).collect();
            if dashed {
                chart
                    .draw_series(DashedLineSeries::new(points.clone(), 6, 4, color.stroke_width(2)))
                    .map_err(err)?;
                chart
                    .draw_series(
                        points
                            .into_iter()
                            .map(|p| Circle::new(p, 4, ShapeStyle::from(&WHITE).filled())),
                    )
                    .map_err(err)?;
                chart
                    .draw_series(points_again(s).map(|p| Circle::new(p, 4, color.stroke_width(2))))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(err)?;
                chart
                    .draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(err)?;
            }
            legend.push((s.label.clone(), Swatch::Line(color.to_rgba(), 2, dashed)));
        }
        Ok(legend)
    })
}

fn points_again(s: &Series) -> impl Iterator<Item = (f64, f64)> + '_ {
    s.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as f64, v)))
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
        let mut legend = Vec::new();
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
            chart.draw_series(bars).map_err(err)?;
            legend.push((s.label.clone(), Swatch::Bar(color.to_rgba())));
        }
        Ok(legend)
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

    #[test]
    fn the_legend_sits_beside_the_plot_and_variants_are_dashed() {
        let cats = vec!["alloc".to_string(), "free".to_string()];
        let s = vec![
            Series { label: "pymalloc (spread)".into(), values: vec![Some(30.0), Some(30.0)] },
            Series { label: "pymalloc (packed)".into(), values: vec![Some(30.0), Some(1.0)] },
        ];
        let svg = line_chart("survivors", &cats, "MiB", &s).unwrap();
        let lw = legend_width(s.iter().map(|x| x.label.as_str()));
        assert!(svg.contains(&format!("width=\"{}\"", SIZE.0 + lw)), "wider by the legend");
        assert!(!repeats_colour(&s, 0) && repeats_colour(&s, 1));
        assert!(svg.contains("stroke-dasharray") || svg.matches("<polyline").count() > 2);
    }
}
