// fusedloss._core: the binding layer only (no math; that lives in cpp/include/fusedloss).
//
// elementwise(loss, params, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads[, cols]) -> float
// and multiclass(loss, packed, ignore_index, C, x, labels, q, w, cw, scale, reduce, value_out, grad_out,
// hess_out, nthreads) -> float implement the kernel contract of src/fusedloss/backends/__init__.py for
// float32 and float64. Arrays are never converted (the check is py::array_t<T, c_style>'s own, as
// .noconvert() would apply it): a wrong dtype or a non-contiguous array raises TypeError instead of being
// copied silently. (The one copy: an array at an address that is not a multiple of its item size, which the
// kernels may not read or write through a T*, goes through an aligned copy; aligned.hpp.) Everything is checked
// before any memory is touched (labels included: compiled code never trusts the caller with an index); the GIL
// is released for the loop only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <stdexcept>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "aligned.hpp"
#include "fusedloss/isa_select.hpp"
#include "fusedloss/kernel_api.hpp"
#include "fusedloss/pool.hpp"
#include "fusedloss/reduce.hpp"  // kBlock, kParallelMin (baseline level)

namespace py = pybind11;
namespace fl = fusedloss;

namespace fusedloss {
void bind_ctc(py::module_& m, const std::string& isa);       // cpp/src/ctc_binding.cpp
void bind_pairwise(py::module_& m, const std::string& isa);  // cpp/src/pairwise_binding.cpp
void bind_overlap(py::module_& m);                            // cpp/src/overlap_binding.cpp
py::dict build_info(const char* isa);                        // cpp/src/build_info.cpp
}

namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style>;


// The kernel tables and their entry types live in kernel_api.hpp; the tables themselves in kernels_elementwise.cpp and kernels_rows.cpp.
using fl::LossEntry;
using fl::RowEntry;
template <class T>
using Kernel = fl::Kernel<T>;
template <class T>
using RowKernel = fl::RowKernel<T>;

// Set once at import (PYBIND11_MODULE), read-only afterwards.
const fl::KernelTable* g_kernels = nullptr;

template <class E>
struct TableView {
  const E* first;
  std::size_t n;
  const E* begin() const { return first; }
  const E* end() const { return first + n; }
};
TableView<LossEntry> elementwise_table() { return {g_kernels->elementwise, g_kernels->n_elementwise}; }
TableView<RowEntry> multiclass_table() { return {g_kernels->multiclass, g_kernels->n_multiclass}; }

template <class Table>
std::string known_names(const Table& table) {
  std::string s;
  for (const auto& e : table) {
    if (!s.empty()) s += ", ";
    s += e.name;
  }
  return s;
}

const LossEntry& find_loss(std::string_view name) {
  for (const auto& e : elementwise_table()) {
    if (name == e.name) return e;
  }
  throw py::value_error("unknown elementwise loss '" + std::string(name) + "'; known: " + known_names(elementwise_table()));
}

const RowEntry& find_row_loss(std::string_view name) {
  for (const auto& e : multiclass_table()) {
    if (name == e.name) return e;
  }
  throw py::value_error("unknown multiclass loss '" + std::string(name) + "'; known: " + known_names(multiclass_table()));
}

// [lo, hi) byte range of an array, for overlap checks.
struct Span {
  const char* lo;
  const char* hi;
};

template <class A>
Span span_of(const A& a) {
  const char* lo = reinterpret_cast<const char*>(a.data());
  return {lo, lo + a.nbytes()};
}

bool overlap(Span a, Span b) { return a.lo < b.hi && b.lo < a.hi; }

template <class A>
void check_len(const A& a, const char* what, py::ssize_t n, const char* of) {
  if (a.ndim() != 1) {
    throw py::value_error(std::string(what) + " must be 1-D, got " + std::to_string(a.ndim()) + " dimensions");
  }
  if (a.shape(0) != n) {
    throw py::value_error(std::string(what) + " must have length " + std::to_string(n) + " (" + of + "), got " +
                          std::to_string(a.shape(0)));
  }
}

// The outputs of a call (value, gradient, Hessian; each may be absent), checked before anything is written:
// 1-D of length ``lengths[k]`` (``of[k]`` says what that length is), writeable, no overlap with each other, and
// none with an input (``inputs``; an absent one has a null span) unless the output is exactly that input (the
// same bytes) and ``may_be(k, i)`` allows output k to be input i: the kernel reads each element of such an input
// before it writes that element. ``refused`` says why an output may not be an input here.
template <class T, std::size_t NIn, class MayBe>
void check_outputs(const std::optional<Array<T>> (&outs)[3], const py::ssize_t (&lengths)[3],
                   const char* const (&of)[3], const Span (&inputs)[NIn], MayBe may_be, const char* refused) {
  static const char* const names[3] = {"value_out", "grad_out", "hess_out"};
  Span spans[3] = {};
  for (int k = 0; k < 3; ++k) {
    if (!outs[k]) continue;
    const Array<T>& o = *outs[k];
    check_len(o, names[k], lengths[k], of[k]);
    if (!o.writeable()) throw py::value_error(std::string(names[k]) + " is read-only");
    spans[k] = span_of(o);
    if (o.size() == 0) continue;
    for (int j = 0; j < k; ++j) {
      if (outs[j] && overlap(spans[k], spans[j])) {
        throw py::value_error(std::string(names[k]) + " and " + names[j] + " must not overlap");
      }
    }
    for (std::size_t i = 0; i < NIn; ++i) {
      const Span& in = inputs[i];
      if (!in.lo || !overlap(spans[k], in)) continue;
      if (in.lo != spans[k].lo || in.hi != spans[k].hi) {
        throw py::value_error(std::string(names[k]) + " partly overlaps an input array; pass a separate array");
      }
      if (!may_be(k, i)) {
        throw py::value_error(std::string(names[k]) + " is an input array, which " + refused +
                              "; pass a separate array");
      }
    }
  }
}

