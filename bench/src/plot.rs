//! PNG plots for the peers section (feature `plots`): produce latency
//! against load per durability class (W2), flat-out throughput per system
//! (W1) and small-record rates per partition count (W3).
//!
//! Drawn with plotters' bitmap backend; text goes through ab_glyph with the
//! DejaVu font read from disk, so the plots need no system font lookup.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::driver::{Durability, System};
use crate::report::{CLASSES, ReportError, sig, system_rank};
use crate::results::{RunResult, SuiteResults};

/// Debian's `fonts-dejavu-core`.
const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The family every text style below asks for; the font is registered under it.
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1000, 600);
/// Width of a bar group on the x axis. Integer units, because plotters can
/// format only integer axes with key points of our choosing.
const GROUP: u32 = 100;

/// Whether the font is registered with plotters. A mutex rather than a
/// `OnceLock` so concurrent first calls read and register it only once.
static FONT_REGISTERED: Mutex<bool> = Mutex::new(false);

/// Writes the plots the results have data for into `dir` and returns their paths:
/// `peers-w2-latency-<class>.png`, `peers-w1-throughput.png`, `peers-w3-records.png`.
pub fn draw(results: &SuiteResults, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    draw_with_font(results, dir, Path::new(FONT_PATH))
}

fn draw_with_font(
    results: &SuiteResults,
    dir: &Path,
    font: &Path,
) -> Result<Vec<PathBuf>, ReportError> {
    register(font)?;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for class in CLASSES {
        let runs: Vec<&RunResult> = results
            .runs
            .iter()
            .filter(|r| r.workload == "W2" && r.durability == class)
            .filter(|r| r.target_rate.is_some() && r.produce.is_some())
            .collect();
        if !runs.is_empty() {
            let path = dir.join(format!("peers-w2-latency-{}.png", class.as_str()));
            latency(&path, class, &runs)?;
            written.push(path);
        }
    }
    let w1 = Bars::of(
        results,
        "W1",
        |_, class| class.as_str().to_string(),
        |r| r.mb_per_s,
    );
    if !w1.values.is_empty() {
        let path = dir.join("peers-w1-throughput.png");
        w1.draw(&path, "W1 flat-out throughput by durability class", "MB/s")?;
        written.push(path);
    }
    let w3 = Bars::of(
        results,
        "W3",
        |p, class| {
            let s = if p == 1 { "" } else { "s" };
            format!("{}, {p} partition{s}", class.as_str())
        },
        |r| r.records_per_s,
    );
    if !w3.values.is_empty() {
        let path = dir.join("peers-w3-records.png");
        w3.draw(&path, "W3 small records, flat out", "records/s")?;
        written.push(path);
    }
    Ok(written)
}

/// Reads the font and registers it with plotters, once per process.
fn register(path: &Path) -> Result<(), ReportError> {
    // Checked on every call, so a missing font is reported even after
    // another font was registered.
    std::fs::metadata(path).map_err(|source| ReportError::FontMissing {
        path: path.to_path_buf(),
        source,
    })?;
    // A panic elsewhere while holding the lock leaves the flag valid.
    let mut registered = FONT_REGISTERED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if *registered {
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(|source| ReportError::FontMissing {
        path: path.to_path_buf(),
        source,
    })?;
    // plotters keeps registered fonts for the life of the process and wants
    // `'static` bytes: one copy is leaked, once (the flag guards it).
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| ReportError::FontInvalid {
        path: path.to_path_buf(),
    })?;
    *registered = true;
    Ok(())
}

/// Turns any plotters error into ours, naming the file being drawn.
fn failed<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> ReportError + '_ {
    move |e| ReportError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// One colour per system, the same in every plot.
fn color(s: System) -> RGBColor {
    match s {
        System::StrataGrpc => RGBColor(31, 119, 180),
        System::StrataHttp => RGBColor(23, 190, 207),
        System::Kafka => RGBColor(148, 103, 189),
        System::Nats => RGBColor(44, 160, 44),
        System::Redis => RGBColor(214, 39, 40),
    }
}

/// The systems among `runs`, in the report's order.
fn systems_of<'a>(runs: impl Iterator<Item = &'a System>) -> Vec<System> {
    let mut systems: Vec<System> = Vec::new();
    for &s in runs {
        if !systems.contains(&s) {
            systems.push(s);
        }
    }
    systems.sort_by_key(|&s| system_rank(s));
    systems
}

