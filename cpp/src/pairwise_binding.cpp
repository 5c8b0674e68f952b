// fusedloss._core.pairwise and pairwise_elements: the pairwise losses (cpp/include/fusedloss/pairwise.hpp).
// pairwise runs the losses with rows of D elements (cosine_embedding, triplet_margin), instantiated here, once
// (baseline ISA: a row loop over pow and sqrt that the SIMD levels would not change); pairwise_elements those whose
// row is one element (margin_ranking, gaussian_nll), whose loops vectorise: cpp/src/pairwise.cpp builds them once
// per ISA level and this file calls the level bindings.cpp chose. Each checks every array (dtype, contiguity,
// length, writeability, overlap) and the parameters before any kernel touches memory, then runs the loop with the
// GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <initializer_list>
#include <optional>
#include <string>
#include <type_traits>

#include "aligned.hpp"
#include "fusedloss/pairwise.hpp"

namespace py = pybind11;
namespace fl = fusedloss;

namespace {

// The one-element-row kernels of the ISA level in use (set once, by bind_pairwise).
const fl::PairwiseKernels* g_pairwise = nullptr;

template <class T>
using Array = py::array_t<T, py::array::c_style>;

std::string prefix(const std::string& loss) { return "pairwise " + loss + ": "; }

template <class T>
Array<T> take(const std::string& loss, py::handle h, const char* what, const char* dtype) {
  if (!Array<T>::check_(h)) {
    throw py::type_error(prefix(loss) + what + " must be a C-contiguous numpy array of dtype " + dtype + ", got " +
                         std::string(py::str(py::type::handle_of(h))));
  }
  return py::reinterpret_borrow<Array<T>>(h);
}

void check_len(const std::string& loss, const py::array& a, const char* what, py::ssize_t n) {
  if (a.size() != n) {
    throw py::value_error(prefix(loss) + what + " must have " + std::to_string(n) + " elements, got " +
                          std::to_string(a.size()));
  }
}

bool overlap(const py::array& a, const py::array& b) {
  const char* alo = static_cast<const char*>(a.data());
  const char* blo = static_cast<const char*>(b.data());
  return a.nbytes() && b.nbytes() && alo < blo + b.nbytes() && blo < alo + a.nbytes();
}

double param(const std::string& loss, const py::tuple& params, std::size_t k) {
  if (params.size() <= k) {
    throw py::value_error(prefix(loss) + "expected " + std::to_string(k + 1) + " or more parameters, got " +
                          std::to_string(params.size()));
  }
  return params[k].cast<double>();
}

// Whether any of `arrays` (null: absent) overlaps a.
bool overlaps_any(const py::array& a, std::initializer_list<const py::array*> arrays) {
  for (const py::array* b : arrays) {
    if (b && overlap(a, *b)) return true;
  }
  return false;
}

// The gradient outputs g1, g2 (and g3 with three inputs) into g: each of dtype T and n elements, writeable,
// overlapping none of `reads` (the other arrays of the call) and none of the others.
template <class T>
void take_grads(const std::string& loss, const py::handle (&gh)[3], bool three, const char* tname, py::ssize_t n,
                std::initializer_list<const py::array*> reads, std::optional<Array<T>> (&g)[3]) {
  const char* gname[3] = {"g1", "g2", "g3"};
  for (int k = 0; k < (three ? 3 : 2); ++k) {
    g[k] = take<T>(loss, gh[k], gname[k], tname);
    check_len(loss, *g[k], gname[k], n);
    if (!g[k]->writeable()) throw py::value_error(prefix(loss) + gname[k] + " is read-only");
    if (overlaps_any(*g[k], reads)) throw py::value_error(prefix(loss) + gname[k] + " overlaps another array");
    for (int j = 0; j < k; ++j) {
      if (overlap(*g[k], *g[j])) throw py::value_error(prefix(loss) + gname[k] + " overlaps " + gname[j]);
    }
  }
}

// One-element rows go through pairwise_elements.
bool one_element(const std::string& loss) { return loss == "margin_ranking" || loss == "gaussian_nll"; }

template <class T>
void run(const std::string& loss, const py::tuple& params, py::ssize_t D, py::handle x1_h, py::handle x2_h,
         py::handle x3_h, py::handle y_h, py::handle gscale_h, py::handle loss_h, py::handle g1_h, py::handle g2_h,
         py::handle g3_h, int nthreads) {
  const char* tname = std::is_same_v<T, float> ? "float32 (x1's dtype)" : "float64 (x1's dtype)";
  const bool three = loss == "triplet_margin";
  const bool target = !three;
  if (one_element(loss)) {
    throw py::value_error(prefix(loss) + "its rows are single elements: call pairwise_elements");
  }
  if (loss != "cosine_embedding" && !three) throw py::value_error("pairwise: unknown loss '" + loss + "'");
  if (D < 0) throw py::value_error(prefix(loss) + "D must be >= 0, got " + std::to_string(D));
  if (nthreads < 1) throw py::value_error(prefix(loss) + "nthreads must be >= 1, got " + std::to_string(nthreads));
  auto lossa = take<double>(loss, loss_h, "loss_out", "float64");
  if (!lossa.writeable()) throw py::value_error(prefix(loss) + "loss_out is read-only");
  const py::ssize_t N = lossa.size();
  const Array<T> x1 = take<T>(loss, x1_h, "x1", tname), x2 = take<T>(loss, x2_h, "x2", tname);
  check_len(loss, x1, "x1", N * D);
  check_len(loss, x2, "x2", N * D);
  std::optional<Array<T>> x3;
  if (three) {
    if (x3_h.is_none()) throw py::value_error(prefix(loss) + "x3 is required (three inputs)");
    x3 = take<T>(loss, x3_h, "x3", tname);
    check_len(loss, *x3, "x3", N * D);
  } else if (!x3_h.is_none()) {
    throw py::value_error(prefix(loss) + "takes two inputs; x3 must be None");
  }
  std::optional<Array<double>> y;
  if (target) {
    if (y_h.is_none()) throw py::value_error(prefix(loss) + "y (one target per row) is required");
    y = take<double>(loss, y_h, "y", "float64");
    check_len(loss, *y, "y", N);
  }
  std::optional<Array<double>> gscale;
  std::optional<Array<T>> g[3];
  if (!gscale_h.is_none()) {
    gscale = take<double>(loss, gscale_h, "gscale", "float64");
    check_len(loss, *gscale, "gscale", N);
    take_grads<T>(loss, {g1_h, g2_h, g3_h}, three, tname, N * D,
                  {&x1, &x2, x3 ? &*x3 : nullptr, y ? &*y : nullptr, &*gscale, &lossa}, g);
  }
  if (overlaps_any(lossa, {&x1, &x2, x3 ? &*x3 : nullptr, y ? &*y : nullptr})) {
    throw py::value_error(prefix(loss) + "loss_out overlaps an input");
  }
  fl::pairwise::CosineEmbedding ce{0.0};
  fl::pairwise::TripletMargin tm{0.0, 2.0, 0.0, false};
  if (three) {
    tm = {param(loss, params, 0), param(loss, params, 1), param(loss, params, 2), param(loss, params, 3) != 0};
    if (std::isnan(tm.p)) {
      throw py::value_error(prefix(loss) + "p must be a number (any real, inf or -inf), got nan");
    }
  } else {
    ce.margin = param(loss, params, 0);
  }

  // Arrays at an address that is not a multiple of their item size go through aligned copies (aligned.hpp).
  const Array<T> x1a = fl::aligned_input(x1), x2a = fl::aligned_input(x2);
  const std::optional<Array<T>> x3a = fl::aligned_input(x3);
  const std::optional<Array<double>> ya = fl::aligned_input(y), gscalea = fl::aligned_input(gscale);
  const fl::Output<double, py::array::c_style> loss_out(lossa);
  const fl::Output<T, py::array::c_style> o1(g[0]), o2(g[1]), o3(g[2]);
  fl::PairwiseArgs<T> a;
  a.x1 = x1a.data();
  a.x2 = x2a.data();
  a.x3 = x3a ? x3a->data() : nullptr;
  a.y = ya ? ya->data() : nullptr;
  a.gscale = gscalea ? gscalea->data() : nullptr;
  a.loss = loss_out.data();
  a.g1 = o1.data();
  a.g2 = o2.data();
  a.g3 = o3.data();
  a.N = std::size_t(N);
  a.D = std::size_t(D);
  a.nthreads = nthreads;
  {
    py::gil_scoped_release release;
    if (three) {
      fl::pairwise::run(tm, a);
    } else {
      fl::pairwise::run(ce, a);
    }
    loss_out.finish();
    o1.finish();
    o2.finish();
    o3.finish();
  }
}

void pairwise_entry(const std::string& loss, const py::tuple& params, py::ssize_t D, py::handle x1, py::handle x2,
                    py::handle x3, py::handle y, py::handle gscale, py::handle loss_out, py::handle g1,
                    py::handle g2, py::handle g3, int nthreads) {
  if (Array<double>::check_(x1)) {
    return run<double>(loss, params, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, nthreads);
  }
  if (Array<float>::check_(x1)) {
    return run<float>(loss, params, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, nthreads);
  }
  throw py::type_error(prefix(loss) + "x1 must be a C-contiguous numpy array of dtype float32 or float64");
}

// pairwise_elements for one dtype: every check, then run_elements with the GIL released.
template <class T>
double run_elements(const std::string& loss, const py::tuple& params, py::handle x1_h, py::handle x2_h,
                    py::handle x3_h, py::handle y_h, py::handle w_h, double denom, bool reduce, py::handle value_h,
                    py::handle g1_h, py::handle g2_h, py::handle g3_h, int nthreads) {
  const char* tname = std::is_same_v<T, float> ? "float32 (x1's dtype)" : "float64 (x1's dtype)";
  const bool three = loss == "gaussian_nll";
  if (!one_element(loss)) {
    throw py::value_error("pairwise_elements: '" + loss + "' is not a loss whose rows are single elements");
  }
  if (nthreads < 1) throw py::value_error(prefix(loss) + "nthreads must be >= 1, got " + std::to_string(nthreads));
  const Array<T> x1 = take<T>(loss, x1_h, "x1", tname), x2 = take<T>(loss, x2_h, "x2", tname);
  const py::ssize_t n = x1.size();
  check_len(loss, x2, "x2", n);
  std::optional<Array<T>> x3, y, value;
  if (three) {
    if (x3_h.is_none()) throw py::value_error(prefix(loss) + "x3 is required (three inputs)");
    if (!y_h.is_none()) throw py::value_error(prefix(loss) + "takes no target; y must be None");
    x3 = take<T>(loss, x3_h, "x3", tname);
    check_len(loss, *x3, "x3", n);
  } else {
    if (!x3_h.is_none()) throw py::value_error(prefix(loss) + "takes two inputs; x3 must be None");
    if (y_h.is_none()) throw py::value_error(prefix(loss) + "y (one target per element) is required");
    y = take<T>(loss, y_h, "y", tname);
    check_len(loss, *y, "y", n);
  }
  std::optional<Array<double>> w;
  if (!w_h.is_none()) {
    w = take<double>(loss, w_h, "w", "float64");
    check_len(loss, *w, "w", n);
  }
  const std::initializer_list<const py::array*> reads = {&x1, &x2, x3 ? &*x3 : nullptr, y ? &*y : nullptr,
                                                         w ? &*w : nullptr};
  if (!value_h.is_none()) {
    value = take<T>(loss, value_h, "value_out", tname);
    check_len(loss, *value, "value_out", n);
    if (!value->writeable()) throw py::value_error(prefix(loss) + "value_out is read-only");
    if (overlaps_any(*value, reads)) throw py::value_error(prefix(loss) + "value_out overlaps an input");
  }
  std::optional<Array<T>> g[3];
  if (!g1_h.is_none()) {
    take_grads<T>(loss, {g1_h, g2_h, g3_h}, three, tname, n,
                  {&x1, &x2, x3 ? &*x3 : nullptr, y ? &*y : nullptr, w ? &*w : nullptr, value ? &*value : nullptr},
                  g);
  } else if (!g2_h.is_none() || !g3_h.is_none()) {
    throw py::value_error(prefix(loss) + "g2 and g3 need g1 (all of the gradients, or none)");
  }
  fl::Params prm;
  prm.n = three ? 2 : 1;  // gaussian_nll: full, eps; margin_ranking: margin
  for (std::size_t k = 0; k < prm.n; ++k) prm.v[k] = param(loss, params, k);
  if (three && !(std::isfinite(prm[1]) && prm[1] > 0)) {
    throw py::value_error(prefix(loss) + "eps must be a finite number > 0, got " + std::to_string(prm[1]));
  }
  const fl::PairwiseElementEntry& kernels = three ? g_pairwise->gaussian_nll : g_pairwise->margin_ranking;
  fl::PairwiseElementKernel<T> kernel = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    kernel = kernels.f32;
  } else {
    kernel = kernels.f64;
  }