// Arrays arrive as handles and are checked with Array<T>::check_, the very test that
// py::arg(...).noconvert() applies to a py::array_t<T, c_style> (exact dtype, C-contiguous, never a copy),
// and then borrowed. Letting pybind11 cast them instead costs about 0.5 us per array (it goes through
// PyArray_FromAny even when nothing needs converting) and, for float32, a failed float64 overload first:
// on a 1000-element call that is several times the kernel's own time.
template <class T>
constexpr const char* dtype_name() {
  return std::is_same_v<T, float> ? "float32" : "float64";
}

std::string describe(py::handle h) {
  if (py::isinstance<py::array>(h)) {
    const auto a = py::reinterpret_borrow<py::array>(h);
    const bool contiguous = (a.flags() & py::array::c_style) != 0;
    return std::string(contiguous ? "an array" : "a non-C-contiguous array") + " of dtype " +
           std::string(py::str(a.dtype()));
  }
  return std::string("an object of type ") + Py_TYPE(h.ptr())->tp_name;
}

template <class T>
std::optional<Array<T>> borrow(py::handle h, const char* what, bool optional, const char* like = "p") {
  if (optional && h.is_none()) return std::nullopt;
  if (!Array<T>::check_(h)) {
    throw py::type_error(std::string(what) + " must be a C-contiguous numpy array of dtype " + dtype_name<T>() +
                         " (the dtype of " + like + ")" + (optional ? " or None" : "") + ", got " + describe(h));
  }
  return py::reinterpret_borrow<Array<T>>(h);
}

// Below this many elements the GIL stays held: releasing and re-taking it costs about 0.25 us, more than
// other Python threads could gain during so short a loop.
constexpr py::ssize_t kReleaseGilMin = static_cast<py::ssize_t>(fl::kBlock);

// A loss's scalar parameters (LossSpec.packed): any sequence of exactly `arity` numbers.
fl::Params read_params(py::handle h, std::size_t arity, const char* loss) {
  const std::string want = std::to_string(arity) + " float" + (arity == 1 ? "" : "s");
  if (!PySequence_Check(h.ptr()) || PySequence_Size(h.ptr()) != static_cast<py::ssize_t>(arity)) {
    if (PyErr_Occurred()) PyErr_Clear();
    throw py::type_error(std::string("params of ") + loss + " must be a sequence of " + want +
                         " (LossSpec.packed), got " + (PySequence_Check(h.ptr()) ? "a sequence of length " +
                         std::to_string(PySequence_Size(h.ptr())) : describe(h)));
  }
  fl::Params params;
  params.n = arity;
  const py::sequence seq = py::reinterpret_borrow<py::sequence>(h);
  for (std::size_t k = 0; k < arity; ++k) {
    const py::object item = seq[k];
    const double v = PyFloat_AsDouble(item.ptr());
    if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
    params.v[k] = v;
  }
  return params;
}

// The binary metrics table of elementwise_metrics (kernel_api.hpp: BinaryMetricsArgs), as passed.
struct MetricsTable {
  py::handle table;
  std::size_t nbins;
  bool probabilities;
  std::size_t ece_bins;
};

