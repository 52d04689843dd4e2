// Line charts for `seqmesh report`, drawn once with cairo and written as SVG and PNG: a title,
// axes with round ticks, and series of (x, y) points as lines or markers, each with a legend
// entry. Headless (image and SVG surfaces; no display).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace seqmesh::launch {

struct Rgb {
  double r, g, b;  // 0..1
};

struct Series {
  std::string name;
  Rgb color;
  std::vector<std::pair<double, double>> points;  // (x, y), in x order
  bool markers = false;                           // dots instead of a line
  double width = 2.0;                             // the line's width in pixels
};

struct Chart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
};

// The chart at width x height pixels: `path`.svg and `path`.png. Throws seqmesh::Error naming
// the file when one cannot be written, or when no series has a point.
void WriteChart(const Chart& chart, const std::string& path, int width = 800, int height = 450);

// Round tick values covering [lo, hi] (about `count` of them): 1, 2 or 5 times a power of ten.
std::vector<double> Ticks(double lo, double hi, int count);

}  // namespace seqmesh::launch
