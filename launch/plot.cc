#include "launch/plot.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>

#include "runtime/check.h"

namespace seqmesh::launch {
namespace {

struct Box {
  double x0, y0, x1, y1;  // the plot area, pixels
};
struct Range {
  double lo, hi;
};

std::string TickText(double v, double step) {
  char buf[32];
  if (std::abs(v) >= 1e5 || (std::abs(v) < 1e-3 && v != 0))
    std::snprintf(buf, sizeof buf, "%.2g", v);
  else
    std::snprintf(buf, sizeof buf, "%.*f",
                  step >= 1 ? 0 : static_cast<int>(-std::floor(std::log10(step))), v);
  return buf;
}

void Text(cairo_t* cr, const std::string& s, double x, double y, double ax, double ay, double size,
          bool bold = false) {
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  cairo_move_to(cr, x - ax * e.width - e.x_bearing, y - ay * e.height - e.y_bearing);
  cairo_show_text(cr, s.c_str());
}

void Draw(cairo_t* cr, const Chart& chart, int width, int height) {
  Range xr{std::numeric_limits<double>::max(), std::numeric_limits<double>::lowest()};
  Range yr = xr;
  for (const Series& s : chart.series)
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      xr = {std::min(xr.lo, x), std::max(xr.hi, x)};
      yr = {std::min(yr.lo, y), std::max(yr.hi, y)};
    }
  if (xr.hi == xr.lo) xr = {xr.lo - 1, xr.hi + 1};
  if (yr.hi == yr.lo) yr = {yr.lo - 1, yr.hi + 1};
  const double pad = 0.05 * (yr.hi - yr.lo);
  yr = {yr.lo - pad, yr.hi + pad};
  const std::vector<double> xt = Ticks(xr.lo, xr.hi, 8), yt = Ticks(yr.lo, yr.hi, 6);
  const Box box{72, 44, width - 24.0, height - 56.0};
  auto px = [&](double x) { return box.x0 + (x - xr.lo) / (xr.hi - xr.lo) * (box.x1 - box.x0); };
  auto py = [&](double y) { return box.y1 - (y - yr.lo) / (yr.hi - yr.lo) * (box.y1 - box.y0); };

  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  Text(cr, chart.title, width / 2.0, 14, 0.5, 0, 16, true);
  Text(cr, chart.x_label, (box.x0 + box.x1) / 2, height - 8.0, 0.5, 1, 12);
  cairo_save(cr);
  cairo_translate(cr, 14, (box.y0 + box.y1) / 2);
  cairo_rotate(cr, -M_PI / 2);
  Text(cr, chart.y_label, 0, 0, 0.5, 0.5, 12);
  cairo_restore(cr);
  // Grid and ticks.
  cairo_set_line_width(cr, 1);
  for (double v : yt) {
    if (v < yr.lo || v > yr.hi) continue;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, box.x0, std::round(py(v)) + 0.5);
    cairo_line_to(cr, box.x1, std::round(py(v)) + 0.5);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    Text(cr, TickText(v, yt.size() > 1 ? yt[1] - yt[0] : 1), box.x0 - 6, py(v), 1, 0.5, 11);
  }
  for (double v : xt) {
    if (v < xr.lo || v > xr.hi) continue;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, std::round(px(v)) + 0.5, box.y0);
    cairo_line_to(cr, std::round(px(v)) + 0.5, box.y1);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    Text(cr, TickText(v, xt.size() > 1 ? xt[1] - xt[0] : 1), px(v), box.y1 + 6, 0.5, 0, 11);
  }
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_rectangle(cr, box.x0 + 0.5, box.y0 + 0.5, box.x1 - box.x0, box.y1 - box.y0);
  cairo_stroke(cr);
  // Series, clipped to the plot area, then the legend.
  cairo_save(cr);
  cairo_rectangle(cr, box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0);
  cairo_clip(cr);
  for (const Series& s : chart.series) {
    cairo_set_source_rgb(cr, s.color.r, s.color.g, s.color.b);
    cairo_set_line_width(cr, s.width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    bool pen = false;
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) {
        pen = false;  // a gap
        continue;
      }
      if (s.markers) {
        cairo_new_sub_path(cr);
        cairo_arc(cr, px(x), py(y), 3.5, 0, 2 * M_PI);
        cairo_fill(cr);
      } else if (pen) {
        cairo_line_to(cr, px(x), py(y));
      } else {
        cairo_move_to(cr, px(x), py(y));
        pen = true;
      }
    }
    if (!s.markers) cairo_stroke(cr);
  }
  cairo_restore(cr);
  double ly = box.y0 + 10;
  for (const Series& s : chart.series) {
    if (s.name.empty()) continue;
    cairo_set_source_rgb(cr, s.color.r, s.color.g, s.color.b);
    cairo_rectangle(cr, box.x1 - 150, ly - 4, 14, 8);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    Text(cr, s.name, box.x1 - 130, ly, 0, 0.5, 11);
    ly += 16;
  }
}

void CheckSurface(cairo_surface_t* s, const std::string& path) {
  SM_CHECK(cairo_surface_status(s) == CAIRO_STATUS_SUCCESS)
      << "cannot write the chart '" << path
      << "': " << cairo_status_to_string(cairo_surface_status(s));
}

}  // namespace

std::vector<double> Ticks(double lo, double hi, int count) {
  SM_CHECK(hi > lo && count > 0) << "Ticks: empty range [" << lo << ", " << hi << "]";
  const double raw = (hi - lo) / count;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step)
    out.push_back(std::abs(v) < 1e-12 * step ? 0.0 : v);
  return out;
}

void WriteChart(const Chart& chart, const std::string& path, int width, int height) {
  bool any = false;
  for (const Series& s : chart.series)
    for (const auto& [x, y] : s.points) any = any || (std::isfinite(x) && std::isfinite(y));
  SM_CHECK(any) << "chart '" << chart.title << "' has no finite point";
  {
    const std::string svg = path + ".svg";
    cairo_surface_t* s = cairo_svg_surface_create(svg.c_str(), width, height);
    CheckSurface(s, svg);
    cairo_t* cr = cairo_create(s);
    Draw(cr, chart, width, height);
    cairo_destroy(cr);
    cairo_surface_finish(s);
    CheckSurface(s, svg);
    cairo_surface_destroy(s);
  }
  const std::string png = path + ".png";
  cairo_surface_t* s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cairo_t* cr = cairo_create(s);
  Draw(cr, chart, width, height);
  cairo_destroy(cr);
  const cairo_status_t st = cairo_surface_write_to_png(s, png.c_str());
  cairo_surface_destroy(s);
  SM_CHECK(st == CAIRO_STATUS_SUCCESS)
      << "cannot write the chart '" << png << "': " << cairo_status_to_string(st);
}

}  // namespace seqmesh::launch