// One elementwise call; with `metrics`, the loss pass with the binary metrics (value or reduction, no Hessian).
// O: the outputs' dtype, T (p's) or float for float32 outputs of a float64 call (ElementwiseArgs::grad_f32).
template <class T, class O = T>
double run_elementwise(const LossEntry& entry, const fl::Params& params, py::handle p_h, py::handle y_h, py::handle w_h,
                       double scale, bool reduce, py::handle v_h, py::handle g_h, py::handle h_h, int nthreads,
                       py::handle cols_h, const MetricsTable* metrics = nullptr) {
  const Array<T> p = *borrow<T>(p_h, "p", false);
  const Array<T> y = *borrow<T>(y_h, "y", false);
  const std::optional<Array<T>> w = borrow<T>(w_h, "w", true);
  const std::optional<Array<T>> cols = borrow<T>(cols_h, "cols", true);
  constexpr bool narrow = !std::is_same_v<O, T>;
  const char* like = narrow ? "the first output given; a float64 call's outputs are all float64 or all float32" : "p";
  std::optional<Array<O>> outs[3] = {borrow<O>(v_h, "value_out", true, like), borrow<O>(g_h, "grad_out", true, like),
                                     borrow<O>(h_h, "hess_out", true, like)};

  if (p.ndim() != 1) throw py::value_error("p must be 1-D, got " + std::to_string(p.ndim()) + " dimensions");
  const py::ssize_t n = p.shape(0);
  check_len(y, "y", n, "the length of p");
  if (w) check_len(*w, "w", n, "the length of p");
  if (nthreads < 1) throw py::value_error("nthreads must be >= 1, got " + std::to_string(nthreads));
  py::ssize_t ncols = 0;
  if (cols) {
    if (!entry.column_param) {
      throw py::value_error(std::string("cols was given, but ") + entry.name + " has no per-column parameter");
    }
    if (cols->ndim() != 1) {
      throw py::value_error("cols must be 1-D, got " + std::to_string(cols->ndim()) + " dimensions");
    }
    ncols = cols->shape(0);
    if (ncols < 1 || n % ncols != 0) {
      throw py::value_error("the length of cols (" + std::to_string(ncols) + ") must be >= 1 and divide the length of p (" +
                            std::to_string(n) + ")");
    }
  }

  // An output may be the very array it is computed from when one pass computes everything (element i is read
  // before it is written; cols is read at element i before element i is written).
  const Span in_spans[4] = {span_of(p), span_of(y), w ? span_of(*w) : Span{nullptr, nullptr},
                            cols ? span_of(*cols) : Span{nullptr, nullptr}};
  const bool one_pass = fl::elementwise_one_pass(bool(outs[0]), reduce, bool(outs[1]), bool(outs[2]));
  check_outputs(outs, {n, n, n}, {"the length of p", "the length of p", "the length of p"}, in_spans,
                [one_pass](int, std::size_t) { return one_pass; },
                "this combination of outputs (computed in several passes) cannot overwrite");

  fl::BinaryMetricsArgs margs;
  std::optional<Array<double>> table;
  if (metrics) {
    if (entry.metrics_kernel<T>() == nullptr) {
      throw py::value_error(std::string(entry.name) + " has no binary metrics pass");
    }
    if (outs[2] || bool(outs[0]) == reduce) {
      throw py::value_error("the binary metrics pass computes the value (either value_out or reduce, not both) "
                            "and optionally the gradient, never the Hessian");
    }
    if (!Array<double>::check_(metrics->table)) {
      throw py::type_error("table must be a C-contiguous numpy array of dtype float64, got " +
                           describe(metrics->table));
    }
    table = py::reinterpret_borrow<Array<double>>(metrics->table);
    // bins are indexed with 32-bit integers (binary_metrics.hpp); Python asks for at most 2^24
    constexpr std::size_t max_bins = std::size_t(1) << 24;
    if (metrics->nbins > max_bins || metrics->ece_bins > max_bins) {
      throw py::value_error("nbins and ece_bins must be at most 2^24 = 16777216, got " +
                            std::to_string(metrics->nbins) + " and " + std::to_string(metrics->ece_bins));
    }
    margs.nbins = metrics->nbins;
    margs.ece_bins = metrics->ece_bins;
    const std::size_t ncol = margs.columns();
    if (table->ndim() != 2 || table->shape(0) < 1 || static_cast<std::size_t>(table->shape(1)) != ncol ||
        !table->writeable()) {
      throw py::value_error("table must be a writeable 2-D float64 array of at least one row and "
                            "3 + 2 nbins + 3 ece_bins = " + std::to_string(ncol) + " columns");
    }
    const Span ts = span_of(*table);
    for (const Span& in : in_spans) {
      if (in.lo && overlap(ts, in)) throw py::value_error("table must not overlap an input");
    }
    for (const auto& o : outs) {
      if (o && overlap(ts, span_of(*o))) throw py::value_error("table must not overlap an output");
    }
    margs.table = table->mutable_data();
    margs.rows = static_cast<std::size_t>(table->shape(0));
    margs.probabilities = metrics->probabilities;
  }

  // Arrays at an address that is not a multiple of sizeof(T) go through aligned copies (aligned.hpp).
  const Array<T> pa = fl::aligned_input(p), ya = fl::aligned_input(y);
  const std::optional<Array<T>> wa = fl::aligned_input(w), colsa = fl::aligned_input(cols);
  const fl::Output<O, py::array::c_style> value(outs[0]), grad(outs[1]), hess(outs[2]);  // writeable: checked above

  fl::ElementwiseArgs<T> args;
  args.p = pa.data();
  args.y = ya.data();
  args.w = wa ? wa->data() : nullptr;
  if constexpr (narrow) {
    args.value_f32 = value.data();
    args.grad_f32 = grad.data();
    args.hess_f32 = hess.data();
  } else {
    args.value = value.data();
    args.grad = grad.data();
    args.hess = hess.data();
  }
  args.n = static_cast<std::size_t>(n);
  args.scale = scale;
  args.reduce = reduce;
  args.nthreads = nthreads;
  args.cols = colsa ? colsa->data() : nullptr;
  args.ncols = static_cast<std::size_t>(ncols);

  const Kernel<T> kernel = entry.kernel<T>();
  double total;
  {
    std::optional<py::gil_scoped_release> release;
    if (n >= kReleaseGilMin) release.emplace();
    total = metrics ? entry.metrics_kernel<T>()(params, args, margs) : kernel(params, args);
    value.finish();
    grad.finish();
    hess.finish();
  }
  return total;
}