/// Produce p99 (solid, dots) and p50 (dashed) against the target rate, log y.
fn latency(path: &Path, class: Durability, runs: &[&RunResult]) -> Result<(), ReportError> {
    let fail = failed(path);
    // (rate, p50, p99) per run; the caller kept only runs that have both.
    let point = |r: &RunResult| {
        let l = r.produce?;
        Some((r.target_rate?, l.p50_ms, l.p99_ms))
    };
    let points: Vec<(System, (f64, f64, f64))> = runs
        .iter()
        .filter_map(|r| Some((r.system, point(r)?)))
        .filter(|(_, (x, a, b))| x.is_finite() && *a > 0.0 && *b > 0.0)
        .collect();
    let (x_lo, x_hi) = bounds(points.iter().map(|(_, p)| p.0));
    let (y_lo, y_hi) = bounds(points.iter().flat_map(|(_, p)| [p.1, p.2]));
    let x_pad = ((x_hi - x_lo) * 0.05).max(x_hi.abs() * 0.05).max(1.0);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&fail)?;
    let title = format!("W2 produce latency against load, {} class", class.as_str());
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 26))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (x_lo - x_pad)..(x_hi + x_pad),
            ((y_lo * 0.7).max(1e-3)..(y_hi * 1.5).max(1e-2)).log_scale(),
        )
        .map_err(&fail)?;
    chart
        .configure_mesh()
        .x_desc("target rate (records/s)")
        .y_desc("produce latency (ms, log scale)")
        .x_label_formatter(&|v| sig(*v))
        .y_label_formatter(&|v| sig(*v))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .draw()
        .map_err(&fail)?;
    for system in systems_of(points.iter().map(|(s, _)| s)) {
        let c = color(system);
        let mut mine: Vec<(f64, f64, f64)> = points
            .iter()
            .filter(|(s, _)| *s == system)
            .map(|(_, p)| *p)
            .collect();
        mine.sort_by(|a, b| a.0.total_cmp(&b.0));
        let p99: Vec<(f64, f64)> = mine.iter().map(|p| (p.0, p.2)).collect();
        let p50: Vec<(f64, f64)> = mine.iter().map(|p| (p.0, p.1)).collect();
        let solid = c.stroke_width(3);
        chart
            .draw_series(LineSeries::new(p99.clone(), solid))
            .map_err(&fail)?
            .label(format!("{} p99", system.as_str()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], solid));
        chart
            .draw_series(p99.iter().map(|&p| Circle::new(p, 4, c.filled())))
            .map_err(&fail)?;
        let dashed = c.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(p50, 8, 5, dashed))
            .map_err(&fail)?
            .label(format!("{} p50", system.as_str()))
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (9, 0)], dashed)
                    + PathElement::new(vec![(15, 0), (24, 0)], dashed)
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&fail)?;
    root.present().map_err(&fail)
}

/// The smallest and largest of `values`; (1, 1) when there are none.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo.is_finite() { (lo, hi) } else { (1.0, 1.0) }
}

/// Bars per system, grouped: a group is a class, or a class and partition count.
struct Bars {
    groups: Vec<String>,
    /// (group index, system, value).
    values: Vec<(usize, System, f64)>,
}

impl Bars {
    /// The flat-out runs of `workload`, grouped by `group(partitions, class)`,
    /// in class order then partition count; the first run of a system in a
    /// group counts.
    fn of(
        results: &SuiteResults,
        workload: &str,
        group: impl Fn(u32, Durability) -> String,
        value: impl Fn(&RunResult) -> f64,
    ) -> Bars {
        let mut runs: Vec<&RunResult> = results
            .runs
            .iter()
            .filter(|r| r.workload == workload && r.target_rate.is_none())
            .filter(|r| value(r).is_finite() && value(r) >= 0.0)
            .collect();
        let class_rank = |d: Durability| CLASSES.iter().position(|c| *c == d);
        runs.sort_by_key(|r| (class_rank(r.durability), r.partitions));
        let mut bars = Bars {
            groups: Vec::new(),
            values: Vec::new(),
        };
        for r in runs {
            let name = group(r.partitions, r.durability);
            let g = match bars.groups.iter().position(|n| *n == name) {
                Some(g) => g,
                None => {
                    bars.groups.push(name);
                    bars.groups.len() - 1
                }
            };
            if !bars
                .values
                .iter()
                .any(|(h, s, _)| *h == g && *s == r.system)
            {
                bars.values.push((g, r.system, value(r)));
            }
        }
        bars
    }