  // Arrays at an address that is not a multiple of their item size go through aligned copies (aligned.hpp).
  const Array<T> x1a = fl::aligned_input(x1), x2a = fl::aligned_input(x2);
  const std::optional<Array<T>> x3a = fl::aligned_input(x3), ya = fl::aligned_input(y);
  const std::optional<Array<double>> wa = fl::aligned_input(w);
  const fl::Output<T, py::array::c_style> ov(value), o1(g[0]), o2(g[1]), o3(g[2]);
  fl::PairwiseElementArgs<T> a;
  a.x1 = x1a.data();
  a.x2 = x2a.data();
  a.x3 = x3a ? x3a->data() : nullptr;
  a.y = ya ? ya->data() : nullptr;
  a.w = wa ? wa->data() : nullptr;
  a.denom = denom;
  a.value = ov.data();
  a.g1 = o1.data();
  a.g2 = o2.data();
  a.g3 = o3.data();
  a.n = std::size_t(n);
  a.reduce = reduce;
  a.nthreads = nthreads;
  double total = 0.0;
  {
    py::gil_scoped_release release;
    total = kernel(prm, a);
    ov.finish();
    o1.finish();
    o2.finish();
    o3.finish();
  }
  return total;
}

double pairwise_elements_entry(const std::string& loss, const py::tuple& params, py::handle x1, py::handle x2,
                               py::handle x3, py::handle y, py::handle w, double denom, bool reduce,
                               py::handle value_out, py::handle g1, py::handle g2, py::handle g3, int nthreads) {
  if (Array<double>::check_(x1)) {
    return run_elements<double>(loss, params, x1, x2, x3, y, w, denom, reduce, value_out, g1, g2, g3, nthreads);
  }
  if (Array<float>::check_(x1)) {
    return run_elements<float>(loss, params, x1, x2, x3, y, w, denom, reduce, value_out, g1, g2, g3, nthreads);
  }
  throw py::type_error(prefix(loss) + "x1 must be a C-contiguous numpy array of dtype float32 or float64");
}

}  // namespace

