// fusedloss._core.overlap_sums / overlap_grad: the two passes of the overlap losses
// (cpp/include/fusedloss/overlap.hpp), instantiated and bound here, once (baseline ISA, as the pairwise kernels).
// Every array (dtype, contiguity, length, writeability, overlap), the shape numbers and every class index are
// checked before any kernel touches memory; the passes then run with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "aligned.hpp"
#include "fusedloss/overlap.hpp"

namespace py = pybind11;
namespace fl = fusedloss;

namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style>;

const std::string kPrefix = "overlap: ";

template <class T>
Array<T> take(py::handle h, const char* what, const char* dtype) {
  if (!Array<T>::check_(h)) {
    throw py::type_error(kPrefix + what + " must be a C-contiguous numpy array of dtype " + dtype + ", got " +
                         std::string(py::str(py::type::handle_of(h))));
  }
  return py::reinterpret_borrow<Array<T>>(h);
}

void check_len(const py::array& a, const char* what, std::size_t n) {
  if (std::size_t(a.size()) != n) {
    throw py::value_error(kPrefix + what + " must have " + std::to_string(n) + " elements, got " +
                          std::to_string(a.size()));
  }
}

bool overlaps(const py::array& a, const py::array& b) {
  const char* alo = static_cast<const char*>(a.data());
  const char* blo = static_cast<const char*>(b.data());
  return a.nbytes() && b.nbytes() && alo < blo + b.nbytes() && blo < alo + a.nbytes();
}

std::size_t count(py::ssize_t v, const char* what) {
  if (v < 0) throw py::value_error(kPrefix + what + " must be >= 0, got " + std::to_string(v));
  return std::size_t(v);
}

// Everything but the outputs: arrays taken, lengths and labels checked, aligned copies where needed.
template <class T>
struct Inputs {
  Array<T> x;
  std::optional<Array<std::int64_t>> labels;
  std::optional<Array<T>> y;
  fl::OverlapArgs<T> args;

  Inputs(int act, py::handle x_h, py::handle labels_h, py::handle y_h, py::ssize_t N_, py::ssize_t C_,
         py::ssize_t S_, bool has_ignore, std::int64_t ignore, int nthreads) {
    const char* tname = std::is_same_v<T, float> ? "float32 (x's dtype)" : "float64 (x's dtype)";
    if (act < 0 || act > 2) throw py::value_error(kPrefix + "act must be 0, 1 or 2, got " + std::to_string(act));
    if (nthreads < 1) throw py::value_error(kPrefix + "nthreads must be >= 1, got " + std::to_string(nthreads));
    const std::size_t N = count(N_, "N"), C = count(C_, "C"), S = count(S_, "S");
    const std::size_t big = std::size_t(std::numeric_limits<py::ssize_t>::max());
    if ((C != 0 && N > big / C) || (N * C != 0 && S > big / (N * C))) {
      throw py::value_error(kPrefix + "N * C * S overflows");
    }
    x = take<T>(x_h, "x", tname);
    check_len(x, "x", N * C * S);
    if (labels_h.is_none() == y_h.is_none()) {
      throw py::value_error(kPrefix + "give exactly one of labels (multiclass) and y (binary, multilabel)");
    }
    if (!labels_h.is_none()) {
      if (act == 1) throw py::value_error(kPrefix + "labels (class indices) go with act 0 or 2, got act 1");
      // aligned before the range check reads it
      labels = fl::aligned_input(take<std::int64_t>(labels_h, "labels", "int64"));
      check_len(*labels, "labels", N * S);
      const std::int64_t* l = labels->data();
      for (std::size_t i = 0; i < N * S; ++i) {
        if ((l[i] < 0 || std::uint64_t(l[i]) >= C) && !(has_ignore && l[i] == ignore)) {
          throw py::value_error(kPrefix + "labels[" + std::to_string(i) + "] = " + std::to_string(l[i]) +
                                " is out of range: class indices must lie in [0, " + std::to_string(C) + ")" +
                                (has_ignore ? " or equal ignore_index " + std::to_string(ignore) : ""));
        }
      }
    } else {
      y = fl::aligned_input(take<T>(y_h, "y", tname));
      check_len(*y, "y", N * C * S);
    }
    x = fl::aligned_input(x);
    args.x = x.data();
    args.labels = labels ? labels->data() : nullptr;
    args.y = y ? y->data() : nullptr;
    args.N = N;
    args.C = C;
    args.S = S;
    args.act = act;
    args.has_ignore = has_ignore;
    args.ignore = ignore;
    args.nthreads = nthreads;
  }

  void check_output(const py::array& out, const char* what) const {
    if (!out.writeable()) throw py::value_error(kPrefix + what + " is read-only");
    if (overlaps(out, x) || (labels && overlaps(out, *labels)) || (y && overlaps(out, *y))) {
      throw py::value_error(kPrefix + what + " overlaps an input");
    }
  }
};

