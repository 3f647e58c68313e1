//! SVG charts of the training stages' metrics logs for the run report. Each stage's
//! `metrics.jsonl` (src/train/metrics.rs) is read leniently: a line that is not a JSON object with
//! a numeric `step` is skipped and counted, and a value that is missing, non-finite or beyond
//! ±`MAX_MAGNITUDE` is left out of its series. Every chart of `CHARTS` whose data is present is drawn with plotters' SVG backend into
//! the report directory: one panel per quantity, stacked over a shared step axis. Text goes into
//! the SVG as `<text>` elements laid out with plotters' built-in size estimate, so drawing needs
//! no system fonts.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::paths::Paths;
use crate::train::metrics::METRICS_FILE;

const WIDTH: u32 = 960;
const PANEL_HEIGHT: u32 = 340;
const TITLE_HEIGHT: u32 = 40;
const MARGIN: u32 = 12;
const X_LABEL_AREA: u32 = 48;
/// A legend's height: a row per series plus its border.
const LEGEND_ROW: u32 = 20;
const LEGEND_BORDER: u32 = 12;
const X_LABEL: &str = "optimizer step";
/// Series with at most this many points also get a marker per point (sparse evaluations, a
/// single point).
const MARKER_LIMIT: usize = 50;
/// Longer series are thinned to every k-th point (and the last) so an SVG stays small.
const MAX_POINTS: usize = 2000;
/// Values (and steps) beyond this magnitude are left out: an axis spanning ±f64::MAX has an
/// infinite length, on which plotters' tick placement does not finish.
const MAX_MAGNITUDE: f64 = 1e300;
/// Series colours in panel order (matplotlib's tab10).
const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// The training phases with a metrics log, as named in their checkpoint directories
/// (`<phase>_d<depth>`, src/paths.rs).
const PHASES: [&str; 4] = ["base", "mid", "sft", "rl"];

/// Where the values of a series come from in a metrics line.
#[derive(Clone, Copy)]
enum Source {
    /// A top-level number, e.g. `loss`.
    Field { key: &'static str, label: &'static str },
    /// One series per number in the `metrics` object whose key starts with this prefix (RL's
    /// `pass@1`, `pass@2`, …).
    MetricsPrefix(&'static str),
}

struct PanelSpec {
    y_label: &'static str,
    sources: &'static [Source],
}

struct ChartSpec {
    file: &'static str,
    phase: &'static str,
    title: &'static str,
    panels: &'static [PanelSpec],
}

/// Training loss, raw and smoothed, with the validation loss (all nats per token), over the
/// validation bits per byte.
const LOSS_PANELS: &[PanelSpec] = &[
    PanelSpec {
        y_label: "loss (nats/token)",
        sources: &[
            Source::Field { key: "loss", label: "training loss" },
            Source::Field { key: "smoothed_loss", label: "training loss (EMA)" },
            Source::Field { key: "val_loss", label: "validation loss" },
        ],
    },
    PanelSpec {
        y_label: "validation bpb (bits/byte)",
        sources: &[Source::Field { key: "val_bpb", label: "validation bpb" }],
    },
];

const CHARTS: &[ChartSpec] = &[
    ChartSpec { file: "base_loss.svg", phase: "base", title: "Base training loss", panels: LOSS_PANELS },
    ChartSpec {
        file: "base_lr.svg",
        phase: "base",
        title: "Base training learning-rate schedule",
        panels: &[PanelSpec {
            y_label: "LR multiplier (x initial LR)",
            sources: &[Source::Field { key: "lrm", label: "LR multiplier" }],
        }],
    },
    ChartSpec {
        file: "base_throughput.svg",
        phase: "base",
        title: "Base training throughput",
        panels: &[
            PanelSpec { y_label: "tokens/s", sources: &[Source::Field { key: "tok_per_sec", label: "tokens/s" }] },
            PanelSpec { y_label: "MFU (%)", sources: &[Source::Field { key: "mfu", label: "MFU" }] },
        ],
    },
    ChartSpec { file: "mid_loss.svg", phase: "mid", title: "Midtraining loss", panels: LOSS_PANELS },
    ChartSpec { file: "sft_loss.svg", phase: "sft", title: "Chat SFT loss", panels: LOSS_PANELS },
    ChartSpec {
        file: "rl_reward.svg",
        phase: "rl",
        title: "Chat RL reward and pass@k",
        panels: &[
            PanelSpec { y_label: "mean reward", sources: &[Source::Field { key: "reward", label: "mean reward" }] },
            PanelSpec { y_label: "pass@k (fraction solved)", sources: &[Source::MetricsPrefix("pass@")] },
        ],
    },
];

/// The file names of every chart this module can write.
pub fn chart_files() -> impl Iterator<Item = &'static str> {
    CHARTS.iter().map(|c| c.file)
}

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("drawing failed: {0}")]
    Draw(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

fn draw_error(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// One readable line of a metrics log.
struct Record {
    step: f64,
    fields: serde_json::Map<String, Value>,
}

/// A metrics log as read: its readable lines, and how many lines were skipped.
struct ParsedLog {
    records: Vec<Record>,
    skipped_lines: usize,
}

fn parse_metrics_log(text: &str) -> ParsedLog {
    let mut log = ParsedLog { records: Vec::new(), skipped_lines: 0 };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let record = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(fields)) => plottable(fields.get("step")).map(|step| Record { step, fields }),
            _ => None,
        };
        match record {
            Some(r) => log.records.push(r),
            None => log.skipped_lines += 1,
        }
    }
    log
}

