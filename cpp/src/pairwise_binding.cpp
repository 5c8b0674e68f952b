// fusedloss._core.pairwise: the pairwise losses (cpp/include/fusedloss/pairwise.hpp), instantiated and bound
// here, once (baseline ISA: a row loop over pow and sqrt that the SIMD levels would not change). It checks
// every array (dtype, contiguity, length, writeability, overlap) and the parameters before any kernel
// touches memory, then runs the loss's row loop with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <optional>
#include <string>
#include <type_traits>

#include "aligned.hpp"
#include "fusedloss/pairwise.hpp"

namespace py = pybind11;
namespace fl = fusedloss;

namespace {

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

template <class T>
void run(const std::string& loss, const py::tuple& params, py::ssize_t D, py::handle x1_h, py::handle x2_h,
         py::handle x3_h, py::handle y_h, py::handle gscale_h, py::handle loss_h, py::handle g1_h, py::handle g2_h,
         py::handle g3_h, int nthreads) {
  const char* tname = std::is_same_v<T, float> ? "float32 (x1's dtype)" : "float64 (x1's dtype)";
  const bool gauss = loss == "gaussian_nll";
  const bool three = loss == "triplet_margin" || gauss;
  const bool target = !three;
  if (loss != "margin_ranking" && loss != "cosine_embedding" && !three) {
    throw py::value_error("pairwise: unknown loss '" + loss + "'");
  }
  const bool elementwise = loss == "margin_ranking" || gauss;
  if (D < 0 || (elementwise && D != 1)) {
    throw py::value_error(prefix(loss) + "D must be " + (elementwise ? "1" : ">= 0") + ", got " +
                          std::to_string(D));
  }
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
  const py::handle gh[3] = {g1_h, g2_h, g3_h};
  const char* gname[3] = {"g1", "g2", "g3"};
  if (!gscale_h.is_none()) {
    gscale = take<double>(loss, gscale_h, "gscale", "float64");
    check_len(loss, *gscale, "gscale", N);
    for (int k = 0; k < (three ? 3 : 2); ++k) {
      g[k] = take<T>(loss, gh[k], gname[k], tname);
      check_len(loss, *g[k], gname[k], N * D);
      if (!g[k]->writeable()) throw py::value_error(prefix(loss) + gname[k] + " is read-only");
      const bool reads = overlap(*g[k], x1) || overlap(*g[k], x2) || (x3 && overlap(*g[k], *x3)) ||
                         (y && overlap(*g[k], *y)) || overlap(*g[k], *gscale) || overlap(*g[k], lossa);
      if (reads) throw py::value_error(prefix(loss) + gname[k] + " overlaps another array");
      for (int j = 0; j < k; ++j) {
        if (overlap(*g[k], *g[j])) throw py::value_error(prefix(loss) + gname[k] + " overlaps " + gname[j]);
      }
    }
  }
  if (overlap(lossa, x1) || overlap(lossa, x2) || (x3 && overlap(lossa, *x3)) || (y && overlap(lossa, *y))) {
    throw py::value_error(prefix(loss) + "loss_out overlaps an input");
  }
  fl::pairwise::MarginRanking mr{0.0};
  fl::pairwise::CosineEmbedding ce{0.0};
  fl::pairwise::TripletMargin tm{0.0, 2.0, 0.0, false};
  fl::pairwise::GaussianNll gn{false, 1e-6};
  if (gauss) {
    gn = {param(loss, params, 0) != 0, param(loss, params, 1)};
    if (!(std::isfinite(gn.eps) && gn.eps > 0)) {
      throw py::value_error(prefix(loss) + "eps must be a finite number > 0, got " + std::to_string(gn.eps));
    }
  } else if (three) {
    tm = {param(loss, params, 0), param(loss, params, 1), param(loss, params, 2), param(loss, params, 3) != 0};
    if (!(std::isfinite(tm.p) && tm.p > 0)) {
      throw py::value_error(prefix(loss) + "p must be a finite number > 0, got " + std::to_string(tm.p));
    }
  } else if (loss == "margin_ranking") {
    mr.margin = param(loss, params, 0);
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
    if (gauss) {
      fl::pairwise::run(gn, a);
    } else if (three) {
      fl::pairwise::run(tm, a);
    } else if (loss == "margin_ranking") {
      fl::pairwise::run(mr, a);
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

}  // namespace

namespace fusedloss {

// Called once from PYBIND11_MODULE.
void bind_pairwise(py::module_& m) {
  m.def("pairwise", &pairwise_entry,
        "pairwise(loss, params, D, x1, x2, x3, y, gscale, loss_out, g1, g2, g3, nthreads) -> None\n\n"
        "The pairwise loss `loss` (margin_ranking, cosine_embedding, triplet_margin, gaussian_nll) of rows of D\n"
        "elements: each row's loss (float64) into loss_out (N), and, when gscale (float64, N) is given, gscale[i] times\n"
        "the gradient of row i's loss with respect to each input into g1, g2 (g3). x3 only for three inputs,\n"
        "y (float64, N) only for a loss with a target. Everything is checked first.",
        py::arg("loss"), py::arg("params"), py::arg("D"), py::arg("x1"), py::arg("x2"), py::arg("x3").none(true),
        py::arg("y").none(true), py::arg("gscale").none(true), py::arg("loss_out"), py::arg("g1").none(true),
        py::arg("g2").none(true), py::arg("g3").none(true), py::arg("nthreads"));
  m.def("supported_pairwise_losses", [] {
    py::list names;
    for (const char* name : {"margin_ranking", "cosine_embedding", "triplet_margin", "gaussian_nll"}) {
      names.append(name);
    }
    return names;
  }, "Names of the pairwise losses this build implements.");
}

}  // namespace fusedloss