// The dtype of p picks the instantiation; every other array must match it exactly, except that the outputs of
// a float64 call may all be float32 (the first of them that is given decides).
double elementwise(std::string_view loss, py::handle params_h, py::handle p, py::handle y, py::handle w,
                   double scale, bool reduce, py::handle value_out, py::handle grad_out, py::handle hess_out,
                   int nthreads, py::handle cols) {
  const LossEntry& entry = find_loss(loss);
  const fl::Params params = read_params(params_h, entry.arity, entry.name);
  if (Array<double>::check_(p)) {
    const py::handle first = !value_out.is_none() ? value_out : (!grad_out.is_none() ? grad_out : hess_out);
    if (!first.is_none() && Array<float>::check_(first)) {
      return run_elementwise<double, float>(entry, params, p, y, w, scale, reduce, value_out, grad_out, hess_out,
                                            nthreads, cols);
    }
    return run_elementwise<double>(entry, params, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads,
                                   cols);
  }
  if (Array<float>::check_(p)) {
    return run_elementwise<float>(entry, params, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads,
                                  cols);
  }
  throw py::type_error("p must be a C-contiguous numpy array of dtype float32 or float64, got " + describe(p));
}

// elementwise with the binary metrics: the table (float64, rows x (3 + 2 nbins + 3 ece_bins)) is zeroed and
// filled.
double elementwise_metrics(std::string_view loss, py::handle params_h, py::handle p, py::handle y, py::handle w,
                           double scale, bool reduce, py::handle value_out, py::handle grad_out, int nthreads,
                           py::handle cols, py::handle table, std::size_t nbins, bool probabilities,
                           std::size_t ece_bins) {
  const LossEntry& entry = find_loss(loss);
  const fl::Params params = read_params(params_h, entry.arity, entry.name);
  const MetricsTable metrics{table, nbins, probabilities, ece_bins};
  const py::handle none = py::none();
  if (Array<double>::check_(p)) {
    return run_elementwise<double>(entry, params, p, y, w, scale, reduce, value_out, grad_out, none, nthreads, cols,
                                   &metrics);
  }
  if (Array<float>::check_(p)) {
    return run_elementwise<float>(entry, params, p, y, w, scale, reduce, value_out, grad_out, none, nthreads, cols,
                                  &metrics);
  }
  throw py::type_error("p must be a C-contiguous numpy array of dtype float32 or float64, got " + describe(p));
}

// --- multiclass ------------------------------------------------------------------------------------------

using Labels = py::array_t<std::int64_t, py::array::c_style>;


// The per-row metric outputs of multiclass_metrics (handles, as passed).
struct MetricHandles {
  py::handle rank, conf, nll, entropy;
};

// One per-row metric output: 1-D of length R, C-contiguous, of dtype M exactly, writeable, aligned, and apart from
// every other array of the call (``spans``, null spans skipped); null when optional and None.
template <class M>
M* metric_output(py::handle h, const char* what, bool optional, py::ssize_t R, const Span* spans, std::size_t nspans) {
  using A = py::array_t<M, py::array::c_style>;
  if (optional && h.is_none()) return nullptr;
  if (!A::check_(h)) {
    throw py::type_error(std::string(what) + " must be a C-contiguous numpy array of dtype " +
                         (std::is_same_v<M, double> ? "float64" : "int64") + (optional ? " or None" : "") +
                         ", got " + describe(h));
  }
  A a = py::reinterpret_borrow<A>(h);
  check_len(a, what, R, "one per row: len(x) / C");
  if (!a.writeable()) throw py::value_error(std::string(what) + " is read-only");
  if (reinterpret_cast<std::uintptr_t>(a.data()) % alignof(M) != 0) {
    throw py::value_error(std::string(what) + " is not aligned to its item size; pass a freshly allocated array");
  }
  const Span sp = span_of(a);
  for (std::size_t i = 0; i < nspans && R > 0; ++i) {
    if (spans[i].lo && overlap(sp, spans[i])) {
      throw py::value_error(std::string(what) + " overlaps another array of the call; pass a separate array");
    }
  }
  return a.mutable_data();
}