/// A named series of (step, value) points, in log order.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

/// A number within ±`MAX_MAGNITUDE`.
fn plottable(value: Option<&Value>) -> Option<f64> {
    value.and_then(Value::as_f64).filter(|v| v.abs() <= MAX_MAGNITUDE)
}

/// The non-empty series of `source` in `records`.
fn collect_series(records: &[Record], source: Source) -> Vec<Series> {
    match source {
        Source::Field { key, label } => {
            let points: Vec<(f64, f64)> =
                records.iter().filter_map(|r| Some((r.step, plottable(r.fields.get(key))?))).collect();
            if points.is_empty() {
                return Vec::new();
            }
            vec![Series { label: label.to_string(), points }]
        }
        Source::MetricsPrefix(prefix) => {
            // Keyed by (length, name) so that pass@10 follows pass@9.
            let mut by_key: BTreeMap<(usize, String), Vec<(f64, f64)>> = BTreeMap::new();
            for r in records {
                let Some(Value::Object(metrics)) = r.fields.get("metrics") else { continue };
                for (name, value) in metrics.iter().filter(|(name, _)| name.starts_with(prefix)) {
                    if let Some(v) = plottable(Some(value)) {
                        by_key.entry((name.len(), name.clone())).or_default().push((r.step, v));
                    }
                }
            }
            by_key.into_iter().map(|((_, label), points)| Series { label, points }).collect()
        }
    }
}

/// Every k-th point and the last, k chosen so that at most about `MAX_POINTS` remain.
fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let stride = points.len().div_ceil(MAX_POINTS);
    let last = points.len() - 1;
    points.into_iter().enumerate().filter(|(i, _)| i % stride == 0 || *i == last).map(|(_, p)| p).collect()
}

/// An axis range covering `values` with 5% room at each end, and at the top at least the fraction
/// `headroom` of the axis left empty (for a legend). A single value is widened first by ±5% of
/// itself but at least `min_half_width` (±1 when both are zero).
fn axis_range(values: impl Iterator<Item = f64>, headroom: f64, min_half_width: f64) -> (f64, f64) {
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if hi == lo {
        let half = (0.05 * lo.abs()).max(min_half_width);
        let half = if half > 0.0 { half } else { 1.0 };
        (lo, hi) = (lo - half, hi + half);
    }
    let bottom = 0.05 * (hi - lo);
    let top = (0.05 * (hi - lo)).max(headroom * (hi - lo + bottom) / (1.0 - headroom));
    (lo - bottom, hi + top)
}

/// A step tick's label: integral steps only (up to rounding in the tick positions; `+ 0.0` makes
/// -0 read 0).
fn step_label(step: &f64) -> String {
    if (step - step.round()).abs() < 1e-6 {
        format!("{:.0}", step.round() + 0.0)
    } else {
        String::new()
    }
}

/// A value tick's label: plotters' own format, without decimals from 10,000 on (tokens/s), in
/// scientific notation from 10^12 on.
fn value_label(value: &f64) -> String {
    match value.abs() {
        v if v >= 1e12 => format!("{value:.3e}"),
        v if v >= 1e4 => format!("{value:.0}"),
        _ => RangedCoordf64::format(value),
    }
}

struct Panel {
    y_label: &'static str,
    series: Vec<Series>,
}

