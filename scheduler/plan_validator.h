// Checks a StepPlan against the invariants listed in proto/step_plan.proto before it is served.
// Every violation found is reported; each message names the rule, and the rank, sequence and
// ring it concerns.
#pragma once

#include <string>
#include <vector>

#include "proto/step_plan.pb.h"

namespace seqmesh::scheduler {

// Returns the violations (empty: the plan is valid). Stops after `max_errors`.
std::vector<std::string> ValidateStepPlan(const proto::StepPlan& plan, size_t max_errors = 20);

// Throws seqmesh::Error carrying the first violations when the plan is invalid.
void CheckStepPlan(const proto::StepPlan& plan);

}  // namespace seqmesh::scheduler
