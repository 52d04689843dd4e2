// Draws one simulated step as an SVG Gantt chart: ranks top to bottom, time left to right, one
// box per micro-batch; boxes of the same ring share a colour, local micro-batches are grey.
#pragma once

#include <string>

#include "scheduler/cost_model.h"
#include "scheduler/plan.h"

namespace seqmesh::scheduler {

// Expects item start times set (Simulate does). Returns the SVG text.
std::string GanttSvg(const CostModel& cost, const Plan& plan);

}  // namespace seqmesh::scheduler