template <class T>
double run_multiclass(const RowEntry& entry, py::handle packed_h, std::int64_t ignore, py::ssize_t C,
                      py::handle x_h, py::handle labels_h, py::handle q_h, py::handle w_h, py::handle cw_h,
                      double scale, bool reduce, py::handle v_h, py::handle g_h, py::handle h_h, int nthreads,
                      const MetricHandles* metrics = nullptr) {
  const fl::Params params = read_params(packed_h, entry.arity, entry.name);
  const Array<T> x = *borrow<T>(x_h, "x", false);
  std::optional<Labels> labels;
  if (!labels_h.is_none()) {
    if (!Labels::check_(labels_h)) {
      throw py::type_error("labels must be a C-contiguous numpy array of dtype int64 or None, got " +
                           describe(labels_h));
    }
    labels = py::reinterpret_borrow<Labels>(labels_h);
  }
  const std::optional<Array<T>> q = borrow<T>(q_h, "q", true, "x");
  const std::optional<Array<T>> w = borrow<T>(w_h, "w", true, "x");
  const std::optional<Array<T>> cw = borrow<T>(cw_h, "cw", true, "x");
  std::optional<Array<T>> outs[3] = {borrow<T>(v_h, "value_out", true, "x"), borrow<T>(g_h, "grad_out", true, "x"),
                                     borrow<T>(h_h, "hess_out", true, "x")};

  if (C < 1) throw py::value_error("C must be >= 1, got " + std::to_string(C));
  if (nthreads < 1) throw py::value_error("nthreads must be >= 1, got " + std::to_string(nthreads));
  if (x.ndim() != 1) throw py::value_error("x must be 1-D, got " + std::to_string(x.ndim()) + " dimensions");
  const py::ssize_t n = x.shape(0);
  if (n % C != 0) {
    throw py::value_error("the length of x (" + std::to_string(n) + ") must be a multiple of C (" +
                          std::to_string(C) + ")");
  }
  const py::ssize_t R = n / C;
  if (labels.has_value() == q.has_value()) {
    throw py::value_error("give exactly one of labels (hard targets) and q (soft targets)");
  }
  if (labels && !entry.hard_labels) {
    throw py::value_error(std::string(entry.name) + " takes soft targets (q), not labels");
  }
  if (q && !entry.soft_labels) {
    throw py::value_error(std::string(entry.name) + " takes hard labels, not soft targets (q)");
  }
  if (cw && !entry.class_vector) {
    throw py::value_error(std::string("cw was given, but ") + entry.name + " has no per-class parameter");
  }
  if (labels) check_len(*labels, "labels", R, "one per row: len(x) / C");
  if (q) check_len(*q, "q", n, "the length of x");
  if (w) check_len(*w, "w", R, "one per row: len(x) / C");
  if (cw) check_len(*cw, "cw", C, "one per class: C");

  // value_out has one value per row, grad_out and hess_out x's length; grad_out or hess_out may be x itself (the
  // row passes read every x_j before writing element j).
  const Span none{nullptr, nullptr};
  const Span in_spans[5] = {span_of(x), labels ? span_of(*labels) : none, q ? span_of(*q) : none,
                            w ? span_of(*w) : none, cw ? span_of(*cw) : none};
  check_outputs(outs, {R, n, n}, {"one per row: len(x) / C", "the length of x", "the length of x"}, in_spans,
                [](int k, std::size_t i) { return k > 0 && i == 0; },
                "only grad_out or hess_out (being x itself) may overwrite");
  std::int64_t* m_rank = nullptr;
  double *m_conf = nullptr, *m_nll = nullptr, *m_entropy = nullptr;
  if (metrics) {
    if (!labels) throw py::value_error(std::string(entry.name) + ": metrics need hard labels, not soft targets (q)");
    if (outs[2]) throw py::value_error(std::string(entry.name) + ": the metrics pass computes no Hessian (hess_out)");
    Span spans[10] = {in_spans[0], in_spans[1], in_spans[2], in_spans[3], in_spans[4],
                      outs[0] ? span_of(*outs[0]) : none, outs[1] ? span_of(*outs[1]) : none};
    m_rank = metric_output<std::int64_t>(metrics->rank, "rank_out", true, R, spans, 7);
    spans[7] = m_rank ? span_of(py::reinterpret_borrow<py::array>(metrics->rank)) : none;
    m_conf = metric_output<double>(metrics->conf, "conf_out", false, R, spans, 8);
    spans[8] = span_of(py::reinterpret_borrow<py::array>(metrics->conf));
    m_nll = metric_output<double>(metrics->nll, "nll_out", false, R, spans, 9);
    spans[9] = span_of(py::reinterpret_borrow<py::array>(metrics->nll));
    m_entropy = metric_output<double>(metrics->entropy, "entropy_out", true, R, spans, 10);
  }

  // Arrays at an address that is not a multiple of their item size go through aligned copies (aligned.hpp).
  const Array<T> xa = fl::aligned_input(x);
  const std::optional<Labels> labelsa = fl::aligned_input(labels);
  const std::optional<Array<T>> qa = fl::aligned_input(q), wa = fl::aligned_input(w), cwa = fl::aligned_input(cw);
  const fl::Output<T, py::array::c_style> value(outs[0]), grad(outs[1]), hess(outs[2]);  // writeable: checked above

  // Every label must lie in [0, C) or be ignore_index: the kernels index with them.
  if (labelsa) {
    const std::int64_t* lab = labelsa->data();
    const std::int64_t c = static_cast<std::int64_t>(C);
    for (py::ssize_t r = 0; r < R; ++r) {
      const std::int64_t t = lab[r];
      if ((t < 0 || t >= c) && t != ignore) {
        throw py::value_error(std::string(entry.name) + ": label " + std::to_string(t) + " at row " +
                              std::to_string(r) + " is out of range: labels must lie in [0, " + std::to_string(C) +
                              ") or equal ignore_index=" + std::to_string(ignore));
      }
    }
  }

  fl::MulticlassArgs<T> args;
  args.x = xa.data();
  args.labels = labelsa ? labelsa->data() : nullptr;
  args.q = qa ? qa->data() : nullptr;
  args.w = wa ? wa->data() : nullptr;
  args.cw = cwa ? cwa->data() : nullptr;
  args.value = value.data();
  args.grad = grad.data();
  args.hess = hess.data();
  args.R = static_cast<std::size_t>(R);
  args.C = static_cast<std::size_t>(C);
  args.ignore = ignore;
  args.params = params;
  args.scale = scale;
  args.reduce = reduce;
  args.nthreads = nthreads;
  args.rank = m_rank;
  args.conf = m_conf;
  args.nll = m_nll;
  args.entropy = m_entropy;

  const RowKernel<T> kernel = metrics ? entry.metrics_kernel<T>() : entry.kernel<T>();
  double total;
  {
    std::optional<py::gil_scoped_release> release;
    if (n >= kReleaseGilMin) release.emplace();
    total = kernel(args);
    value.finish();
    grad.finish();
    hess.finish();
  }
  return total;
}

