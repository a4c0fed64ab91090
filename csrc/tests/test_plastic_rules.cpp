// Unit tests of the shared rule math (csrc/include/hebbkern/plastic_rules.h), run by ctest.
// The same inline functions run in the CPU kernels and (later) the CUDA kernels, so these checks
// cover both. No torch dependency: every adjoint is checked against central finite differences
// of trace_forward in double precision, at random points and next to the clip bounds.
#include <cmath>
#include <cstdio>
#include <random>

#include "hebbkern/plastic_rules.h"

using hebbkern::Rule;

namespace {

int passed = 0, failed = 0;

void check(bool ok, const char* what, const char* rule, double got, double want) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAIL %s [%s]: got %.12g want %.12g\n", what, rule, got, want);
  }
}

bool close(double a, double b, double tol) {
  return std::fabs(a - b) <= tol * (1.0 + std::fabs(b));
}

struct Point {
  double hebb, elig, pre, post, mod, eta, clip;
};

// Loss L = a * H' + b * E' of one updated element, as a function of the inputs.
template <Rule R>
double loss(Point p, double a, double b) {
  hebbkern::trace_forward<R>(p.hebb, p.elig, p.pre, p.post, p.mod, p.eta, p.clip);
  return a * p.hebb + (hebbkern::has_eligibility(R) ? b * p.elig : 0.0);
}

template <Rule R>
void check_adjoints(const char* name, std::mt19937& gen) {
  std::uniform_real_distribution<double> U(-1.0, 1.0);
  for (int n = 0; n < 200; ++n) {
    Point p{U(gen), U(gen), U(gen), U(gen), U(gen), 0.1 + 0.4 * (U(gen) + 1.0) / 2, 0.7};
    const double a = U(gen), b = U(gen);
    // Keep away from the clip's kink, where the finite difference is not a derivative.
    Point q = p;
    hebbkern::trace_forward<R>(q.hebb, q.elig, q.pre, q.post, q.mod, q.eta, q.clip);
    constexpr Rule H = hebbkern::hard_rule(R);
    const double D = H == Rule::Clip       ? p.eta * p.pre * p.post
                     : H == Rule::Neuromod ? p.mod * p.pre * p.post
                                           : p.mod * p.elig;
    const double pre_clamp =
        hebbkern::is_soft(R) ? hebbkern::soft_step(p.hebb, D, 1.0 / p.clip) : p.hebb + D;
    if (hebbkern::is_clipped(R) && std::fabs(std::fabs(pre_clamp) - p.clip) < 1e-3) continue;
    // The soft clip's kink at D = 0 (both branches pass there, as torch.clamp's do).
    if (hebbkern::is_soft(R) && std::fabs(D) < 1e-3) continue;

    double dH = a, dE = b;
    const auto g =
        hebbkern::trace_backward<R>(p.hebb, p.elig, p.pre, p.post, p.mod, p.eta, p.clip, dH, dE);
    const double eps = 1e-6;
    auto fd = [&](double Point::* field) {
      Point hi = p, lo = p;
      hi.*field += eps;
      lo.*field -= eps;
      return (loss<R>(hi, a, b) - loss<R>(lo, a, b)) / (2 * eps);
    };
    check(close(dH, fd(&Point::hebb), 1e-7), "d hebb", name, dH, fd(&Point::hebb));
    if (hebbkern::has_eligibility(R))
      check(close(dE, fd(&Point::elig), 1e-7), "d elig", name, dE, fd(&Point::elig));
    check(close(g.d_pre, fd(&Point::pre), 1e-7), "d pre", name, g.d_pre, fd(&Point::pre));
    check(close(g.d_post, fd(&Point::post), 1e-7), "d post", name, g.d_post, fd(&Point::post));
    if (hebbkern::is_modulated(R))
      check(close(g.d_mod, fd(&Point::mod), 1e-7), "d mod", name, g.d_mod, fd(&Point::mod));
    if (hebbkern::uses_eta(R))
      check(close(g.d_eta, fd(&Point::eta), 1e-7), "d eta", name, g.d_eta, fd(&Point::eta));
  }
}

void check_forward_values() {
  double H = 0.5, E = 0.25;
  hebbkern::trace_forward<Rule::Hebb>(H, E, 2.0, 3.0, 0.0, 0.1, 1.0);
  check(close(H, 0.9 * 0.5 + 0.1 * 6.0, 1e-15), "hebb value", "hebb", H, 1.05);
  H = 0.5;
  hebbkern::trace_forward<Rule::Oja>(H, E, 2.0, 3.0, 0.0, 0.1, 1.0);
  check(close(H, 0.5 + 0.1 * 3.0 * (2.0 - 3.0 * 0.5), 1e-15), "oja value", "oja", H, 0.65);
  H = 0.5;
  hebbkern::trace_forward<Rule::Clip>(H, E, 2.0, 3.0, 0.0, 0.1, 1.0);
  check(H == 1.0, "clip saturates at +c", "clip", H, 1.0);
  H = 0.5;
  hebbkern::trace_forward<Rule::Neuromod>(H, E, 2.0, 3.0, -0.5, 0.0, 2.0);
  check(H == -2.0, "neuromod saturates at -c", "neuromod", H, -2.0);
  // Retro: H moves by the eligibility as it stood BEFORE this step's product; E updates after.
  H = 0.5;
  E = 0.25;
  hebbkern::trace_forward<Rule::Retro>(H, E, 2.0, 3.0, 0.4, 0.1, 1.0);
  check(close(H, 0.5 + 0.4 * 0.25, 1e-15), "retro uses old eligibility", "retro", H, 0.6);
  check(close(E, 0.9 * 0.25 + 0.1 * 6.0, 1e-15), "retro eligibility", "retro", E, 0.825);
}

