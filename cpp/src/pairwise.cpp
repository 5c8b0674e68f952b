// The kernels of the pairwise losses whose row is one element (run_elements, pairwise.hpp) for ONE instruction-set
// level (compiled once per level, like ctc.cpp; see CMakeLists.txt): their loops vectorise, and the SIMD levels
// change their speed (gaussian_nll's log and divisions). Everything it instantiates lives in
// fusedloss::isa_<level>; it exports pairwise_kernels_<level>().
#include "fusedloss/pairwise.hpp"

namespace fusedloss {
FUSEDLOSS_ISA_BEGIN
namespace {
template <class Loss>
constexpr PairwiseElementEntry entry() {
  return {&pairwise::run_elements<Loss, float>, &pairwise::run_elements<Loss, double>};
}
constexpr PairwiseKernels kPairwise = {FUSEDLOSS_ISA_NAME, entry<pairwise::MarginRanking>(),
                                       entry<pairwise::GaussianNll>()};
}  // namespace
FUSEDLOSS_ISA_END

const PairwiseKernels& FUSEDLOSS_ISA_CAT_(pairwise_kernels_, FUSEDLOSS_ISA)() { return kPairwise; }
}  // namespace fusedloss