    fn draw(&self, path: &Path, title: &str, unit: &str) -> Result<(), ReportError> {
        let fail = failed(path);
        let systems = systems_of(self.values.iter().map(|(_, s, _)| s));
        let width = GROUP * 8 / 10 / u32::try_from(systems.len().max(1)).unwrap_or(GROUP);
        let top = bounds(self.values.iter().map(|v| v.2)).1.max(1e-9) * 1.2;
        let groups = u32::try_from(self.groups.len()).unwrap_or(u32::MAX / GROUP);
        let centers: Vec<u32> = (0..groups).map(|g| g * GROUP + GROUP / 2).collect();
        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(&fail)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FAMILY, 26))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d((0..groups * GROUP).with_key_points(centers), 0.0..top)
            .map_err(&fail)?;
        let label = |x: &u32| {
            let g = usize::try_from(x / GROUP).unwrap_or(usize::MAX);
            self.groups.get(g).cloned().unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&label)
            .y_desc(unit)
            .y_label_formatter(&|v| sig(*v))
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 17))
            .draw()
            .map_err(&fail)?;
        let above =
            TextStyle::from((FAMILY, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        for (i, &system) in systems.iter().enumerate() {
            let c = color(system);
            let offset = GROUP / 10 + u32::try_from(i).unwrap_or(0) * width;
            let bars: Vec<(u32, f64)> = self
                .values
                .iter()
                .filter(|(_, s, _)| *s == system)
                .map(|&(g, _, v)| (u32::try_from(g).unwrap_or(0) * GROUP + offset, v))
                .collect();
            chart
                .draw_series(
                    bars.iter().map(|&(x, v)| {
                        Rectangle::new([(x, 0.0), (x + width * 9 / 10, v)], c.filled())
                    }),
                )
                .map_err(&fail)?
                .label(system.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
            chart
                .draw_series(bars.iter().map(|&(x, v)| {
                    EmptyElement::at((x + width * 9 / 20, v))
                        + Text::new(sig(v), (0, -3), above.clone())
                }))
                .map_err(&fail)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(&fail)?;
        root.present().map_err(&fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{fixture, run};

    const PNG: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

    /// The report's fixture with every W2 load level and W3 on 1 and 6 partitions.
    fn results() -> SuiteResults {
        let mut r = fixture();
        let systems = [
            (System::StrataGrpc, 1.0),
            (System::Nats, 2.5),
            (System::Redis, 0.6),
        ];
        for (load, rate) in [(10, 4_000.0), (25, 10_000.0), (75, 30_000.0)] {
            for (system, slower) in systems {
                let p99 = slower * (1.0 + rate / 10_000.0);
                let case = format!("load {load}%");
                r.runs.push(run(
                    "W2",
                    &case,
                    system,
                    Durability::Fsync,
                    Some(rate),
                    rate,
                    Some(p99),
                ));
            }
        }
        for (partitions, scale) in [(1, 1.0), (6, 3.0)] {
            for (system, rate) in [(System::StrataGrpc, 200_000.0), (System::Redis, 80_000.0)] {
                for class in CLASSES {
                    let case = format!("{partitions} partitions, max");
                    let mut w3 = run("W3", &case, system, class, None, rate * scale, Some(5.0));
                    w3.partitions = partitions;
                    r.runs.push(w3);
                }
            }
        }
        r
    }

    #[test]
    fn draws_every_plot_as_png() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let written = draw(&results(), dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| Some(p.file_name()?.to_str()?.to_string()))
            .collect();
        assert_eq!(
            names,
            [
                "peers-w2-latency-fsync.png",
                "peers-w2-latency-memory.png",
                "peers-w1-throughput.png",
                "peers-w3-records.png"
            ]
        );
        for path in &written {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(bytes.starts_with(&PNG), "{} is not a PNG", path.display());
            // A blank 1000×600 PNG is a few kB; axes, text and series make it bigger.
            assert!(
                bytes.len() > 20_000,
                "{}: {} bytes",
                path.display(),
                bytes.len()
            );
        }
    }

    #[test]
    fn nothing_to_plot_writes_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let written = draw(&SuiteResults::default(), dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(written.is_empty(), "{written:?}");
    }

    #[test]
    fn a_missing_font_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let font = dir.path().join("no-such-font.ttf");
        match draw_with_font(&results(), dir.path(), &font) {
            Err(e @ ReportError::FontMissing { .. }) => {
                assert!(e.to_string().contains("no-such-font.ttf"), "{e}");
                assert!(e.to_string().contains("fonts-dejavu-core"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    #[ignore = "writes the plots to /tmp/strata-bench-plots to look at"]
    fn keep_plots() {
        let dir = Path::new("/tmp/strata-bench-plots");
        draw(&results(), dir).unwrap_or_else(|e| panic!("{e}"));
    }
}
