// The CTC kernels of ONE instruction-set level (compiled once per level, like kernels.cpp; see
// CMakeLists.txt). Everything it instantiates lives in fusedloss::isa_<level>; it exports ctc_kernels_<level>().
#include "fusedloss/ctc.hpp"

namespace fusedloss {
FUSEDLOSS_ISA_BEGIN
namespace {
constexpr CtcKernels kCtc = {FUSEDLOSS_ISA_NAME, &ctc::run<float>, &ctc::run<double>};
}  // namespace
FUSEDLOSS_ISA_END

const CtcKernels& FUSEDLOSS_ISA_CAT_(ctc_kernels_, FUSEDLOSS_ISA)() { return kCtc; }
}  // namespace fusedloss