/// The SVG of a chart: `title` over one line-chart panel per entry of `panels`, sharing the step
/// axis. Each series is a polyline in its own colour, with a marker per point when it has at most
/// `MARKER_LIMIT` points. A panel of several series has a legend in its upper right corner, above
/// the data; the axis label names a lone series.
fn draw_chart(title: &str, panels: &[Panel]) -> Result<String, PlotError> {
    let mut svg = String::new();
    let height = TITLE_HEIGHT + PANEL_HEIGHT * panels.len() as u32;
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let root = root.titled(title, ("sans-serif", 24)).map_err(draw_error)?;
        let steps = panels.iter().flat_map(|p| &p.series).flat_map(|s| s.points.iter().map(|p| p.0));
        let (x0, x1) = axis_range(steps, 0.0, 1.0);
        let plot_height = f64::from(PANEL_HEIGHT - 2 * MARGIN - X_LABEL_AREA);
        for (area, panel) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
            let legend = panel.series.len() > 1;
            let legend_height = f64::from(LEGEND_BORDER + LEGEND_ROW * panel.series.len() as u32);
            let headroom = if legend { (legend_height / plot_height).min(0.5) } else { 0.0 };
            let (y0, y1) = axis_range(panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), headroom, 0.0);
            let mut chart = ChartBuilder::on(area)
                .margin(MARGIN)
                .x_label_area_size(X_LABEL_AREA)
                .y_label_area_size(90)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(draw_error)?;
            chart
                .configure_mesh()
                .x_desc(X_LABEL)
                .y_desc(panel.y_label)
                .x_label_formatter(&step_label)
                .y_label_formatter(&value_label)
                .light_line_style(TRANSPARENT)
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 16))
                .draw()
                .map_err(draw_error)?;
            for (series, &color) in panel.series.iter().zip(PALETTE.iter().cycle()) {
                let line = chart
                    .draw_series(std::iter::once(PathElement::new(series.points.clone(), color.stroke_width(2))))
                    .map_err(draw_error)?;
                if legend {
                    line.label(series.label.as_str())
                        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled()));
                }
                if series.points.len() <= MARKER_LIMIT {
                    chart
                        .draw_series(series.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(draw_error)?;
                }
            }
            if legend {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.4))
                    .label_font(("sans-serif", 14))
                    .draw()
                    .map_err(draw_error)?;
            }
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// A chart written into the report directory: `file` is relative to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WrittenPlot {
    pub title: String,
    pub file: String,
}

/// A chart that had data but could not be drawn or written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedPlot {
    pub file: String,
    pub error: String,
}

/// What `render_plots` did: the charts written, the ones that failed, and remarks on the logs
/// (skipped lines).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlotOutcome {
    pub written: Vec<WrittenPlot>,
    pub failed: Vec<FailedPlot>,
    pub notes: Vec<String>,
}

/// The metrics log of each phase that has one in `base_dir`: `<phase>_d<depth>/metrics.jsonl`
/// when `depth` is given and that log exists, else the most recently modified
/// `<phase>_d<N>/metrics.jsonl`.
pub fn find_metrics_logs(base_dir: &Path, depth: Option<u32>) -> BTreeMap<&'static str, PathBuf> {
    let entries: Vec<PathBuf> =
        std::fs::read_dir(base_dir).map(|dir| dir.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    let mut logs = BTreeMap::new();
    for phase in PHASES {
        let preferred = depth.map(|d| Paths::new(base_dir).checkpoints(phase, d).join(METRICS_FILE));
        let newest = || {
            let prefix = format!("{phase}_d");
            entries
                .iter()
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    name.strip_prefix(&prefix).is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                })
                .map(|p| p.join(METRICS_FILE))
                .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
                .max()
                .map(|(_, p)| p)
        };
        if let Some(path) = preferred.filter(|p| p.is_file()).or_else(newest) {
            logs.insert(phase, path);
        }
    }
    logs
}

/// Draws every chart whose phase log in `logs` holds data for it into `out_dir`, titled with the
/// log's directory. The file of a chart without data is removed (a stale one from an earlier
/// report). Failures are recorded in the outcome, never returned.
pub fn render_plots(logs: &BTreeMap<&'static str, PathBuf>, out_dir: &Path) -> PlotOutcome {
    let mut outcome = PlotOutcome::default();
    let mut parsed: BTreeMap<&str, Result<ParsedLog, PlotError>> = BTreeMap::new();
    for (&phase, path) in logs {
        let log = std::fs::read_to_string(path)
            .map(|text| parse_metrics_log(&text))
            .map_err(|source| PlotError::Read { path: path.clone(), source });
        if let Ok(log) = &log {
            if log.skipped_lines > 0 {
                outcome.notes.push(format!("{}: {} unreadable line(s) skipped", path.display(), log.skipped_lines));
            }
        }
        parsed.insert(phase, log);
    }
    for chart in CHARTS {
        let path = out_dir.join(chart.file);
        let log = match parsed.get(chart.phase) {
            Some(Ok(log)) => log,
            Some(Err(error)) => {
                outcome.failed.push(FailedPlot { file: chart.file.into(), error: error.to_string() });
                continue;
            }
            None => {
                let _ = std::fs::remove_file(&path);
                continue;
            }
        };
        let panels: Vec<Panel> = chart
            .panels
            .iter()
            .map(|spec| Panel {
                y_label: spec.y_label,
                series: spec
                    .sources
                    .iter()
                    .flat_map(|&source| collect_series(&log.records, source))
                    .map(|s| Series { points: thin(s.points), ..s })
                    .collect(),
            })
            .filter(|panel| !panel.series.is_empty())
            .collect();
        if panels.is_empty() {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let dir = logs[chart.phase].parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned());
        let title = match dir {
            Some(dir) => format!("{} ({dir})", chart.title),
            None => chart.title.to_string(),
        };
        let written = draw_chart(&title, &panels).and_then(|svg| {
            crate::fsutil::write_atomic(&path, svg.as_bytes())
                .map_err(|source| PlotError::Write { path: path.clone(), source })
        });
        match written {
            Ok(()) => outcome.written.push(WrittenPlot { title, file: chart.file.into() }),
            Err(e) => outcome.failed.push(FailedPlot { file: chart.file.into(), error: e.to_string() }),
        }
    }
    outcome
}

