#include "scheduler/gantt.h"

#include <algorithm>
#include <sstream>

namespace seqmesh::scheduler {

std::string GanttSvg(const CostModel& cost, const Plan& plan) {
  const double width = 1600, left = 60;
  const double row = std::max(1.0, std::min(12.0, 1200.0 / std::max(1, plan.num_ranks)));
  double step = 0;
  std::vector<double> durations;
  std::vector<int64_t> lengths;
  for (const WorkItem& item : plan.items) {
    lengths.clear();
    for (int32_t s : item.sequences) lengths.push_back(plan.lengths[s]);
    durations.push_back(item.duration_ms > 0
                            ? item.duration_ms
                            : RingCost(cost, lengths, static_cast<int>(item.ring.size())).total());
    step = std::max(step, item.start_ms + durations.back());
  }
  const double scale = step > 0 ? (width - left - 10) / step : 1;
  std::ostringstream os;
  os << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='"
     << row * plan.num_ranks + 40 << "'>\n<text x='4' y='14' font-size='12'>" << plan.planner
     << ": step " << step << " ms, " << plan.num_ranks << " ranks</text>\n";
  int ring = 0;
  for (size_t i = 0; i < plan.items.size(); ++i) {
    const WorkItem& item = plan.items[i];
    std::string fill = "#bbbbbb";
    if (item.ring.size() > 1) {
      std::ostringstream c;
      c << "hsl(" << (ring++ * 137) % 360 << ",70%,50%)";
      fill = c.str();
    }
    for (int32_t r : item.ring) {
      os << "<rect x='" << left + item.start_ms * scale << "' y='" << 20 + r * row << "' width='"
         << std::max(0.5, durations[i] * scale) << "' height='" << row
         << "' stroke='white' stroke-width='0.2' fill='" << fill << "'/>\n";
    }
  }
  os << "</svg>\n";
  return os.str();
}

}  // namespace seqmesh::scheduler
