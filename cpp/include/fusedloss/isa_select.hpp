// The runtime choice of the instruction-set level whose kernel table the module uses (cpp/src/isa_select.cpp).
//
// The kernel sources (cpp/src/kernels_*.cpp) are compiled once per level (CMakeLists.txt); at import the module
// takes the best level that was compiled and that this CPU supports, unless FUSEDLOSS_SIMD names one
// ("baseline", "avx2", "avx512"; "auto" or unset: the best). Naming a level that was not compiled or that the
// CPU lacks throws std::runtime_error (the import fails with ImportError, so the backend registry records why
// and an explicit backend="cpp" raises): a silent fallback would let a test that forces a level pass without
// testing it.
#pragma once

#include <vector>

#include "fusedloss/kernel_api.hpp"

namespace fusedloss {

// The kernel table for FUSEDLOSS_SIMD, or for the best level this CPU supports.
const KernelTable& choose_kernels();

// The levels this build compiled, best first.
std::vector<const char*> compiled_levels();

// The SIMD features this CPU offers (x86 with GCC or Clang; empty elsewhere).
std::vector<const char*> cpu_features();

}  // namespace fusedloss
