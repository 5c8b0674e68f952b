// fusedloss._core.ctc: the binding of the CTC kernels (cpp/include/fusedloss/ctc.hpp). Binding only: it
// checks every array (dtype, contiguity, lengths, label range, overlap) before any kernel touches memory,
// fills CtcArgs and calls the kernel of the ISA level bindings.cpp chose, with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

#include "aligned.hpp"
#include "fusedloss/ctc.hpp"

namespace py = pybind11;
namespace fl = fusedloss;

namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style>;

const fl::CtcKernels* g_ctc = nullptr;

template <class T>
Array<T> take(py::handle h, const char* what, const char* dtype) {
  if (!Array<T>::check_(h)) {
    throw py::type_error(std::string("ctc: ") + what + " must be a C-contiguous numpy array of dtype " + dtype +
                         ", got " + std::string(py::str(py::type::handle_of(h))));
  }
  return py::reinterpret_borrow<Array<T>>(h);
}

void check_len(const py::array& a, const char* what, py::ssize_t n) {
  if (a.size() != n) {
    throw py::value_error(std::string("ctc: ") + what + " must have " + std::to_string(n) + " elements, got " +
                          std::to_string(a.size()));
  }
}

bool overlap(const py::array& a, const py::array& b) {
  const char* alo = static_cast<const char*>(a.data());
  const char* blo = static_cast<const char*>(b.data());
  return a.nbytes() && b.nbytes() && alo < blo + b.nbytes() && blo < alo + a.nbytes();
}

template <class T>
double run(py::handle x_h, py::ssize_t frames, py::ssize_t N, py::ssize_t C, bool batch_first, bool log_probs,
           py::handle labels_h, py::handle offsets_h, py::handle tlen_h, py::handle ilen_h, std::int64_t blank,
           bool zero_infinity, py::handle gscale_h, py::handle loss_h, py::handle grad_h, int nthreads) {
  const char* tname = std::is_same_v<T, float> ? "float32 (x's dtype)" : "float64 (x's dtype)";
  const Array<T> x = take<T>(x_h, "x", tname);
  const auto labels = take<std::int64_t>(labels_h, "labels", "int64");
  const auto offsets = take<std::int64_t>(offsets_h, "offsets", "int64");
  const auto tlen = take<std::int64_t>(tlen_h, "target_lengths", "int64");
  const auto ilen = take<std::int64_t>(ilen_h, "input_lengths", "int64");
  auto loss = take<double>(loss_h, "loss_out", "float64");
  if (frames < 0 || N < 0 || C < 1) throw py::value_error("ctc: need T >= 0, N >= 0 and C >= 1");
  check_len(x, "x", frames * N * C);
  check_len(offsets, "offsets", N);
  check_len(tlen, "target_lengths", N);
  check_len(ilen, "input_lengths", N);
  check_len(loss, "loss_out", N);
  if (!loss.writeable()) throw py::value_error("ctc: loss_out is read-only");
  if (nthreads < 1) throw py::value_error("ctc: nthreads must be >= 1, got " + std::to_string(nthreads));
  if (blank < 0 || blank >= C) {
    throw py::value_error("ctc: blank must lie in [0, " + std::to_string(C) + "), got " + std::to_string(blank));
  }
  std::optional<Array<T>> grad;
  std::optional<Array<double>> gscale;
  if (!grad_h.is_none()) {
    grad = take<T>(grad_h, "grad_out", tname);
    check_len(*grad, "grad_out", frames * N * C);
    if (!grad->writeable()) throw py::value_error("ctc: grad_out is read-only");
    if (overlap(*grad, x)) throw py::value_error("ctc: grad_out must not overlap x (the kernel reads x after writing)");
    gscale = take<double>(gscale_h, "gscale", "float64");
    check_len(*gscale, "gscale", N);
  }
  // Arrays at an address that is not a multiple of their item size go through aligned copies (aligned.hpp).
  const Array<T> xa = fl::aligned_input(x);
  const Array<std::int64_t> laba = fl::aligned_input(labels), offa = fl::aligned_input(offsets),
                            tla = fl::aligned_input(tlen), ila = fl::aligned_input(ilen);
  const std::optional<Array<double>> gscalea = fl::aligned_input(gscale);
  const fl::Output<double, py::array::c_style> loss_out(loss);  // writeable: checked above
  const fl::Output<T, py::array::c_style> grad_out(grad);

  // every index the kernel will use, checked here: lengths, offsets and the labels they select
  const std::int64_t* off = offa.data();
  const std::int64_t* tl = tla.data();
  const std::int64_t* il = ila.data();
  const std::int64_t* lab = laba.data();
  const std::int64_t nlab = labels.size();
  for (py::ssize_t n = 0; n < N; ++n) {
    if (il[n] < 0 || il[n] > frames) {
      throw py::value_error("ctc: input_lengths[" + std::to_string(n) + "] = " + std::to_string(il[n]) +
                            " is outside [0, " + std::to_string(frames) + "]");
    }
    if (tl[n] < 0 || off[n] < 0 || off[n] > nlab || tl[n] > nlab - off[n]) {
      throw py::value_error("ctc: the labels of sequence " + std::to_string(n) + " (offset " + std::to_string(off[n]) +
                            ", length " + std::to_string(tl[n]) + ") are not inside labels (" +
                            std::to_string(nlab) + " elements)");
    }
    for (std::int64_t j = off[n]; j < off[n] + tl[n]; ++j) {
      if (lab[j] < 0 || lab[j] >= C || lab[j] == blank) {
        throw py::value_error("ctc: label " + std::to_string(lab[j]) + " of sequence " + std::to_string(n) +
                              " must lie in [0, " + std::to_string(C) + ") and differ from blank=" +
                              std::to_string(blank));
      }
    }
  }
  if (overlap(loss, x) || (grad && overlap(loss, *grad))) throw py::value_error("ctc: loss_out overlaps another array");

  fl::CtcArgs<T> a;
  a.x = xa.data();
  a.frames = std::size_t(frames);
  a.N = std::size_t(N);
  a.C = std::size_t(C);
  a.batch_first = batch_first;
  a.log_probs = log_probs;
  a.labels = lab;
  a.offsets = off;
  a.target_lengths = tl;
  a.input_lengths = il;
  a.blank = blank;
  a.zero_infinity = zero_infinity;
  a.gscale = gscalea ? gscalea->data() : nullptr;
  a.loss = loss_out.data();
  a.grad = grad_out.data();
  a.nthreads = nthreads;
  py::gil_scoped_release release;
  double scratch_bytes;
  if constexpr (std::is_same_v<T, float>) {
    scratch_bytes = g_ctc->f32(a);
  } else {
    scratch_bytes = g_ctc->f64(a);
  }
  loss_out.finish();
  grad_out.finish();
  return scratch_bytes;
}

