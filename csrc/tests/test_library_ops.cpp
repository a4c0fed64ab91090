// A libtorch program that links libhebbkern and calls its op through the dispatcher: proves the
// CMake library registers torch.ops.hebbkern and computes the same values as a direct loop.
#include <torch/torch.h>

#include <cstdio>

int main() {
  torch::manual_seed(0);
  const int64_t T = 5, B = 2, N = 6;
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto u = torch::randn({T, B, N}, opts);
  auto w = 0.5 * torch::randn({N, N}, opts);
  auto alpha = torch::randn({N, N}, opts);
  auto eta = torch::tensor(0.3, opts);
  auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("hebbkern::plastic_rnn_fwd", "")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const at::Tensor&,
              const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
              const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
              const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
              const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
              const std::optional<at::Tensor>&, const std::string&, double, int64_t, int64_t)>();
  auto out =
      op.call(u, w, alpha, std::nullopt, std::nullopt, std::nullopt, std::nullopt, eta,
              std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::string("hebb"), 1.0, 2,
              /*variant=*/0);
  auto h_kernel = std::get<0>(out);
  auto hebb_kernel = std::get<1>(out);

  // The same recurrence, written with plain tensor ops (SPEC.md section 1, rule "hebb").
  auto h = torch::zeros({B, N}, opts);
  auto H = torch::zeros({B, N, N}, opts);
  double worst = 0;
  for (int64_t t = 0; t < T; ++t) {
    auto a = u[t] + torch::bmm(h.unsqueeze(1), w + alpha * H).squeeze(1);
    auto hn = torch::tanh(a);
    H = (1 - 0.3) * H + 0.3 * h.unsqueeze(2) * hn.unsqueeze(1);
    h = hn;
    worst = std::max(worst, (h - h_kernel[t]).abs().max().item<double>());
  }
  worst = std::max(worst, (H - hebb_kernel).abs().max().item<double>());
  const bool ok = worst < 1e-12;
  std::printf("library op vs loop: max abs diff %.3g\n%d passed, %d failed\n", worst, ok ? 1 : 0,
              ok ? 0 : 1);
  return ok ? 0 : 1;
}