// The dtype of x picks the instantiation; q, w, cw and the outputs must match it exactly.
double multiclass(std::string_view loss, py::handle packed, std::int64_t ignore_index, py::ssize_t C, py::handle x,
                  py::handle labels, py::handle q, py::handle w, py::handle cw, double scale, bool reduce,
                  py::handle value_out, py::handle grad_out, py::handle hess_out, int nthreads) {
  const RowEntry& entry = find_row_loss(loss);
  if (Array<double>::check_(x)) {
    return run_multiclass<double>(entry, packed, ignore_index, C, x, labels, q, w, cw, scale, reduce, value_out,
                                  grad_out, hess_out, nthreads);
  }
  if (Array<float>::check_(x)) {
    return run_multiclass<float>(entry, packed, ignore_index, C, x, labels, q, w, cw, scale, reduce, value_out,
                                 grad_out, hess_out, nthreads);
  }
  throw py::type_error("x must be a C-contiguous numpy array of dtype float32 or float64, got " + describe(x));
}

// multiclass plus the per-row metrics (MulticlassArgs::rank ...), for the losses that have a metrics pass.
double multiclass_metrics(std::string_view loss, py::handle packed, std::int64_t ignore_index, py::ssize_t C,
                          py::handle x, py::handle labels, py::handle w, py::handle cw, double scale, bool reduce,
                          py::handle value_out, py::handle grad_out, py::handle rank_out, py::handle conf_out,
                          py::handle nll_out, py::handle entropy_out, int nthreads) {
  const RowEntry& entry = find_row_loss(loss);
  if (!entry.metrics_f32 || !entry.metrics_f64) {
    std::string have;
    for (const auto& e : multiclass_table()) {
      if (e.metrics_f32) have += std::string(have.empty() ? "" : ", ") + e.name;
    }
    throw py::value_error(std::string(entry.name) + " has no metrics pass; the losses that have one: " + have);
  }
  const MetricHandles metrics{rank_out, conf_out, nll_out, entropy_out};
  const py::handle none = py::none();
  if (Array<double>::check_(x)) {
    return run_multiclass<double>(entry, packed, ignore_index, C, x, labels, none, w, cw, scale, reduce, value_out,
                                  grad_out, none, nthreads, &metrics);
  }
  if (Array<float>::check_(x)) {
    return run_multiclass<float>(entry, packed, ignore_index, C, x, labels, none, w, cw, scale, reduce, value_out,
                                 grad_out, none, nthreads, &metrics);
  }
  throw py::type_error("x must be a C-contiguous numpy array of dtype float32 or float64, got " + describe(x));
}

// The compensated float64 sum of a C-contiguous float array (weights, for the divisor of "mean"): Kahan lanes
// in fixed blocks and a CompensatedSum over the blocks, as the kernels' own reductions (reduce.hpp), so a sum
// over a whole array and a merge of the sums of its pieces agree to a few ulp. Each block runs the selected
// level's block_sum (the same bits at every level).
// x: C-contiguous, of dtype T (checked by the caller); a misaligned one is summed from an aligned copy.
template <class T>
double array_sum_as(const py::array& x, int nthreads) {
  const Array<T> a = fl::aligned_input(py::reinterpret_borrow<Array<T>>(x));
  const T* p = a.data();
  const auto n = static_cast<std::size_t>(a.size());
  const auto sum = g_kernels->scans<T>().sum;
  py::gil_scoped_release nogil;
  return fl::sum_blocks(n, fl::kBlock, nthreads, [p, sum](std::size_t begin, std::size_t end) {
    return sum(p + begin, end - begin);
  });
}

// The smallest and the largest element of x with NaN skipped (+inf and -inf when there is no other element):
// the domain checks of targets, predictions and weights (fusedloss._validate), in one pass over the array on
// the pool's threads at the selected level's vector width, where NumPy takes a min and a max pass on one thread.
// Each fixed block keeps its own extremes, so the result does not depend on the thread count. WithSum: also the
// sum (array_sum's bits: each block's sum read from cache right after its extremes), for the weights of a mean,
// which are checked and summed in this one pass.
template <class T, bool WithSum>
py::tuple extremes_of(const py::array& x, int nthreads) {
  const Array<T> a = fl::aligned_input(py::reinterpret_borrow<Array<T>>(x));
  const T* p = a.data();
  const auto n = static_cast<std::size_t>(a.size());
  const std::size_t nb = (n + fl::kBlock - 1) / fl::kBlock;
  const fl::BlockScans<T> scans = g_kernels->scans<T>();
  std::vector<T> los(nb), his(nb);
  T lo = std::numeric_limits<T>::infinity(), hi = -lo;
  double total = 0.0;
  {
    py::gil_scoped_release nogil;
    const auto block = [&](std::size_t begin, std::size_t end) {
      const std::size_t b = begin / fl::kBlock;
      scans.extremes(p + begin, end - begin, los[b], his[b]);
      return WithSum ? scans.sum(p + begin, end - begin) : 0.0;
    };
    if constexpr (WithSum) {
      total = fl::sum_blocks(n, fl::kBlock, nthreads, block);  // array_sum's combination of the blocks
    } else {
      fl::for_blocks(n, fl::kBlock, nthreads, block);
    }
    for (std::size_t b = 0; b < nb; ++b) {
      lo = std::min(lo, los[b]);
      hi = std::max(hi, his[b]);
    }
  }
  if constexpr (WithSum) {
    return py::make_tuple(double(lo), double(hi), total);
  } else {
    return py::make_tuple(double(lo), double(hi));
  }
}