double ctc_entry(py::handle x, py::ssize_t frames, py::ssize_t N, py::ssize_t C, bool batch_first, bool log_probs,
           py::handle labels, py::handle offsets, py::handle tlen, py::handle ilen, std::int64_t blank,
           bool zero_infinity, py::handle gscale, py::handle loss_out, py::handle grad_out, int nthreads) {
  if (Array<double>::check_(x)) {
    return run<double>(x, frames, N, C, batch_first, log_probs, labels, offsets, tlen, ilen, blank, zero_infinity,
                       gscale, loss_out, grad_out, nthreads);
  }
  if (Array<float>::check_(x)) {
    return run<float>(x, frames, N, C, batch_first, log_probs, labels, offsets, tlen, ilen, blank, zero_infinity,
                      gscale, loss_out, grad_out, nthreads);
  }
  throw py::type_error("ctc: x must be a C-contiguous numpy array of dtype float32 or float64");
}

}  // namespace

namespace fusedloss {

// Called once from PYBIND11_MODULE with the ISA level bindings.cpp chose for the other kernels.
void bind_ctc(py::module_& m, const std::string& isa) {
  g_ctc = &ctc_kernels_baseline();
#if defined(FUSEDLOSS_HAVE_ISA_AVX2)
  if (isa == "avx2") g_ctc = &ctc_kernels_avx2();
#endif
#if defined(FUSEDLOSS_HAVE_ISA_AVX512)
  if (isa == "avx512") g_ctc = &ctc_kernels_avx512();
#endif
  (void)isa;
  m.def("ctc", &ctc_entry,
        "ctc(x, T, N, C, batch_first, log_probs, labels, offsets, target_lengths, input_lengths, blank,\n"
        "zero_infinity, gscale, loss_out, grad_out, nthreads) -> float\n\n"
        "CTC loss (per sequence, float64, into loss_out) and gradient (gscale[n] * (p - occupancy), into\n"
        "grad_out, optional) of x (T*N*C scores, float32 or float64; log-probabilities when log_probs).\n"
        "Sequence n's labels are labels[offsets[n]:offsets[n] + target_lengths[n]] (int64). Everything is\n"
        "checked first. Returns the peak bytes of scratch memory the kernel held.",
        py::arg("x"), py::arg("T"), py::arg("N"), py::arg("C"), py::arg("batch_first"), py::arg("log_probs"),
        py::arg("labels"), py::arg("offsets"), py::arg("target_lengths"), py::arg("input_lengths"),
        py::arg("blank"), py::arg("zero_infinity"), py::arg("gscale").none(true), py::arg("loss_out"),
        py::arg("grad_out").none(true), py::arg("nthreads"));
}

}  // namespace fusedloss
