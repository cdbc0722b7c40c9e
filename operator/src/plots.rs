//! The plots of a finished search (plotters): reward and best-so-far over trials, and, when
//! latency was measured, validation accuracy against latency with the Pareto front.
//!
//! PNG needs a TrueType font to draw text; the first of [`FONT_PATHS`] that exists is used
//! (Debian: `fonts-dejavu-core`). Without one the plots are written as SVG, whose text the
//! viewer draws.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::search::{Trial, TrialState};

/// Where a sans-serif TrueType font is looked for.
pub const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Registers the first font found as plotters' `sans-serif`; whether one was found.
fn font() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        FONT_PATHS.iter().any(|p| {
            std::fs::read(p).ok().is_some_and(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
        })
    })
}

/// Writes `reward.png` (or `.svg`) and, with latencies, `pareto.png` (or `.svg`) into `dir`;
/// returns the files written. Trials are taken in id order (the order they were proposed).
///
/// # Errors
/// Drawing or writing failed.
pub fn write(dir: &Path, trials: &[Trial], pareto: &[u64]) -> Result<Vec<PathBuf>> {
    let ext = if font() { "png" } else { "svg" };
    let mut written = Vec::new();
    let rewards: Vec<(f64, f64)> = trials
        .iter()
        .filter_map(|t| t.reward().map(|r| (t.id as f64, r)))
        .collect();
    if rewards.is_empty() {
        return Ok(written);
    }
    let path = dir.join(format!("reward.{ext}"));
    draw(&path, Chart::Reward(&rewards))?;
    written.push(path);
    let points: Vec<(u64, f64, f64)> = trials
        .iter()
        .filter_map(|t| match &t.state {
            TrialState::Succeeded {
                metrics,
                latency_ms: Some(l),
                ..
            } => Some((t.id, *l, 100.0 * metrics.validation_accuracy)),
            _ => None,
        })
        .collect();
    if !points.is_empty() {
        let path = dir.join(format!("pareto.{ext}"));
        draw(&path, Chart::Pareto(&points, pareto))?;
        written.push(path);
    }
    Ok(written)
}

type Area<DB> = DrawingArea<DB, Shift>;

/// What to draw.
enum Chart<'a> {
    Reward(&'a [(f64, f64)]),
    Pareto(&'a [(u64, f64, f64)], &'a [u64]),
}

fn chart<DB: DrawingBackend>(area: &Area<DB>, chart: &Chart) -> Result<()>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    match chart {
        Chart::Reward(r) => reward_chart(area, r),
        Chart::Pareto(p, f) => pareto_chart(area, p, f),
    }
}

fn draw(path: &Path, what: Chart) -> Result<()> {
    const SIZE: (u32, u32) = (900, 600);
    let done = if path.extension().is_some_and(|e| e == "png") {
        let area = BitMapBackend::new(path, SIZE).into_drawing_area();
        chart(&area, &what)?;
        area.present().map_err(|e| anyhow!("{e}"))
    } else {
        let area = SVGBackend::new(path, SIZE).into_drawing_area();
        chart(&area, &what)?;
        area.present().map_err(|e| anyhow!("{e}"))
    };
    done.map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn span(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - pad, hi + pad)
}

fn reward_chart<DB: DrawingBackend>(area: &Area<DB>, rewards: &[(f64, f64)]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (y0, y1) = span(rewards.iter().map(|p| p.1));
    let x1 = rewards.iter().map(|p| p.0).fold(0.0, f64::max) + 1.0;
    let mut chart = ChartBuilder::on(area)
        .caption("Reward of each child and best so far", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x1, y0..y1)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("trial")
        .y_desc("reward")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(
            rewards
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 3, BLUE.mix(0.6).filled())),
        )
        .map_err(|e| anyhow!("{e}"))?
        .label("child")
        .legend(|(x, y)| Circle::new((x, y), 3, BLUE.filled()));
    let mut best = f64::NEG_INFINITY;
    let line: Vec<(f64, f64)> = rewards
        .iter()
        .map(|&(x, y)| {
            best = best.max(y);
            (x, best)
        })
        .collect();
    chart
        .draw_series(LineSeries::new(line, RED.stroke_width(2)))
        .map_err(|e| anyhow!("{e}"))?
        .label("best so far")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    legend(&mut chart)
}

fn pareto_chart<DB: DrawingBackend>(
    area: &Area<DB>,
    points: &[(u64, f64, f64)],
    pareto: &[u64],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (x0, x1) = span(points.iter().map(|p| p.1));
    let (y0, y1) = span(points.iter().map(|p| p.2));
    let mut chart = ChartBuilder::on(area)
        .caption("Accuracy against latency, Pareto front", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0.max(0.0)..x1, y0..y1)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("latency (ms)")
        .y_desc("validation accuracy (%)")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(
            points
                .iter()
                .map(|&(_, x, y)| Circle::new((x, y), 3, BLUE.mix(0.5).filled())),
        )
        .map_err(|e| anyhow!("{e}"))?
        .label("child")
        .legend(|(x, y)| Circle::new((x, y), 3, BLUE.filled()));
    let front: Vec<(f64, f64)> = pareto
        .iter()
        .filter_map(|id| points.iter().find(|p| p.0 == *id).map(|p| (p.1, p.2)))
        .collect();
    chart
        .draw_series(LineSeries::new(front.clone(), RED.stroke_width(2)))
        .map_err(|e| anyhow!("{e}"))?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .draw_series(
            front
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 5, RED.filled())),
        )
        .map_err(|e| anyhow!("{e}"))?;
    legend(&mut chart)
}

/// The legend box both charts use, in their lower-right corner.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| anyhow!("{e}"))
}
