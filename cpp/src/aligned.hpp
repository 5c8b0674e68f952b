// Arrays at an address that is not a multiple of their item size, for the binding layer.
//
// NumPy lets a C-contiguous array start anywhere: a float32 view of a byte buffer at offset 1
// (np.zeros(4001, np.uint8)[1:].view(np.float32)) passes every dtype and layout check. The kernels read and write
// through T*, and a load or store of a T at such an address is undefined behaviour in C++ (x86 happens to
// tolerate it; the sanitizer job, tools/sanitize.sh, reports it). Such arrays are rare, so the binding handles
// them at the boundary instead of making every load of every kernel an unaligned one:
// - an input is read from an aligned copy (aligned_input), made once per call with the GIL held;
// - an output is written through an aligned scratch array that is copied into it after the loop (Output).
// An aligned array costs one test of its address. The overlap and in-place checks look at the arrays as
// given, so a misaligned array is accepted or refused exactly as an aligned one would be; when an output is
// an input itself (in place), the input's copy is read and the scratch array copied back over it.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

namespace fusedloss {

template <class T>
bool misaligned(const pybind11::array& a) {
  return reinterpret_cast<std::uintptr_t>(a.data()) % sizeof(T) != 0;
}

// A new C-contiguous array of a's shape and dtype (aligned: NumPy allocates it), holding a copy of a's bytes.
template <class T, int F>
pybind11::array_t<T, F> aligned_copy(const pybind11::array_t<T, F>& a) {
  pybind11::array_t<T, F> copy(std::vector<pybind11::ssize_t>(a.shape(), a.shape() + a.ndim()));
  const pybind11::array& src = a;
  std::memcpy(copy.mutable_data(), src.data(), static_cast<std::size_t>(a.nbytes()));
  return copy;
}

// The array the kernels may read: a itself, or an aligned copy of it.
template <class T, int F>
pybind11::array_t<T, F> aligned_input(const pybind11::array_t<T, F>& a) {
  return misaligned<T>(a) ? aligned_copy(a) : a;
}

template <class T, int F>
std::optional<pybind11::array_t<T, F>> aligned_input(const std::optional<pybind11::array_t<T, F>>& a) {
  if (!a) return std::nullopt;
  return aligned_input(*a);
}

// An output (or none): data() is where the kernel writes, finish() puts the result into the output given.
// Set up with the GIL held; finish() needs no GIL (a memcpy between buffers this object keeps alive).
template <class T, int F>
class Output {
 public:
  explicit Output(const std::optional<pybind11::array_t<T, F>>& out) {
    if (!out) return;
    target_ = *out;
    pybind11::array& target = *target_;
    if (misaligned<T>(target)) {
      scratch_ = pybind11::array_t<T, F>(std::vector<pybind11::ssize_t>(out->shape(), out->shape() + out->ndim()));
      data_ = scratch_->mutable_data();
      dst_ = target.mutable_data();  // writeable: the caller checked
      bytes_ = static_cast<std::size_t>(target.nbytes());
    } else {
      data_ = target_->mutable_data();
    }
  }
  T* data() const { return data_; }
  void finish() const {
    if (dst_) std::memcpy(dst_, data_, bytes_);
  }

 private:
  std::optional<pybind11::array_t<T, F>> target_, scratch_;
  T* data_ = nullptr;
  void* dst_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace fusedloss
