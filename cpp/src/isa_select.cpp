// The runtime choice of the instruction-set level (see cpp/include/fusedloss/isa_select.hpp).
#include "fusedloss/isa_select.hpp"

#include <cctype>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace fusedloss {
namespace {

struct IsaLevel {
  const char* name;
  const KernelTable& (*table)();
  bool (*cpu_has)();
  const char* needs;  // the CPU features the level's flags assume
};

bool cpu_any() { return true; }
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#if defined(FUSEDLOSS_HAVE_ISA_AVX2)
// __builtin_cpu_supports also checks that the OS saves the YMM/ZMM state (XGETBV), not just CPUID.
bool cpu_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif
#if defined(FUSEDLOSS_HAVE_ISA_AVX512)
bool cpu_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif
#endif

// Best first. Only levels whose translation units were built are listed.
const IsaLevel kLevels[] = {
#if defined(FUSEDLOSS_HAVE_ISA_AVX512)
    {"avx512", &kernel_table_avx512, &cpu_avx512, "avx512f avx512dq avx512bw avx512vl avx2 fma"},
#endif
#if defined(FUSEDLOSS_HAVE_ISA_AVX2)
    {"avx2", &kernel_table_avx2, &cpu_avx2, "avx2 fma"},
#endif
    {"baseline", &kernel_table_baseline, &cpu_any, ""},
};

}  // namespace

std::vector<const char*> compiled_levels() {
  std::vector<const char*> names;
  for (const auto& l : kLevels) names.push_back(l.name);
  return names;
}

const KernelTable& choose_kernels() {
  const char* env = std::getenv("FUSEDLOSS_SIMD");
  std::string want = (env && *env) ? env : "auto";
  for (char& c : want) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (want == "auto") {
    for (const auto& l : kLevels) {
      if (l.cpu_has()) return l.table();
    }
  }
  for (const auto& l : kLevels) {
    if (want != l.name) continue;
    if (!l.cpu_has()) {
      throw std::runtime_error("FUSEDLOSS_SIMD=" + want + ": this CPU lacks some of " + l.needs);
    }
    return l.table();
  }
  std::string known;
  for (const auto& l : kLevels) known += std::string(", ") + l.name;
  throw std::runtime_error("FUSEDLOSS_SIMD=" + want + " is not a level this build has (auto" + known + ")");
}

std::vector<const char*> cpu_features() {
  std::vector<const char*> found;
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) found.push_back("sse4.2");
  if (__builtin_cpu_supports("avx")) found.push_back("avx");
  if (__builtin_cpu_supports("avx2")) found.push_back("avx2");
  if (__builtin_cpu_supports("fma")) found.push_back("fma");
  if (__builtin_cpu_supports("avx512f")) found.push_back("avx512f");
#endif
  return found;
}

}  // namespace fusedloss