// A pass with the GIL released, then its output put in place; a pass whose tiles could not be allocated
// raises MemoryError (pybind11's translation of std::bad_alloc) once the GIL is back.
template <class Out, class Pass>
void run_pass(const Out& out, const Pass& pass) {
  bool ok;
  {
    py::gil_scoped_release release;
    ok = pass();
    out.finish();
  }
  if (!ok) throw std::bad_alloc();
}

template <class T>
void sums(int act, py::handle x, py::handle labels, py::handle y, py::ssize_t N, py::ssize_t C, py::ssize_t S,
          bool has_ignore, std::int64_t ignore, py::handle sums_h, int nthreads) {
  const Inputs<T> in(act, x, labels, y, N, C, S, has_ignore, ignore, nthreads);
  const auto out = take<double>(sums_h, "sums", "float64");
  check_len(out, "sums", in.args.N * in.args.C * 3);
  in.check_output(out, "sums");
  std::vector<double> partial(fl::overlap::blocks_per_sample(in.args.S) * in.args.N * in.args.C * 3);
  const fl::Output<double, py::array::c_style> o(out);
  run_pass(o, [&] { return fl::overlap::sums(in.args, o.data(), partial.data()); });
}

template <class T>
void grad(int act, py::handle x, py::handle labels, py::handle y, py::ssize_t N, py::ssize_t C, py::ssize_t S,
          bool has_ignore, std::int64_t ignore, py::handle coef_h, py::handle grad_h, int nthreads) {
  const char* tname = std::is_same_v<T, float> ? "float32 (x's dtype)" : "float64 (x's dtype)";
  const Inputs<T> in(act, x, labels, y, N, C, S, has_ignore, ignore, nthreads);
  const auto coef = fl::aligned_input(take<double>(coef_h, "coef", "float64"));
  check_len(coef, "coef", in.args.N * in.args.C * 2);
  const auto out = take<T>(grad_h, "grad", tname);
  check_len(out, "grad", in.args.N * in.args.C * in.args.S);
  in.check_output(out, "grad");
  if (overlaps(out, coef)) throw py::value_error(kPrefix + "grad overlaps coef");
  const fl::Output<T, py::array::c_style> o(out);
  run_pass(o, [&] { return fl::overlap::grad(in.args, coef.data(), o.data()); });
}

void sums_entry(int act, py::handle x, py::handle labels, py::handle y, py::ssize_t N, py::ssize_t C, py::ssize_t S,
                bool has_ignore, std::int64_t ignore, py::handle out, int nthreads) {
  if (Array<double>::check_(x)) return sums<double>(act, x, labels, y, N, C, S, has_ignore, ignore, out, nthreads);
  if (Array<float>::check_(x)) return sums<float>(act, x, labels, y, N, C, S, has_ignore, ignore, out, nthreads);
  throw py::type_error(kPrefix + "x must be a C-contiguous numpy array of dtype float32 or float64");
}

void grad_entry(int act, py::handle x, py::handle labels, py::handle y, py::ssize_t N, py::ssize_t C, py::ssize_t S,
                bool has_ignore, std::int64_t ignore, py::handle coef, py::handle out, int nthreads) {
  if (Array<double>::check_(x)) {
    return grad<double>(act, x, labels, y, N, C, S, has_ignore, ignore, coef, out, nthreads);
  }
  if (Array<float>::check_(x)) return grad<float>(act, x, labels, y, N, C, S, has_ignore, ignore, coef, out, nthreads);
  throw py::type_error(kPrefix + "x must be a C-contiguous numpy array of dtype float32 or float64");
}

}  // namespace

namespace fusedloss {

// Called once from PYBIND11_MODULE.
void bind_overlap(py::module_& m) {
  m.def("overlap_sums", &sums_entry,
        "overlap_sums(act, x, labels, y, N, C, S, has_ignore, ignore, sums, nthreads) -> None\n\n"
        "First pass of the overlap losses (dice, tversky) over scores x (N, C, S): per sample and class the float64\n"
        "sums I = sum min(p, y), P = sum p, Y = sum y into sums (N * C * 3). act: 0 x are probabilities, 1 sigmoid,\n"
        "2 softmax over C. labels int64 (N * S) class indices (or ignore), else y like x. Everything is checked first.",
        py::arg("act"), py::arg("x"), py::arg("labels").none(true), py::arg("y").none(true), py::arg("N"),
        py::arg("C"), py::arg("S"), py::arg("has_ignore"), py::arg("ignore"), py::arg("sums"), py::arg("nthreads"));
  m.def("overlap_grad", &grad_entry,
        "overlap_grad(act, x, labels, y, N, C, S, has_ignore, ignore, coef, grad, nthreads) -> None\n\n"
        "Second pass: the gradient with respect to x of sum aI I + aP P, coef float64 (N * C * 2: aI, aP), into grad\n"
        "(like x). Arguments otherwise as overlap_sums.",
        py::arg("act"), py::arg("x"), py::arg("labels").none(true), py::arg("y").none(true), py::arg("N"),
        py::arg("C"), py::arg("S"), py::arg("has_ignore"), py::arg("ignore"), py::arg("coef"), py::arg("grad"),
        py::arg("nthreads"));
}

}  // namespace fusedloss