// A scan of a C-contiguous float32 / float64 array (sum, extremes), its arguments checked.
template <class R, R (*F32)(const py::array&, int), R (*F64)(const py::array&, int)>
R float_scan(const char* what, const py::array& x, int nthreads) {
  if (nthreads < 1) throw py::value_error("nthreads must be >= 1, got " + std::to_string(nthreads));
  if (!(x.flags() & py::array::c_style)) throw py::type_error(std::string(what) + ": the array must be C-contiguous");
  if (x.dtype().is(py::dtype::of<double>())) return F64(x, nthreads);
  if (x.dtype().is(py::dtype::of<float>())) return F32(x, nthreads);
  throw py::type_error(std::string(what) + ": the array must be float32 or float64, got " +
                       std::string(py::str(x.dtype())));
}

double array_sum(const py::array& x, int nthreads) {
  return float_scan<double, &array_sum_as<float>, &array_sum_as<double>>("sum", x, nthreads);
}

py::tuple extremes(const py::array& x, int nthreads) {
  return float_scan<py::tuple, &extremes_of<float, false>, &extremes_of<double, false>>("extremes", x, nthreads);
}

py::tuple extremes_and_sum(const py::array& x, int nthreads) {
  return float_scan<py::tuple, &extremes_of<float, true>, &extremes_of<double, true>>("extremes_and_sum", x,
                                                                                     nthreads);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fusedloss C++ kernels (see fusedloss.backends for the contract)";
  m.attr("__version__") = FUSEDLOSS_VERSION;
  g_kernels = &fl::choose_kernels();  // throws (ImportError) on a bad FUSEDLOSS_SIMD

  const char* doc =
      "elementwise(loss, params, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads) -> float\n\n"
      "params: the loss's scalar parameters, a sequence of as many floats as it takes (LossSpec.packed).\n"
      "One fused pass of an elementwise loss over 1-D C-contiguous float32 or float64 arrays of one dtype.\n"
      "value_out[i] = w[i] l[i], grad_out[i] = scale w[i] g[i], hess_out[i] = scale w[i] h[i] (each output\n"
      "optional; w None means 1). With reduce, returns sum_i w[i] l[i] accumulated in float64 over fixed\n"
      "blocks combined in a fixed order (the same for any nthreads), else 0.0.\n\n"
      "Arrays are never converted: one of another dtype than p's, or not C-contiguous, raises TypeError\n"
      "(except that the outputs of a float64 call may all be float32: computed in float64 and stored rounded);\n"
      "one at an address that is not a multiple of its item size is read from (or, an output, written\n"
      "through) an aligned copy;\n"
      "a wrong length or dimension, a read-only or overlapping output, or nthreads < 1 raises ValueError.\n\n"
      "cols (optional, losses with a per-column parameter only: pos_weight): 1-D, p's dtype, its length C\n"
      "dividing len(p); element i then takes cols[i % C] as that parameter.";
  m.def("elementwise", &elementwise, doc, py::arg("loss"), py::arg("params"), py::arg("p"), py::arg("y"),
        py::arg("w").none(true), py::arg("scale"), py::arg("reduce"), py::arg("value_out").none(true),
        py::arg("grad_out").none(true), py::arg("hess_out").none(true), py::arg("nthreads"),
        py::arg("cols").none(true) = py::none());

  m.def("elementwise_metrics", &elementwise_metrics,
        "elementwise_metrics(loss, params, p, y, w, scale, reduce, value_out, grad_out, nthreads, cols, table, nbins,\n"
        "probabilities, ece_bins=0) -> float\n\n"
        "elementwise (value or reduction, optional gradient, no Hessian) of a loss on one binary score, which also\n"
        "fills `table` (float64, rows x (3 + 2 nbins + 3 ece_bins), zeroed first) with the sums of the binary\n"
        "metrics: per row, a fixed run of blocks of elements, [NaN predictions, weight of the correct ones,\n"
        "weighted (p - y)^2, nbins weights of positives, nbins weights of negatives, ece_bins weights, ece_bins\n"
        "sums of w p, ece_bins weights of positives], p = sigmoid(p) in float64 (or p itself with probabilities).\n"
        "The value and gradient are those of elementwise, to the bit.",
        py::arg("loss"), py::arg("params"), py::arg("p"), py::arg("y"), py::arg("w").none(true), py::arg("scale"),
        py::arg("reduce"), py::arg("value_out").none(true), py::arg("grad_out").none(true), py::arg("nthreads"),
        py::arg("cols").none(true), py::arg("table"), py::arg("nbins"), py::arg("probabilities"),
        py::arg("ece_bins") = 0);

  const char* mdoc =
      "multiclass(loss, packed, ignore_index, C, x, labels, q, w, cw, scale, reduce, value_out, grad_out,\n"
      "hess_out, nthreads) -> float\n\n"
      "A multiclass loss over R = len(x) / C rows of C logits (float32 or float64, 1-D, C-contiguous), with hard\n"
      "labels (int64, R; each in [0, C) or == ignore_index, else ValueError naming the label and its row) or soft\n"
      "targets q (R*C); w row weights (R) and cw the per-class vector (C), each optional. value_out (R) gets\n"
      "w_r l_r, grad_out / hess_out (R*C) get scale w_r dl_r/dx and the Hessian diagonal; ignored rows get\n"
      "zeros. grad_out (or hess_out) may be x itself. With reduce, returns sum_r w_r l_r in float64 over fixed\n"
      "blocks of rows combined in a fixed order (the same for any nthreads), else 0.0.";
  m.def("multiclass", &multiclass, mdoc, py::arg("loss"), py::arg("packed"), py::arg("ignore_index"), py::arg("C"),
        py::arg("x"), py::arg("labels").none(true), py::arg("q").none(true), py::arg("w").none(true),
        py::arg("cw").none(true), py::arg("scale"), py::arg("reduce"), py::arg("value_out").none(true),
        py::arg("grad_out").none(true), py::arg("hess_out").none(true), py::arg("nthreads"));

  const char* metdoc =
      "multiclass_metrics(loss, packed, ignore_index, C, x, labels, w, cw, scale, reduce, value_out, grad_out,\n"
      "rank_out, conf_out, nll_out, entropy_out, nthreads) -> float\n\n"
      "multiclass (hard labels, no Hessian) for a loss with a metrics pass (cross_entropy), which also writes per\n"
      "row: rank_out (int64, or None) the label's rank #{j: x_j > x_t} + #{j < t: x_j == x_t}, conf_out (float64)\n"
      "max_j p_j, nll_out (float64) -log p_t, entropy_out (float64, or None) the entropy of p. Ignored rows get\n"
      "rank -1 and 0.0; a row with a nan logit or no logit above -inf rank -1 and nan. The value and gradient\n"
      "are those of multiclass, bit for bit.";
  m.def("multiclass_metrics", &multiclass_metrics, metdoc, py::arg("loss"), py::arg("packed"),
        py::arg("ignore_index"), py::arg("C"), py::arg("x"), py::arg("labels"), py::arg("w").none(true),
        py::arg("cw").none(true), py::arg("scale"), py::arg("reduce"), py::arg("value_out").none(true),
        py::arg("grad_out").none(true), py::arg("rank_out").none(true), py::arg("conf_out"), py::arg("nll_out"),
        py::arg("entropy_out").none(true), py::arg("nthreads"));

  m.def("sum", &array_sum, py::arg("x"), py::arg("nthreads"),
        "sum(x, nthreads) -> float: the compensated float64 sum of a C-contiguous float32 / float64 array (within a\n"
        "few ulp of the exact sum; the same bits for any nthreads).");

  m.def("extremes", &extremes, py::arg("x"), py::arg("nthreads"),
        "extremes(x, nthreads) -> (min, max): of a C-contiguous float32 / float64 array, NaN skipped (inf, -inf\n"
        "when nothing else is there); the same for any nthreads.");
  m.def("extremes_and_sum", &extremes_and_sum, py::arg("x"), py::arg("nthreads"),
        "extremes_and_sum(x, nthreads) -> (min, max, sum): extremes(x) and sum(x) in one pass over x (the same bits).");

  fl::bind_ctc(m, g_kernels->isa);
  fl::bind_pairwise(m, g_kernels->isa);
  fl::bind_overlap(m);

  m.def("supported_losses", [] {
    py::list names;
    for (const auto& e : elementwise_table()) names.append(e.name);
    return names;
  }, "Names of the elementwise losses this build implements.");
  m.def("supported_multiclass_losses", [] {
    py::list names;
    for (const auto& e : multiclass_table()) names.append(e.name);
    return names;
  }, "Names of the multiclass losses this build implements.");
  m.def("pool_workers", &fl::pool::workers,
        "Worker threads the kernels' pool has started so far (it starts them on first need and reuses them).");
  m.def("pool_prewake", &fl::pool::prewake, py::arg("nthreads"), py::arg("short_job") = false,
        "Wake the pool's workers ahead of a call on nthreads threads, so that they join it at once; short_job: "
        "they wait for it on their cores (pool.hpp).");
  m.def("pool_state", [] {
    const auto st = fl::pool::state();
    py::dict d;
    d["late_calls"] = st.late_calls;
    d["solo_calls"] = st.solo_calls;
    d["level"] = st.level;
    d["solo_ns_left"] = st.solo_ns_left;
    d["moves"] = st.moves;
    return d;
  }, "The pool's back-off: calls that found a helper preempted, calls run on the caller alone because of it, "
     "the level, ns left running on the caller alone; and the woken workers that moved off their waker's CPU.");
  m.def("_pool_leave_cpu", &fl::pool::probe_leave_cpu,
        "For tests: move this thread off its CPU as a woken worker leaves its waker's; returns the CPUs it ran "
        "on before and after (-1: unknown).");
  m.def("_pool_probe", [](std::size_t nblocks, int nthreads, std::int64_t helper_ns) {
    if (nblocks < 1 || nblocks > (std::size_t(1) << 20) || helper_ns < 0 || helper_ns > 1'000'000'000)
      throw py::value_error("_pool_probe: nblocks must be in [1, 2**20] and helper_ns in [0, 1e9]");
    py::gil_scoped_release nogil;
    return fl::pool::probe(nblocks, nthreads, helper_ns);
  }, py::arg("nblocks"), py::arg("nthreads"), py::arg("helper_ns"),
     "For tests: blocks run by the pool as a kernel's are, a helper's block sleeping helper_ns; returns the "
     "blocks helpers ran.");
  m.def("simd", [] { return std::string(g_kernels->isa); },
        "The instruction-set level whose kernels this process runs (chosen at import; FUSEDLOSS_SIMD).");
  m.def("build_info", [] { return fl::build_info(g_kernels->isa); },
        "Build facts: compiler, build type, SIMD flags, threads, block size.");
}
