// Python values to token arrays, checked at the boundary: every bad input raises ValueError
// naming the argument (its index, dtype, shape or value) and never reaches the C++ core.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "launch/trainer.h"

namespace seqmesh::python {

// One sequence of token ids: a 1-D C-contiguous numpy array of an integer dtype, or a list or
// tuple of ints; each id in [0, vocab). `what` names the argument in errors.
std::vector<int32_t> TokenIds(pybind11::handle value, const std::string& what, int64_t vocab);

// A batch of documents: a list or tuple of sequences as above, none empty.
launch::Documents DocumentsOf(pybind11::handle value, const std::string& what, int64_t vocab);

// Document boundaries of `num_tokens` tokens: None means one document; otherwise a 1-D integer
// sequence starting at 0, strictly increasing, ending at num_tokens.
std::vector<int32_t> CuSeqlensOf(pybind11::handle value, int64_t num_tokens);

}  // namespace seqmesh::python