// f'(x) read from the output y = f(x) by `grad`, against a central finite difference of f.
template <typename F, typename G>
void check_derivative(F f, G grad, const char* what, const char* name) {
  const double xs[] = {-2.3, -0.7, -0.01, 0.02, 0.4, 1.9};
  const double eps = 1e-6;
  for (double x : xs) {
    const double fd = (f(x + eps) - f(x - eps)) / (2 * eps);
    const double got = grad(f(x));
    check(close(got, fd, 1e-7), what, name, got, fd);
  }
}

// The activations and modulator squashes of SPEC.md section 1.1: the derivative read from the
// output against a finite difference of the function, away from relu's and selu's kink at 0.
void check_activations() {
  const char* acts[] = {"tanh", "relu", "selu", "sigmoid", "identity"};
  const char* squashes[] = {"tanh", "sigmoid", "identity"};
  for (int a = 0; a < 5; ++a) {
    check_derivative([a](double x) { return hebbkern::act_forward(a, x); },
                     [a](double y) { return hebbkern::act_grad_from_output(a, y); },
                     "activation derivative", acts[a]);
  }
  for (int q = 0; q < 3; ++q) {
    check_derivative([q](double x) { return hebbkern::squash_forward(q, x); },
                     [q](double s) { return hebbkern::squash_grad_from_output(q, s); },
                     "squash derivative", squashes[q]);
  }
  // torch's conventions at 0: relu' = 0, selu' = scale * alpha (the negative branch).
  check(hebbkern::act_grad_from_output(1, hebbkern::act_forward(1, 0.0)) == 0.0, "relu'(0) = 0",
        "relu", 0, 0);
  check(close(hebbkern::act_grad_from_output(2, hebbkern::act_forward(2, 0.0)),
              hebbkern::kSeluScale * hebbkern::kSeluAlpha, 1e-15),
        "selu'(0)", "selu", 0, 0);
}

void check_soft_clip_values() {
  // At c = 1 the soft clip is the maze code's H + max(D, 0) (1 - H) + min(D, 0) (1 + H).
  double H = 0.5, E = 0.0;
  hebbkern::trace_forward<Rule::ClipSoft>(H, E, 2.0, 3.0, 0.0, 0.1, 1.0);  // D = 0.6
  check(close(H, 0.5 + 0.6 * 0.5, 1e-15), "soft clip up", "clip_soft", H, 0.8);
  H = 0.5;
  hebbkern::trace_forward<Rule::NeuromodSoft>(H, E, 2.0, 3.0, -0.1, 0.0, 1.0);  // D = -0.6
  check(close(H, 0.5 - 0.6 * 1.5, 1e-15), "soft clip down", "neuromod_soft", H, -0.4);
  // Gradient at D = 0: both branches pass (dH'/dD = 2 at H = 0, c = 1).
  double dHout = 0;
  const double dD = hebbkern::soft_step_backward(0.0, 0.0, 1.0, 1.0, 1.0, dHout);
  check(dD == 2.0 && dHout == 1.0, "soft clip gradient at D = 0", "clip_soft", dD, 2.0);
}

void check_clamp_semantics() {
  // torch.clamp: the gradient passes at the bounds (inclusive) and NaN propagates in the value.
  check(hebbkern::clamp_passes(1.0, 1.0) && hebbkern::clamp_passes(-1.0, 1.0), "bounds pass",
        "clamp", 0, 0);
  check(!hebbkern::clamp_passes(1.0000001, 1.0), "outside blocks", "clamp", 0, 0);
  check(!hebbkern::clamp_passes(std::nan(""), 1.0), "NaN blocks gradient", "clamp", 0, 0);
  check(std::isnan(hebbkern::clamp_sym(std::nan(""), 1.0)), "NaN propagates", "clamp", 0, 0);
  float Hf = 0.0f, Ef = 0.0f;
  hebbkern::trace_forward<Rule::Neuromod>(Hf, Ef, std::nanf(""), 1.0f, 1.0f, 0.0f, 1.0f);
  check(std::isnan(Hf), "NaN input reaches the trace", "neuromod", Hf, 0.0);
}

}  // namespace

int main() {
  std::mt19937 gen(1234);
  check_adjoints<Rule::Hebb>("hebb", gen);
  check_adjoints<Rule::Oja>("oja", gen);
  check_adjoints<Rule::Clip>("clip", gen);
  check_adjoints<Rule::Neuromod>("neuromod", gen);
  check_adjoints<Rule::Retro>("retro", gen);
  check_adjoints<Rule::Gated>("gated", gen);
  check_adjoints<Rule::ClipSoft>("clip_soft", gen);
  check_adjoints<Rule::NeuromodSoft>("neuromod_soft", gen);
  check_adjoints<Rule::RetroSoft>("retro_soft", gen);
  check_activations();
  check_soft_clip_values();
  check_forward_values();
  check_clamp_semantics();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