/// The depth the run was configured with, from the resolved configuration that `report generate`
/// writes beside the report (`config.toml`, `base_train.depth`).
fn configured_depth(report_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(report_dir.join("config.toml")).ok()?;
    let config: toml::Value = toml::from_str(&text).ok()?;
    u32::try_from(config.get("base_train")?.get("depth")?.as_integer()?).ok()
}

/// The run's charts: the metrics logs of the base directory that holds `report_dir`, drawn into
/// `report_dir`.
pub fn render_run_plots(report_dir: &Path) -> PlotOutcome {
    let base_dir = report_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    render_plots(&find_metrics_logs(base_dir, configured_depth(report_dir)), report_dir)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn hex(color: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2)
    }

    /// The value of attribute `name` in the SVG tag `tag`.
    fn attr<'a>(tag: &'a str, name: &str) -> &'a str {
        let start = tag.find(&format!(" {name}=\"")).map(|i| i + name.len() + 3).unwrap_or(tag.len());
        let rest = &tag[start..];
        &rest[..rest.find('"').unwrap_or(rest.len())]
    }

    fn vertices(points: &str) -> Vec<(f64, f64)> {
        points
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    /// The vertices of each series line drawn in `color` (series lines are 2 px wide, axes 1 px).
    fn series_lines(svg: &str, color: RGBColor) -> Vec<Vec<(f64, f64)>> {
        svg.lines()
            .filter(|l| l.starts_with("<polyline") && attr(l, "stroke") == hex(color) && attr(l, "stroke-width") == "2")
            .map(|l| vertices(attr(l, "points")))
            .collect()
    }

    /// The centres of the point markers drawn in `color`.
    fn markers(svg: &str, color: RGBColor) -> Vec<(f64, f64)> {
        svg.lines()
            .filter(|l| l.starts_with("<circle") && attr(l, "fill") == hex(color))
            .map(|l| (attr(l, "cx").parse().unwrap(), attr(l, "cy").parse().unwrap()))
            .collect()
    }

    /// Every text element: its position, anchor and content.
    fn texts(svg: &str) -> Vec<(f64, f64, String, String)> {
        let lines: Vec<&str> = svg.lines().collect();
        lines
            .windows(2)
            .filter(|w| w[0].starts_with("<text"))
            .map(|w| {
                let (x, y) = (attr(w[0], "x").parse().unwrap(), attr(w[0], "y").parse().unwrap());
                (x, y, attr(w[0], "text-anchor").to_string(), w[1].to_string())
            })
            .collect()
    }

    fn has_text(svg: &str, content: &str) -> bool {
        texts(svg).iter().any(|t| t.3 == content)
    }

    /// The numeric tick labels with `anchor` as (pixel along the axis, value) pairs: y ticks are
    /// end-anchored, step ticks centred.
    fn ticks(svg: &str, anchor: &str) -> Vec<(f64, f64)> {
        texts(svg)
            .into_iter()
            .filter(|t| t.2 == anchor)
            .filter_map(|(x, y, _, text)| Some((if anchor == "end" { y } else { x }, text.parse::<f64>().ok()?)))
            .collect()
    }

    /// The value at `pixel` on the axis through the first and last of `ticks`.
    fn invert(ticks: &[(f64, f64)], pixel: f64) -> f64 {
        let ((p1, v1), (p2, v2)) = (ticks[0], ticks[ticks.len() - 1]);
        v1 + (pixel - p1) * (v2 - v1) / (p2 - p1)
    }

    /// One pixel in axis units.
    fn pixel_size(ticks: &[(f64, f64)]) -> f64 {
        let ((p1, v1), (p2, v2)) = (ticks[0], ticks[ticks.len() - 1]);
        ((v2 - v1) / (p2 - p1)).abs()
    }

    /// The plotting area of a one-panel chart, (left, top, right, bottom), from its axis lines.
    fn plot_box(svg: &str) -> (f64, f64, f64, f64) {
        let axes: Vec<Vec<(f64, f64)>> = svg
            .lines()
            .filter(|l| l.starts_with("<polyline") && attr(l, "stroke") == "#000000")
            .map(|l| vertices(attr(l, "points")))
            .filter(|v| v.len() == 2 && ((v[0].0 - v[1].0).abs() > 50.0 || (v[0].1 - v[1].1).abs() > 50.0))
            .collect();
        let y_axis = axes.iter().find(|v| v[0].0 == v[1].0).expect("a y axis");
        let x_axis = axes.iter().find(|v| v[0].1 == v[1].1).expect("an x axis");
        (y_axis[0].0, y_axis[0].1.min(y_axis[1].1), x_axis[0].0.max(x_axis[1].0), x_axis[0].1)
    }

    fn write_log(base_dir: &Path, dir: &str, lines: &[String]) -> PathBuf {
        let path = base_dir.join(dir).join(METRICS_FILE);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    fn logs(entries: &[(&'static str, &Path)]) -> BTreeMap<&'static str, PathBuf> {
        entries.iter().map(|(phase, path)| (*phase, path.to_path_buf())).collect()
    }

    /// A base training log of `steps` steps (the LR warming down over the last third) with an
    /// evaluation every 10 steps and at the end, plus an unreadable line.
    fn base_log(steps: usize, mfu: bool) -> Vec<String> {
        let mut lines = Vec::new();
        for step in 0..=steps {
            if step % 10 == 0 || step == steps {
                lines.push(format!(
                    r#"{{"step":{step},"val_bpb":{},"val_loss":{},"total_training_time":0.0}}"#,
                    3.0 - 0.01 * step as f64,
                    4.0 - 0.01 * step as f64
                ));
            }
            if step < steps {
                let mut record = serde_json::json!({
                    "step": step, "loss": 5.0 - 0.05 * step as f64, "smoothed_loss": 5.2 - 0.05 * step as f64,
                    "lrm": lr_multiplier(step, steps), "tok_per_sec": 1.0e6 + 1000.0 * step as f64, "dt_s": 0.5,
                    "total_training_time": 0.0,
                });
                if mfu {
                    record["mfu"] = serde_json::json!(40.0 + 0.1 * step as f64);
                }
                lines.push(record.to_string());
            }
        }
        lines.push(r#"{"step": 3, "loss": "#.into());
        lines
    }

    fn lr_multiplier(step: usize, steps: usize) -> f64 {
        let warmdown = steps * 2 / 3;
        if step < warmdown {
            1.0
        } else {
            (steps - step) as f64 / (steps - warmdown) as f64
        }
    }

    #[test]
    fn reads_the_lines_of_a_log_and_skips_malformed_ones() {
        let text = "{\"step\":0,\"loss\":2.5}\nnot json\n\n[1,2]\n{\"loss\":1.0}\n{\"step\":\"one\"}\n\
                    {\"step\":1,\"loss\":null}\n{\"step\":2,\"loss\":2.0}\n{\"step\":3,\"lo";
        let log = parse_metrics_log(text);
        assert_eq!(log.records.len(), 3);
        assert_eq!(log.skipped_lines, 5, "the blank line is not counted");
        let loss = collect_series(&log.records, Source::Field { key: "loss", label: "loss" });
        assert_eq!(loss, vec![Series { label: "loss".into(), points: vec![(0.0, 2.5), (2.0, 2.0)] }]);
        assert!(collect_series(&log.records, Source::Field { key: "mfu", label: "MFU" }).is_empty());
    }

    #[test]
    fn pass_at_k_makes_one_series_per_k_in_k_order() {
        let log = parse_metrics_log(
            "{\"step\":0,\"metrics\":{\"pass@10\":0.5,\"pass@2\":0.25,\"pass@1\":0.125,\"other\":1.0,\"pass@3\":null}}\n\
             {\"step\":1,\"reward\":0.5}\n{\"step\":2,\"metrics\":{\"pass@1\":0.375,\"pass@2\":\"x\"}}",
        );
        let series = collect_series(&log.records, Source::MetricsPrefix("pass@"));
        let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["pass@1", "pass@2", "pass@10"]);
        assert_eq!(series[0].points, [(0.0, 0.125), (2.0, 0.375)]);
        assert_eq!(series[1].points, [(0.0, 0.25)]);
    }

    #[test]
    fn thinning_keeps_short_series_and_both_ends_of_long_ones() {
        let short: Vec<(f64, f64)> = (0..MAX_POINTS).map(|i| (i as f64, 0.0)).collect();
        assert_eq!(thin(short.clone()), short);
        let long: Vec<(f64, f64)> = (0..5 * MAX_POINTS + 3).map(|i| (i as f64, i as f64)).collect();
        let thinned = thin(long.clone());
        assert!(thinned.len() <= MAX_POINTS + 1, "{}", thinned.len());
        assert!(thinned.len() > MAX_POINTS / 2, "{}", thinned.len());
        assert_eq!(thinned.first(), long.first());
        assert_eq!(thinned.last(), long.last());
    }

    #[test]
    fn axis_ranges_cover_the_values_and_leave_room_for_a_legend() {
        let (lo, hi) = axis_range([3.0, 2.0, 4.0].into_iter(), 0.0, 0.0);
        assert!(lo < 2.0 && hi > 4.0 && lo > 1.8 && hi < 4.2, "{lo}..{hi}");
        let (lo, hi) = axis_range([2.0, 4.0].into_iter(), 0.3, 0.0);
        assert!(lo < 2.0 && (hi - 4.0) / (hi - lo) >= 0.3 - 1e-9, "{lo}..{hi}");
        for single in [1.0, -250.0, 0.0] {
            let (lo, hi) = axis_range(std::iter::once(single), 0.0, 0.0);
            assert!(lo < single && single < hi, "{single}: {lo}..{hi}");
        }
        let (lo, hi) = axis_range(std::iter::once(7.0), 0.0, 1.0);
        assert!(lo <= 6.0 && hi >= 8.0, "a single step spans its neighbours: {lo}..{hi}");
        assert_eq!(axis_range(std::iter::empty(), 0.0, 0.0), (0.0, 1.0));
    }

    #[test]
    fn the_lr_chart_plots_every_step_at_its_value_inside_the_axes() {
        let dir = tempfile::tempdir().unwrap();
        let steps = 30;
        let log = write_log(dir.path(), "base_d3", &base_log(steps, true));
        let out = dir.path().join("report");
        let outcome = render_plots(&logs(&[("base", &log)]), &out);
        assert!(outcome.failed.is_empty(), "{outcome:?}");
        assert_eq!(outcome.notes.len(), 1, "the unreadable line is noted: {outcome:?}");
        let svg = fs::read_to_string(out.join("base_lr.svg")).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(has_text(&svg, "Base training learning-rate schedule (base_d3)"), "{svg}");
        assert!(has_text(&svg, X_LABEL));
        assert!(has_text(&svg, "LR multiplier (x initial LR)"));

        let lines = series_lines(&svg, PALETTE[0]);
        assert_eq!(lines.len(), 1, "one series: {svg}");
        assert_eq!(lines[0].len(), steps, "a vertex per step");
        assert_eq!(markers(&svg, PALETTE[0]).len(), steps, "a marker per step");
        let (x_ticks, y_ticks) = (ticks(&svg, "middle"), ticks(&svg, "end"));
        assert!(x_ticks.len() >= 2 && y_ticks.len() >= 2, "{svg}");
        let (left, top, right, bottom) = plot_box(&svg);
        for (step, &(x, y)) in lines[0].iter().enumerate() {
            assert!((left..=right).contains(&x) && (top..=bottom).contains(&y), "({x}, {y}) outside the axes");
            let (plotted_step, plotted_lrm) = (invert(&x_ticks, x), invert(&y_ticks, y));
            assert!((plotted_step - step as f64).abs() <= pixel_size(&x_ticks), "step {step} at {plotted_step}");
            let lrm = lr_multiplier(step, steps);
            assert!((plotted_lrm - lrm).abs() <= pixel_size(&y_ticks), "step {step}: lrm {lrm} at {plotted_lrm}");
        }
    }

    #[test]
    fn the_loss_chart_draws_each_series_with_a_legend_and_the_bpb_panel() {
        let dir = tempfile::tempdir().unwrap();
        let steps = 25;
        let log = write_log(dir.path(), "base_d3", &base_log(steps, true));
        render_plots(&logs(&[("base", &log)]), dir.path());
        let svg = fs::read_to_string(dir.path().join("base_loss.svg")).unwrap();
        assert!(has_text(&svg, "Base training loss (base_d3)"));
        for label in ["loss (nats/token)", "validation bpb (bits/byte)", "training loss", "training loss (EMA)"] {
            assert!(has_text(&svg, label), "{label} missing");
        }
        assert!(has_text(&svg, "validation loss"), "legend of the loss panel");
        assert!(!has_text(&svg, "validation bpb"), "a lone series has no legend");
        let evaluations = steps / 10 + 2;
        // The first colour: training loss in the loss panel, validation bpb in the bpb panel.
        let first: Vec<usize> = series_lines(&svg, PALETTE[0]).iter().map(Vec::len).collect();
        assert_eq!(first, [steps, evaluations]);
        assert_eq!(series_lines(&svg, PALETTE[1]).iter().map(Vec::len).collect::<Vec<_>>(), [steps]);
        assert_eq!(series_lines(&svg, PALETTE[2]).iter().map(Vec::len).collect::<Vec<_>>(), [evaluations]);
        assert_eq!(attr(svg.lines().next().unwrap(), "height"), (TITLE_HEIGHT + 2 * PANEL_HEIGHT).to_string());
    }

    #[test]
    fn a_panel_without_data_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let log = write_log(dir.path(), "base_d3", &base_log(12, false));
        render_plots(&logs(&[("base", &log)]), dir.path());
        let svg = fs::read_to_string(dir.path().join("base_throughput.svg")).unwrap();
        assert!(has_text(&svg, "tokens/s") && !has_text(&svg, "MFU (%)"), "{svg}");
        assert_eq!(attr(svg.lines().next().unwrap(), "height"), (TITLE_HEIGHT + PANEL_HEIGHT).to_string());
        assert_eq!(series_lines(&svg, PALETTE[0])[0].len(), 12);

        let log = write_log(dir.path(), "base_d3", &base_log(12, true));
        render_plots(&logs(&[("base", &log)]), dir.path());
        let svg = fs::read_to_string(dir.path().join("base_throughput.svg")).unwrap();
        assert!(has_text(&svg, "tokens/s") && has_text(&svg, "MFU (%)"), "{svg}");
        assert_eq!(series_lines(&svg, PALETTE[0]).len(), 2, "tokens/s and MFU panels");
    }

    #[test]
    fn a_single_point_and_null_values_are_drawn_inside_the_axes() {
        let dir = tempfile::tempdir().unwrap();
        let log = write_log(
            dir.path(),
            "sft_d2",
            &[r#"{"step":7,"loss":3.0,"smoothed_loss":null,"lrm":1.0,"total_training_time":0.0}"#.into()],
        );
        let outcome = render_plots(&logs(&[("sft", &log)]), dir.path());
        assert_eq!(outcome.written.iter().map(|p| p.file.as_str()).collect::<Vec<_>>(), ["sft_loss.svg"]);
        let svg = fs::read_to_string(dir.path().join("sft_loss.svg")).unwrap();
        assert!(has_text(&svg, "Chat SFT loss (sft_d2)"));
        assert!(!has_text(&svg, "validation bpb (bits/byte)"), "no bpb panel without bpb values");
        assert_eq!(series_lines(&svg, PALETTE[0]), [vec![markers(&svg, PALETTE[0])[0]]]);
        assert!(series_lines(&svg, PALETTE[1]).is_empty(), "the null smoothed loss is not drawn");
        let (left, top, right, bottom) = plot_box(&svg);
        let (x, y) = markers(&svg, PALETTE[0])[0];
        assert!(left < x && x < right && top < y && y < bottom, "({x}, {y}) in {left} {top} {right} {bottom}");
        let (x_ticks, y_ticks) = (ticks(&svg, "middle"), ticks(&svg, "end"));
        assert!((invert(&x_ticks, x) - 7.0).abs() <= pixel_size(&x_ticks));
        assert!((invert(&y_ticks, y) - 3.0).abs() <= pixel_size(&y_ticks));
    }

    #[test]
    fn values_too_large_to_plot_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let lines = [
            r#"{"step":0,"lrm":1e308}"#.to_string(),
            r#"{"step":1,"lrm":0.5}"#.into(),
            r#"{"step":2,"lrm":-1e308}"#.into(),
            r#"{"step":3,"lrm":0.25}"#.into(),
            r#"{"step":-1e308,"lrm":0.25}"#.into(),
        ];
        let log = write_log(dir.path(), "base_d2", &lines);
        let outcome = render_plots(&logs(&[("base", &log)]), dir.path());
        assert_eq!(outcome.notes.len(), 1, "the line of step -1e308 is skipped: {outcome:?}");
        let svg = fs::read_to_string(dir.path().join("base_lr.svg")).unwrap();
        assert_eq!(series_lines(&svg, PALETTE[0])[0].len(), 2, "steps 1 and 3");
    }

    #[test]
    fn the_rl_chart_has_reward_and_each_pass_at_k() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        for step in 0..4 {
            if step % 2 == 0 {
                lines.push(format!(
                    r#"{{"step":{step},"metrics":{{"pass@1":0.25,"pass@2":0.5}},"total_training_time":0.0}}"#
                ));
            }
            lines.push(format!(
                r#"{{"step":{step},"loss":0.1,"reward":{},"lrm":1.0,"total_training_time":0.0}}"#,
                0.1 * step as f64
            ));
        }
        let log = write_log(dir.path(), "rl_d2", &lines);
        render_plots(&logs(&[("rl", &log)]), dir.path());
        let svg = fs::read_to_string(dir.path().join("rl_reward.svg")).unwrap();
        for label in
            ["Chat RL reward and pass@k (rl_d2)", "mean reward", "pass@k (fraction solved)", "pass@1", "pass@2"]
        {
            assert!(has_text(&svg, label), "{label} missing");
        }
        let first: Vec<usize> = series_lines(&svg, PALETTE[0]).iter().map(Vec::len).collect();
        assert_eq!(first, [4, 2], "reward per step; pass@1 per evaluation");
        assert_eq!(series_lines(&svg, PALETTE[1]).iter().map(Vec::len).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn charts_without_data_are_not_written_and_stale_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("report");
        fs::create_dir_all(&out).unwrap();
        for stale in ["base_lr.svg", "rl_reward.svg", "mid_loss.svg"] {
            fs::write(out.join(stale), "<svg/>").unwrap();
        }
        let mid = write_log(dir.path(), "mid_d2", &[r#"{"step":0,"loss":4.0,"total_training_time":0.0}"#.into()]);
        let rl = write_log(dir.path(), "rl_d2", &["garbage".into(), r#"{"step":0,"dt_s":1.0}"#.into()]);
        let outcome = render_plots(&logs(&[("mid", &mid), ("rl", &rl)]), &out);
        assert_eq!(outcome.written.iter().map(|p| p.file.as_str()).collect::<Vec<_>>(), ["mid_loss.svg"]);
        assert!(outcome.failed.is_empty());
        assert_eq!(outcome.notes.len(), 1, "{outcome:?}");
        let mut files: Vec<String> =
            fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        files.sort();
        assert_eq!(files, ["mid_loss.svg"]);
        assert!(fs::read_to_string(out.join("mid_loss.svg")).unwrap().contains("Midtraining loss (mid_d2)"));
        assert_eq!(render_plots(&BTreeMap::new(), &out).written, []);
        assert!(!out.join("mid_loss.svg").exists());
    }

    #[test]
    fn an_unreadable_log_fails_its_own_charts_only() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base_d2/metrics.jsonl");
        fs::create_dir_all(&base).unwrap();
        let rl = write_log(dir.path(), "rl_d2", &[r#"{"step":0,"reward":0.5}"#.into()]);
        let outcome = render_plots(&logs(&[("base", &base), ("rl", &rl)]), dir.path());
        let failed: Vec<&str> = outcome.failed.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(failed, ["base_loss.svg", "base_lr.svg", "base_throughput.svg"]);
        assert!(outcome.failed[0].error.contains("base_d2/metrics.jsonl"), "{:?}", outcome.failed[0]);
        assert_eq!(outcome.written.iter().map(|p| p.file.as_str()).collect::<Vec<_>>(), ["rl_reward.svg"]);
    }

    #[test]
    fn finds_the_logs_at_the_configured_depth_else_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let line = [r#"{"step":0,"loss":1.0}"#.to_string()];
        let at = |secs| std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        for (name, modified) in
            [("base_d2", 100), ("base_d4", 200), ("base_eval", 300), ("base_dx", 300), ("mid_d4", 50)]
        {
            let path = write_log(dir.path(), name, &line);
            fs::File::options().write(true).open(&path).unwrap().set_modified(at(modified)).unwrap();
        }
        let found = find_metrics_logs(dir.path(), None);
        assert_eq!(found.keys().copied().collect::<Vec<_>>(), ["base", "mid"]);
        assert_eq!(found["base"], dir.path().join("base_d4").join(METRICS_FILE));
        assert_eq!(found["mid"], dir.path().join("mid_d4").join(METRICS_FILE));
        let found = find_metrics_logs(dir.path(), Some(2));
        assert_eq!(found["base"], dir.path().join("base_d2").join(METRICS_FILE));
        assert_eq!(found["mid"], dir.path().join("mid_d4").join(METRICS_FILE), "no mid_d2: the newest");

        let report = dir.path().join("report");
        fs::create_dir_all(&report).unwrap();
        fs::write(report.join("config.toml"), "[base_train]\ndepth = 2\n").unwrap();
        let outcome = render_run_plots(&report);
        assert!(outcome.written.iter().any(|p| p.title == "Base training loss (base_d2)"), "{outcome:?}");
        assert!(outcome.written.iter().any(|p| p.title == "Midtraining loss (mid_d4)"), "{outcome:?}");
    }
}
