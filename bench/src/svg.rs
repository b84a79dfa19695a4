//! Plain SVG charts (no plotting dependency): horizontal bars with
//! whiskers, and line charts (linear or log y) in one or more panels.

use std::fmt::Write as _;

pub const BLUE: &str = "#1f77b4";
pub const ORANGE: &str = "#ff7f0e";
pub const GREEN: &str = "#2ca02c";
pub const RED: &str = "#d62728";
pub const GRAY: &str = "#7f7f7f";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.0e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// "Nice" ticks covering [lo, hi].
pub fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    let mut v = Vec::new();
    let mut t = first;
    while t <= hi + step * 1e-9 {
        v.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    v
}

pub struct Doc {
    pub w: f64,
    pub h: f64,
    body: String,
}

impl Doc {
    pub fn new(w: f64, h: f64, title: &str) -> Self {
        let mut d = Doc {
            w,
            h,
            body: String::new(),
        };
        d.text(w / 2.0, 22.0, title, 15.0, "middle", "bold");
        d
    }

    pub fn text(&mut self, x: f64, y: f64, s: &str, size: f64, anchor: &str, weight: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}">{}</text>"#,
            esc(s)
        );
    }

    /// A line from `a` to `b`.
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), color: &str, width: f64, dash: bool) {
        let dash = if dash {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        };
        let ((x1, y1), (x2, y2)) = (a, b);
        let _ = writeln!(
            self.body,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{color}" stroke-width="{width}"{dash}/>"#
        );
    }

    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, opacity: f64) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}" fill-opacity="{opacity}"/>"#,
            w.max(0.0),
            h.max(0.0)
        );
    }

    pub fn polyline(&mut self, pts: &[(f64, f64)], color: &str, width: f64) {
        if pts.is_empty() {
            return;
        }
        let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="{width}"/>"#,
            p.join(" ")
        );
    }

    pub fn dot(&mut self, x: f64, y: f64, color: &str) {
        let _ = writeln!(
            self.body,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{color}"/>"#
        );
    }

    pub fn finish(self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{}</svg>\n",
            self.body,
            w = self.w,
            h = self.h
        )
    }
}

/// One bar: label, value, whisker range, colour, note printed after it.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
    pub color: &'static str,
    pub note: String,
}

/// Horizontal bars from 0, with min..max whiskers and a dashed reference
/// line at `reference` (e.g. the baseline), if given.
pub fn bars(title: &str, unit: &str, bars: &[Bar], reference: Option<(f64, &str)>) -> String {
    let row = 26.0;
    let (left, right, top) = (350.0, 170.0, 44.0);
    let w = 980.0;
    let h = top + row * bars.len() as f64 + 50.0;
    let mut d = Doc::new(w, h, title);
    let max = bars
        .iter()
        .map(|b| b.hi.max(b.value))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        * 1.05;
    let max = if max > 0.0 { max } else { 1.0 };
    let pw = w - left - right;
    let x = |v: f64| left + pw * (v / max).clamp(0.0, 1.0);
    let bottom = top + row * bars.len() as f64;
    for t in ticks(0.0, max, 6) {
        d.line((x(t), top), (x(t), bottom), "#dddddd", 1.0, false);
        d.text(x(t), bottom + 16.0, &num(t), 11.0, "middle", "normal");
    }
    d.text(
        left + pw / 2.0,
        bottom + 36.0,
        unit,
        12.0,
        "middle",
        "normal",
    );
    for (i, b) in bars.iter().enumerate() {
        let y = top + row * i as f64;
        d.text(left - 8.0, y + row * 0.65, &b.label, 12.0, "end", "normal");
        if b.value.is_finite() {
            d.rect(left, y + 5.0, x(b.value) - left, row - 10.0, b.color, 0.85);
        }
        if b.lo.is_finite() && b.hi.is_finite() {
            let ym = y + row / 2.0;
            d.line((x(b.lo), ym), (x(b.hi), ym), "#333333", 1.2, false);
            d.line(
                (x(b.lo), ym - 5.0),
                (x(b.lo), ym + 5.0),
                "#333333",
                1.2,
                false,
            );
            d.line(
                (x(b.hi), ym - 5.0),
                (x(b.hi), ym + 5.0),
                "#333333",
                1.2,
                false,
            );
        }
        d.text(
            w - right + 8.0,
            y + row * 0.65,
            &b.note,
            11.0,
            "start",
            "normal",
        );
    }
    if let Some((v, label)) = reference {
        if v.is_finite() {
            d.line((x(v), top - 4.0), (x(v), bottom), RED, 1.2, true);
            d.text(x(v), top - 8.0, label, 11.0, "middle", "normal");
        }
    }
    d.finish()
}

pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
    /// Draw dots at the points as well as the line.
    pub dots: bool,
}

pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
    /// Shaded x ranges with a label (e.g. "flood").
    pub shade: Vec<(f64, f64, String)>,
    /// Vertical dashed markers with a label (e.g. "sync").
    pub marks: Vec<(f64, String)>,
    /// Horizontal dashed line (e.g. the truth, or zero).
    pub hline: Option<f64>,
}

pub struct Axes {
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    /// Fixed y range; otherwise from the data.
    pub y_range: Option<(f64, f64)>,
}

/// A grid of line-chart panels sharing axis labels.
pub fn panels(title: &str, panels: &[Panel], cols: usize, axes: &Axes, pw: f64, ph: f64) -> String {
    let cols = cols.max(1);
    let rows = panels.len().div_ceil(cols);
    let (ml, mt, mb, gap) = (62.0, 46.0, 56.0, 46.0);
    let w = ml + cols as f64 * (pw + gap) + 10.0;
    let legend_h = 22.0;
    let h = mt + rows as f64 * (ph + gap + 18.0) + mb + legend_h;
    let mut d = Doc::new(w, h, title);
    // Legend from the first panel's series names.
    if let Some(p) = panels.first() {
        let mut lx = ml;
        for s in &p.series {
            d.rect(lx, h - legend_h - 2.0, 14.0, 4.0, s.color, 1.0);
            d.text(
                lx + 18.0,
                h - legend_h + 4.0,
                &s.name,
                12.0,
                "start",
                "normal",
            );
            lx += 30.0 + 7.5 * s.name.len() as f64;
        }
    }
    let tf = |v: f64| if axes.log_y { v.max(1e-300).log10() } else { v };
    for (i, p) in panels.iter().enumerate() {
        let (c, r) = (i % cols, i / cols);
        let x0 = ml + c as f64 * (pw + gap);
        let y0 = mt + r as f64 * (ph + gap + 18.0) + 16.0;
        d.text(x0 + pw / 2.0, y0 - 6.0, &p.title, 12.0, "middle", "bold");
        let all: Vec<(f64, f64)> = p
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!axes.log_y || *y > 0.0))
            .collect();
        let (mut xmin, mut xmax) = all
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, _)| {
                (a.min(*x), b.max(*x))
            });
        for (a, b, _) in &p.shade {
            xmin = xmin.min(*a);
            xmax = xmax.max(*b);
        }
        if !xmin.is_finite() || xmax <= xmin {
            xmin = 0.0;
            xmax = 1.0;
        }
        let (ymin, ymax) = match axes.y_range {
            Some((a, b)) => (tf(a), tf(b)),
            None => {
                let (mut a, mut b) = all
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, y)| {
                        (a.min(tf(*y)), b.max(tf(*y)))
                    });
                if let Some(hl) = p.hline {
                    a = a.min(tf(hl));
                    b = b.max(tf(hl));
                }
                if !a.is_finite() || b <= a {
                    (a.min(0.0) - 1.0, b.max(0.0) + 1.0)
                } else if axes.log_y {
                    (a.floor(), b.ceil())
                } else {
                    let pad = (b - a) * 0.08;
                    (a - pad, b + pad)
                }
            }
        };
        let sx = |x: f64| x0 + pw * (x - xmin) / (xmax - xmin);
        let sy = |y: f64| y0 + ph - ph * ((tf(y) - ymin) / (ymax - ymin)).clamp(-0.02, 1.02);
        for (a, b, label) in &p.shade {
            d.rect(sx(*a), y0, sx(*b) - sx(*a), ph, ORANGE, 0.12);
            d.text(
                (sx(*a) + sx(*b)) / 2.0,
                y0 + 14.0,
                label,
                11.0,
                "middle",
                "normal",
            );
        }
        d.line((x0, y0 + ph), (x0 + pw, y0 + ph), "#333333", 1.0, false);
        d.line((x0, y0), (x0, y0 + ph), "#333333", 1.0, false);
        for t in ticks(xmin, xmax, 5) {
            d.line(
                (sx(t), y0 + ph),
                (sx(t), y0 + ph + 4.0),
                "#333333",
                1.0,
                false,
            );
            d.text(sx(t), y0 + ph + 16.0, &num(t), 10.0, "middle", "normal");
        }
        let yt: Vec<f64> = if axes.log_y {
            (ymin as i32..=ymax as i32).map(|e| 10f64.powi(e)).collect()
        } else {
            ticks(ymin, ymax, 5)
        };
        for t in yt {
            let y = sy(t);
            d.line((x0, y), (x0 + pw, y), "#eeeeee", 1.0, false);
            d.text(x0 - 5.0, y + 4.0, &num(t), 10.0, "end", "normal");
        }
        if let Some(hl) = p.hline {
            d.line((x0, sy(hl)), (x0 + pw, sy(hl)), GRAY, 1.0, true);
        }
        for (x, label) in &p.marks {
            if x.is_finite() && *x >= xmin && *x <= xmax {
                d.line((sx(*x), y0), (sx(*x), y0 + ph), GREEN, 1.0, true);
                d.text(sx(*x) + 3.0, y0 + ph - 4.0, label, 10.0, "start", "normal");
            }
        }
        for s in &p.series {
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!axes.log_y || *y > 0.0))
                .map(|(x, y)| (sx(*x), sy(*y)))
                .collect();
            d.polyline(&pts, s.color, 1.4);
            if s.dots {
                for (x, y) in &pts {
                    d.dot(*x, *y, s.color);
                }
            }
        }
    }
    d.text(
        ml + (w - ml) / 2.0,
        h - legend_h - 18.0,
        &axes.x_label,
        12.0,
        "middle",
        "normal",
    );
    let _ = writeln!(
        d.body,
        r#"<text x="16" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        mt + (h - mt - mb) / 2.0,
        mt + (h - mt - mb) / 2.0,
        esc(&axes.y_label)
    );
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.0, 0.9, 3), vec![0.0, 0.5]);
        assert_eq!(ticks(-1.0, 1.0, 4), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
    }

    #[test]
    fn charts_are_svg() {
        let b = bars(
            "t",
            "ns",
            &[Bar {
                label: "a<b".into(),
                value: 3.0,
                lo: 2.0,
                hi: 4.0,
                color: BLUE,
                note: "x".into(),
            }],
            Some((2.0, "base")),
        );
        assert!(b.starts_with("<svg") && b.contains("a&lt;b"));
        let p = panels(
            "t",
            &[Panel {
                title: "p".into(),
                series: vec![Series {
                    name: "s".into(),
                    color: RED,
                    points: vec![(0.0, 1e-3), (1.0, 1e-5)],
                    dots: false,
                }],
                shade: vec![],
                marks: vec![(0.5, "sync".into())],
                hline: None,
            }],
            1,
            &Axes {
                x_label: "x".into(),
                y_label: "y".into(),
                log_y: true,
                y_range: None,
            },
            300.0,
            200.0,
        );
        assert!(p.contains("<polyline") && p.ends_with("</svg>\n"));
    }
}