namespace fusedloss {

// Called once from PYBIND11_MODULE with the ISA level bindings.cpp chose for the other kernels.
void bind_pairwise(py::module_& m, const std::string& isa) {
  g_pairwise = &pairwise_kernels_baseline();
#if defined(FUSEDLOSS_HAVE_ISA_AVX2)
  if (isa == "avx2") g_pairwise = &pairwise_kernels_avx2();
#endif
#if defined(FUSEDLOSS_HAVE_ISA_AVX512)
  if (isa == "avx512") g_pairwise = &pairwise_kernels_avx512();
#endif
  (void)isa;
  m.def("pairwise", &pairwise_entry,
        "pairwise(loss, params, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, nthreads) -> None\n\n"
        "The pairwise loss `loss` (cosine_embedding, triplet_margin; margin_ranking and gaussian_nll, whose rows are\n"
        "single elements: pairwise_elements) of rows of D elements: each row's loss (float64) into loss_out (N), and,\n"
        "when gscale (float64, N) is given, gscale[i] times the gradient of row i's loss with respect to each input\n"
        "into g1, g2 (g3). x3 only for three inputs, y (float64, N) only for a loss with a target. Everything is\n"
        "checked first.",
        py::arg("loss"), py::arg("params"), py::arg("D"), py::arg("x1"), py::arg("x2"), py::arg("x3").none(true),
        py::arg("y").none(true), py::arg("gscale").none(true), py::arg("loss_out"), py::arg("g1").none(true),
        py::arg("g2").none(true), py::arg("g3").none(true), py::arg("nthreads"));
  m.def("pairwise_elements", &pairwise_elements_entry,
        "pairwise_elements(loss, params, x1, x2, x3, y, w, denom, reduce, value_out, g1, g2, g3, nthreads) -> float\n\n"
        "The pairwise loss `loss` whose rows are single elements (margin_ranking, gaussian_nll), elementwise: x1, x2\n"
        "(x3 for gaussian_nll's var; y, the target, for margin_ranking) of one dtype and n elements each; w (float64,\n"
        "n) weights or None. Returns sum_i w_i l_i in float64 when reduce (else 0.0); value_out (or None) receives\n"
        "w_i l_i, g1, g2 (g3) (or None) w_i / denom times the gradient of l_i with respect to each input, all in the\n"
        "inputs' dtype. Everything is checked first.",
        py::arg("loss"), py::arg("params"), py::arg("x1"), py::arg("x2"), py::arg("x3").none(true),
        py::arg("y").none(true), py::arg("w").none(true), py::arg("denom"), py::arg("reduce"),
        py::arg("value_out").none(true), py::arg("g1").none(true), py::arg("g2").none(true),
        py::arg("g3").none(true), py::arg("nthreads"));
  m.def("supported_pairwise_losses", [] {
    py::list names;
    for (const char* name : {"margin_ranking", "cosine_embedding", "triplet_margin", "gaussian_nll"}) {
      names.append(name);
    }
    return names;
  }, "Names of the pairwise losses this build implements.");
}

}  // namespace fusedloss
