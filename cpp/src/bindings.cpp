// fusedloss._core: the binding layer only (no math; that lives in cpp/include/fusedloss).
//
// elementwise(loss, a, b, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads) -> float
// implements the kernel contract of src/fusedloss/backends/__init__.py for float32 and float64. Arrays
// are never converted (the check is py::array_t<T, c_style>'s own, as .noconvert() would apply it): a wrong
// dtype or a non-contiguous array raises TypeError instead of being copied silently. Everything is checked
// before any memory is touched; the GIL is released for the loop only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "fusedloss/loops.hpp"
#include "fusedloss/losses.hpp"

namespace py = pybind11;
namespace fl = fusedloss;

namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style>;

template <class T>
using Kernel = double (*)(double, double, const fl::ElementwiseArgs<T>&);

struct LossEntry {
  const char* name;
  Kernel<float> f32;
  Kernel<double> f64;

  template <class T>
  Kernel<T> kernel() const {
    if constexpr (std::is_same_v<T, float>) {
      return f32;
    } else {
      return f64;
    }
  }
};

template <template <class> class Loss>
constexpr LossEntry entry() {
  return {Loss<double>::name, &fl::elementwise<Loss, float>, &fl::elementwise<Loss, double>};
}

// The loss table: ONE line per elementwise loss.
constexpr LossEntry kElementwise[] = {
    entry<fl::losses::mse>(),
    entry<fl::losses::mae>(),
    entry<fl::losses::huber>(),
    entry<fl::losses::smooth_l1>(),
    entry<fl::losses::pseudo_huber>(),
    entry<fl::losses::log_cosh>(),
    entry<fl::losses::quantile>(),
    entry<fl::losses::poisson_nll>(),
    entry<fl::losses::tweedie>(),
};

std::string known_losses() {
  std::string s;
  for (const auto& e : kElementwise) {
    if (!s.empty()) s += ", ";
    s += e.name;
  }
  return s;
}

const LossEntry& find_loss(std::string_view name) {
  for (const auto& e : kElementwise) {
    if (name == e.name) return e;
  }
  throw py::value_error("unknown loss '" + std::string(name) + "'; known losses: " + known_losses());
}

// [lo, hi) byte range of an array, for overlap checks.
struct Span {
  const char* lo;
  const char* hi;
};

template <class T>
Span span_of(const Array<T>& a) {
  const char* lo = reinterpret_cast<const char*>(a.data());
  return {lo, lo + a.nbytes()};
}

bool overlap(Span a, Span b) { return a.lo < b.hi && b.lo < a.hi; }

