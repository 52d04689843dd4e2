#include "python/src/arrays.h"

#include <limits>
#include <string>

namespace py = pybind11;

namespace seqmesh::python {
namespace {

// Integer values of `value` (not yet range-checked against a vocab).
std::vector<int64_t> Integers(py::handle value, const std::string& what) {
  std::vector<int64_t> out;
  if (py::isinstance<py::array>(value)) {
    const py::array a = py::reinterpret_borrow<py::array>(value);
    const char kind = a.dtype().kind();
    if (kind != 'i' && kind != 'u')
      throw py::value_error(what + " has dtype " + std::string(py::str(a.dtype())) +
                            "; token ids are integers: pass np.asarray(" + what +
                            ", dtype=np.int32)");
    if (a.ndim() != 1)
      throw py::value_error(what + " has " + std::to_string(a.ndim()) +
                            " dimensions; pass a 1-D array of token ids");
    if (!(a.flags() & py::array::c_style))
      throw py::value_error(what + " is not contiguous (a strided view); pass " +
                            "np.ascontiguousarray(" + what + ")");
    const py::array_t<int64_t, py::array::forcecast> wide(a);
    const int64_t* p = wide.data();
    out.assign(p, p + wide.size());
    return out;
  }
  if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
    const py::sequence s = py::reinterpret_borrow<py::sequence>(value);
    for (size_t i = 0; i < s.size(); ++i) {
      const py::handle item = s[i];
      if (!py::isinstance<py::int_>(item) || py::isinstance<py::bool_>(item))
        throw py::value_error(
            what + "[" + std::to_string(i) + "] is " + std::string(py::str(py::repr(item))) + " (" +
            std::string(py::str(item.get_type().attr("__name__"))) + "); token ids are ints");
      try {
        out.push_back(item.cast<int64_t>());
      } catch (const py::cast_error&) {
        out.push_back(std::numeric_limits<int64_t>::max());  // beyond any vocab
      }
    }
    return out;
  }
  throw py::value_error(what + " is a " + std::string(py::str(value.get_type().attr("__name__"))) +
                        "; pass a 1-D numpy integer array or a list of ints");
}

}  // namespace

std::vector<int32_t> TokenIds(py::handle value, const std::string& what, int64_t vocab) {
  const std::vector<int64_t> wide = Integers(value, what);
  if (wide.empty()) throw py::value_error(what + " is empty; it needs at least one token");
  std::vector<int32_t> ids(wide.size());
  for (size_t i = 0; i < wide.size(); ++i) {
    if (wide[i] < 0 || wide[i] >= vocab)
      throw py::value_error(what + "[" + std::to_string(i) + "] is token id " +
                            std::to_string(wide[i]) + ", outside the model's vocabulary [0, " +
                            std::to_string(vocab) + ") (model.vocab)");
    ids[i] = static_cast<int32_t>(wide[i]);
  }
  return ids;
}

launch::Documents DocumentsOf(py::handle value, const std::string& what, int64_t vocab) {
  if (py::isinstance<py::array>(value) || py::isinstance<py::str>(value) ||
      !(py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)))
    throw py::value_error(what + " must be a list of documents (each a 1-D int32 array or a " +
                          "list of ints); wrap a single document as [doc]");
  const py::sequence s = py::reinterpret_borrow<py::sequence>(value);
  if (s.size() == 0) throw py::value_error(what + " is empty; pass at least one document");
  launch::Documents docs;
  for (size_t d = 0; d < s.size(); ++d)
    docs.push_back(TokenIds(s[d], what + "[" + std::to_string(d) + "]", vocab));
  return docs;
}

std::vector<int32_t> CuSeqlensOf(py::handle value, int64_t num_tokens) {
  if (value.is_none()) return {0, static_cast<int32_t>(num_tokens)};
  const std::vector<int64_t> cu = Integers(value, "cu_seqlens");
  const auto bad = [&](const std::string& why) {
    throw py::value_error("cu_seqlens " + why + " (the document boundaries of " +
                          std::to_string(num_tokens) + " tokens: 0, the end of each document, " +
                          std::to_string(num_tokens) + ")");
  };
  if (cu.size() < 2) bad("needs at least two entries");
  if (cu.front() != 0) bad("must start at 0, not " + std::to_string(cu.front()));
  if (cu.back() != num_tokens)
    bad("must end at " + std::to_string(num_tokens) + ", not " + std::to_string(cu.back()));
  for (size_t i = 1; i < cu.size(); ++i)
    if (cu[i] <= cu[i - 1])
      bad("must increase strictly, but entry " + std::to_string(i) + " is " +
          std::to_string(cu[i]) + " after " + std::to_string(cu[i - 1]));
  return std::vector<int32_t>(cu.begin(), cu.end());
}

}  // namespace seqmesh::python
