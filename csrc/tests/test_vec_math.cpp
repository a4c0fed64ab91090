// Accuracy of the CPU kernels' vectorisable tanh (csrc/cpu/vec_math.h) against double tanh.
#include <cmath>
#include <cstdio>
#include <limits>

#include "cpu/vec_math.h"

int main() {
  int passed = 0, failed = 0;
  double worst = 0, worst_x = 0;
  // Dense sweep of [-12, 12] plus tiny arguments, where tanh(x) ~ x.
  for (int i = -1200000; i <= 1200000; ++i) {
    const float x = static_cast<float>(i) * 1e-5f;
    const double want = std::tanh(static_cast<double>(x));
    const double got = hebbkern::cpu::tanh_vec(x);
    const double err = std::fabs(got - want) / std::fmax(std::fabs(want), 1e-30);
    if (err > worst) worst = err, worst_x = x;
  }
  for (float x = 1e-30f; x < 1e-3f; x *= 1.7f) {
    const double err =
        std::fabs(hebbkern::cpu::tanh_vec(x) - std::tanh(double(x))) / std::tanh(double(x));
    if (err > worst) worst = err, worst_x = x;
  }
  // Float's epsilon is 1.2e-7: a few ulp.
  if (worst < 5e-7)
    ++passed;
  else
    ++failed, std::printf("FAIL: max relative error %.3g at x = %.9g\n", worst, worst_x);
  const float inf = std::numeric_limits<float>::infinity();
  auto expect = [&](bool ok, const char* what) {
    if (ok)
      ++passed;
    else
      ++failed, std::printf("FAIL: %s\n", what);
  };
  expect(std::isnan(hebbkern::cpu::tanh_vec(std::nanf(""))), "tanh(NaN) is NaN");
  expect(hebbkern::cpu::tanh_vec(inf) == 1.0f, "tanh(inf) = 1");
  expect(hebbkern::cpu::tanh_vec(-inf) == -1.0f, "tanh(-inf) = -1");
  expect(hebbkern::cpu::tanh_vec(0.0f) == 0.0f, "tanh(0) = 0");
  expect(hebbkern::cpu::tanh_vec(-3.0f) == -hebbkern::cpu::tanh_vec(3.0f), "odd");
  std::printf("tanh_vec: max relative error %.3g at x = %.9g\n", worst, worst_x);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