template <class T>
void check_1d(const Array<T>& a, const char* what, py::ssize_t n) {
  if (a.ndim() != 1) {
    throw py::value_error(std::string(what) + " must be 1-D, got " + std::to_string(a.ndim()) +
                          " dimensions");
  }
  if (a.shape(0) != n) {
    throw py::value_error(std::string(what) + " must have length " + std::to_string(n) + " (the length of p), got " +
                          std::to_string(a.shape(0)));
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
std::optional<Array<T>> borrow(py::handle h, const char* what, bool optional) {
  if (optional && h.is_none()) return std::nullopt;
  if (!Array<T>::check_(h)) {
    throw py::type_error(std::string(what) + " must be a C-contiguous numpy array of dtype " + dtype_name<T>() +
                         " (the dtype of p)" + (optional ? " or None" : "") + ", got " + describe(h));
  }
  return py::reinterpret_borrow<Array<T>>(h);
}

// Below this many elements the GIL stays held: releasing and re-taking it costs about 0.25 us, more than
// other Python threads could gain during so short a loop.
constexpr py::ssize_t kReleaseGilMin = static_cast<py::ssize_t>(fl::kBlock);

template <class T>
double run_elementwise(const LossEntry& entry, double a, double b, py::handle p_h, py::handle y_h, py::handle w_h,
                       double scale, bool reduce, py::handle v_h, py::handle g_h, py::handle h_h, int nthreads) {
  const Array<T> p = *borrow<T>(p_h, "p", false);
  const Array<T> y = *borrow<T>(y_h, "y", false);
  const std::optional<Array<T>> w = borrow<T>(w_h, "w", true);
  std::optional<Array<T>> outs[3] = {borrow<T>(v_h, "value_out", true), borrow<T>(g_h, "grad_out", true),
                                     borrow<T>(h_h, "hess_out", true)};
  const char* out_names[3] = {"value_out", "grad_out", "hess_out"};

  if (p.ndim() != 1) throw py::value_error("p must be 1-D, got " + std::to_string(p.ndim()) + " dimensions");
  const py::ssize_t n = p.shape(0);
  check_1d(y, "y", n);
  if (w) check_1d(*w, "w", n);
  if (nthreads < 1) throw py::value_error("nthreads must be >= 1, got " + std::to_string(nthreads));

  // Outputs: 1-D, length n, writeable; they must not overlap each other, nor an input other than exactly
  // (an output may be the very array it is computed from: element i is read before it is written).
  const Span in_spans[3] = {span_of(p), span_of(y), w ? span_of(*w) : Span{nullptr, nullptr}};
  Span out_spans[3] = {};
  for (int k = 0; k < 3; ++k) {
    if (!outs[k]) continue;
    const Array<T>& o = *outs[k];
    check_1d(o, out_names[k], n);
    if (!o.writeable()) throw py::value_error(std::string(out_names[k]) + " is read-only");
    out_spans[k] = span_of(o);
    if (n == 0) continue;
    for (int j = 0; j < k; ++j) {
      if (outs[j] && overlap(out_spans[k], out_spans[j])) {
        throw py::value_error(std::string(out_names[k]) + " and " + out_names[j] + " must not overlap");
      }
    }
    for (const Span& in : in_spans) {
      if (in.lo && overlap(out_spans[k], in) && in.lo != out_spans[k].lo) {
        throw py::value_error(std::string(out_names[k]) + " partly overlaps an input array");
      }
    }
  }

  fl::ElementwiseArgs<T> args;
  args.p = p.data();
  args.y = y.data();
  args.w = w ? w->data() : nullptr;
  args.value = outs[0] ? outs[0]->mutable_data() : nullptr;  // writeable: checked above
  args.grad = outs[1] ? outs[1]->mutable_data() : nullptr;
  args.hess = outs[2] ? outs[2]->mutable_data() : nullptr;
  args.n = static_cast<std::size_t>(n);
  args.scale = scale;
  args.reduce = reduce;
  args.nthreads = nthreads;

  const Kernel<T> kernel = entry.kernel<T>();
  double total;
  {
    std::optional<py::gil_scoped_release> release;
    if (n >= kReleaseGilMin) release.emplace();
    total = kernel(a, b, args);
  }
  return total;
}

// The dtype of p picks the instantiation; every other array must match it exactly.
double elementwise(std::string_view loss, double a, double b, py::handle p, py::handle y, py::handle w,
                   double scale, bool reduce, py::handle value_out, py::handle grad_out, py::handle hess_out,
                   int nthreads) {
  const LossEntry& entry = find_loss(loss);
  if (Array<double>::check_(p)) {
    return run_elementwise<double>(entry, a, b, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads);
  }
  if (Array<float>::check_(p)) {
    return run_elementwise<float>(entry, a, b, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads);
  }
  throw py::type_error("p must be a C-contiguous numpy array of dtype float32 or float64, got " + describe(p));
}

py::dict build_info() {
  py::dict d;
  d["version"] = FUSEDLOSS_VERSION;
  d["compiler"] = FUSEDLOSS_COMPILER;
  d["build_type"] = FUSEDLOSS_BUILD_TYPE;
  d["simd_flags"] = FUSEDLOSS_SIMD_FLAGS;
  d["system_processor"] = FUSEDLOSS_SYSTEM_PROCESSOR;
  d["cplusplus"] = static_cast<long>(__cplusplus);
#ifdef FUSEDLOSS_HAVE_OPENMP
  d["openmp"] = true;
#ifdef _OPENMP
  d["openmp_version"] = static_cast<long>(_OPENMP);
#endif
#else
  d["openmp"] = false;
#endif
#ifdef FUSEDLOSS_FORK_GUARD
  d["fork_guard"] = true;  // a child forked after OpenMP ran in its parent computes single-threaded
#else
  d["fork_guard"] = false;
#endif
  d["block_size"] = fl::kBlock;
  d["parallel_threshold"] = fl::kParallelMin;
  d["pybind11_version"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." + std::to_string(PYBIND11_VERSION_MINOR) +
                          "." + std::to_string(PYBIND11_VERSION_PATCH);
  // What the CPU running this offers (not what the build uses: see simd_flags).
  py::list cpu;
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) cpu.append("sse4.2");
  if (__builtin_cpu_supports("avx")) cpu.append("avx");
  if (__builtin_cpu_supports("avx2")) cpu.append("avx2");
  if (__builtin_cpu_supports("fma")) cpu.append("fma");
  if (__builtin_cpu_supports("avx512f")) cpu.append("avx512f");
#endif
  d["cpu_features"] = cpu;
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fusedloss C++ kernels (see fusedloss.backends for the contract)";
  m.attr("__version__") = FUSEDLOSS_VERSION;
  fl::install_fork_guard();

  const char* doc =
      "elementwise(loss, a, b, p, y, w, scale, reduce, value_out, grad_out, hess_out, nthreads) -> float\n\n"
      "One fused pass of an elementwise loss over 1-D C-contiguous float32 or float64 arrays of one dtype.\n"
      "value_out[i] = w[i] l[i], grad_out[i] = scale w[i] g[i], hess_out[i] = scale w[i] h[i] (each output\n"
      "optional; w None means 1). With reduce, returns sum_i w[i] l[i] accumulated in float64 over fixed\n"
      "blocks combined in a fixed order (the same for any nthreads), else 0.0.\n\n"
      "Arrays are never converted: one of another dtype than p's, or not C-contiguous, raises TypeError;\n"
      "a wrong length or dimension, a read-only or overlapping output, or nthreads < 1 raises ValueError.";
  m.def("elementwise", &elementwise, doc, py::arg("loss"), py::arg("a"), py::arg("b"), py::arg("p"), py::arg("y"),
        py::arg("w").none(true), py::arg("scale"), py::arg("reduce"), py::arg("value_out").none(true),
        py::arg("grad_out").none(true), py::arg("hess_out").none(true), py::arg("nthreads"));

  m.def("supported_losses", [] {
    py::list names;
    for (const auto& e : kElementwise) names.append(e.name);
    return names;
  }, "Names of the elementwise losses this build implements.");
  m.def("max_threads", &fl::max_threads,
        "Threads an OpenMP parallel region may use: 1 without OpenMP, and 1 in a process forked after its parent "
        "ran OpenMP threads (GNU libgomp cannot start a team there; kernels run single-threaded).");
  m.def("build_info", &build_info, "Build facts: compiler, build type, OpenMP, SIMD flags, block size.");
}
