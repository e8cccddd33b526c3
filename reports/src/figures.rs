//! SVG figures drawn with plotters: values per category (bars, or points with error bars) and
//! loss curves. Each figure is returned as SVG text, so the HTML report can inline it.

use plotters::prelude::*;

use crate::Result;

/// Width and height of every figure, in pixels.
const SIZE: (u32, u32) = (760, 380);

/// How a category chart draws its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marks {
    /// Bars from 0.
    Bars,
    /// Points with error bars from `low` to `high`.
    Points,
}

/// One series of a category chart: a name for the legend and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(category index, value, low, high)`.
    pub values: Vec<(usize, f64, f64, f64)>,
}

/// A chart of values per category: each category a slot on the x axis, each series an offset
/// within the slot.
///
/// # Errors
/// [`crate::Error::Plot`] when plotters fails to draw.
pub fn category_chart(
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[Series],
    marks: Marks,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot)?;
        let (low, high) = y_range(series, marks);
        let n = categories.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..n as f64, low..high)
            .map_err(plot)?;
        let name_of = |x: &f64| {
            let slot = (x - 0.5).round();
            let centre = (x - slot - 0.5).abs() < 1e-6;
            match categories.get(slot as usize) {
                Some(name) if centre && slot >= 0.0 => name.clone(),
                _ => String::new(),
            }
        };
        chart
            .configure_mesh()
            .x_labels(2 * n + 1)
            .x_label_formatter(&name_of)
            .disable_x_mesh()
            .y_desc(y_label)
            .draw()
            .map_err(plot)?;
        let width = 0.8 / series.len().max(1) as f64;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let left = |slot: usize| slot as f64 + 0.1 + i as f64 * width;
            let drawn = match marks {
                Marks::Bars => chart.draw_series(s.values.iter().map(|&(slot, v, _, _)| {
                    Rectangle::new(
                        [(left(slot), 0.0), (left(slot) + width * 0.9, v)],
                        color.filled(),
                    )
                })),
                Marks::Points => chart.draw_series(s.values.iter().map(|&(slot, v, lo, hi)| {
                    ErrorBar::new_vertical(left(slot) + width / 2.0, lo, v, hi, color.filled(), 8)
                })),
            }
            .map_err(plot)?;
            drawn.label(s.name.clone()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
            });
        }
        legend(&mut chart)?;
        root.present().map_err(plot)?;
    }
    Ok(svg)
}

/// Lines over optimizer steps, one per series (`(name, [(step, loss)])`).
///
/// # Errors
/// [`crate::Error::Plot`] when plotters fails to draw.
pub fn curves(title: &str, lines: &[(String, Vec<(u64, f64)>)]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot)?;
        let points = lines.iter().flat_map(|(_, l)| l.iter());
        let last = points.clone().map(|p| p.0).max().unwrap_or(1).max(1);
        let losses: Vec<f64> = points.map(|p| p.1).filter(|v| v.is_finite()).collect();
        let (low, high) = padded(&losses, false);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0u64..last, low..high)
            .map_err(plot)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(plot)?;
        for (i, (name, line)) in lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))
                .map_err(plot)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart)?;
        root.present().map_err(plot)?;
    }
    Ok(svg)
}

fn legend<'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot)
}

/// The y range of a category chart: its values (and error bars) with a margin; bars start at 0.
fn y_range(series: &[Series], marks: Marks) -> (f64, f64) {
    let mut values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.values.iter().flat_map(|&(_, v, lo, hi)| [v, lo, hi]))
        .filter(|v| v.is_finite())
        .collect();
    if marks == Marks::Bars {
        values.push(0.0);
    }
    padded(&values, marks == Marks::Bars)
}

/// `[min, max]` of `values` widened by 8 % (a unit range when empty or flat); from 0 if `from_zero`
/// and all values are positive.
fn padded(values: &[f64], from_zero: bool) -> (f64, f64) {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !low.is_finite() || !high.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((high - low) * 0.08).max(1e-3);
    let low = if from_zero && low >= 0.0 {
        0.0
    } else {
        low - pad
    };
    (low, high + pad)
}

fn plot(e: impl std::fmt::Display) -> crate::Error {
    crate::Error::Plot(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_category_chart_names_each_category_and_series() {
        let categories = vec!["code".to_owned(), "math".to_owned(), "prose".to_owned()];
        let series = [
            Series {
                name: "sdm".into(),
                values: vec![(0, 0.5, 0.5, 0.5), (1, 0.3, 0.3, 0.3), (2, 0.2, 0.2, 0.2)],
            },
            Series {
                name: "uniform".into(),
                values: vec![
                    (0, 0.34, 0.34, 0.34),
                    (1, 0.33, 0.33, 0.33),
                    (2, 0.33, 0.33, 0.33),
                ],
            },
        ];
        let svg = category_chart("mixtures", "weight", &categories, &series, Marks::Bars).unwrap();
        for text in ["code", "math", "prose", "sdm", "uniform", "mixtures"] {
            assert!(
                svg.contains(&format!("\n{text}\n</text>")),
                "{text} missing"
            );
        }
        // Background, plot area, 6 bars, 2 legend swatches and the legend's box.
        assert!(svg.matches("<rect").count() >= 10, "{svg}");
    }

    #[test]
    fn curves_draw_one_path_per_line() {
        let lines = vec![
            ("train".to_owned(), vec![(1, 3.0), (2, 2.5), (3, 2.2)]),
            ("code".to_owned(), vec![(1, 3.1), (3, 2.4)]),
        ];
        let svg = curves("loss", &lines).unwrap();
        assert!(svg.contains("\ntrain\n</text>") && svg.contains("\ncode\n</text>"));
        assert!(svg.matches("<polyline").count() >= 2, "{svg}");
    }

    #[test]
    fn ranges_pad_values_and_bars_start_at_zero() {
        assert_eq!(padded(&[], false), (0.0, 1.0));
        let (low, high) = padded(&[1.0, 2.0], true);
        assert_eq!(low, 0.0);
        assert!((high - 2.08).abs() < 1e-12);
        let (low, _) = padded(&[-1.0, 1.0], true);
        assert!((low + 1.16).abs() < 1e-12);
    }
}
