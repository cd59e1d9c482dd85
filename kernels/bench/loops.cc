// Times the compiled loops outside JAX: the forward and the backward loop of one cell at one
// shape, best of N calls, wall and process CPU time, and the loop products' GFLOP/s
// (2 T B (I + H) G H per loop and for the LSTM's weight gradient, G = 4 gates for the LSTM, 3 for the GRU, I = 0 for the GRU,
// whose loops leave the input products to XLA, and H / 2 for the LSTM here, whose loops
// run them). Built with the package's flags from the repository root (docs/performance.md, "The compiled CPU loops"):
//
//   g++ -O3 -march=native -mprefer-vector-width=512 -std=c++17 -Ikernels/csrc -I"$(python -c
//       'import jax.ffi; print(jax.ffi.include_dir())')" kernels/bench/loops.cc
//       -o build/loops -lpthread            (on one line; -DRNNLAB_GRU: the GRU)
//   build/loops T B H THREADS REPEATS       (e.g. 128 32 256 2 8: config A)
#include <cmath>
#include <cstdio>
#include <ctime>
#include <random>
#include <vector>

#ifdef RNNLAB_GRU
#include "gru.cc"
constexpr int kGates = 3;
#else
#include "lstm.cc"
constexpr int kGates = 4;
#endif

namespace {

double clock_s(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

std::vector<float> random(size_t n, std::mt19937& rng, float scale) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s T B H THREADS REPEATS\n", argv[0]);
    return 2;
  }
  const int T = std::atoi(argv[1]), B = std::atoi(argv[2]), H = std::atoi(argv[3]);
  const int threads = std::atoi(argv[4]), repeats = std::atoi(argv[5]);
  const size_t TB = static_cast<size_t>(T) * B, BH = static_cast<size_t>(B) * H;
  const int G = kGates * H;
  std::mt19937 rng(0);
  auto gx = random(TB * G, rng, 1.0f), w = random(static_cast<size_t>(H) * G, rng, 0.05f);
  auto h0 = random(BH, rng, 0.5f), dhs = random(TB * H, rng, 0.5f);
  std::vector<float> hs(TB * H), h_last(BH), dh0(BH), d_rc(BH), dx(TB * G);
  rnnlab::Dims d{T, B, H};
  int in_features = 0;  // the LSTM loops also run the input products (I = H / 2 here)
#ifdef RNNLAB_GRU
  auto b_hh = random(G, rng, 0.1f);
  std::vector<float> gates(TB * 4 * H);
  auto forward = [&] {
    rnnlab::gru_forward(d, gx.data(), w.data(), b_hh.data(), h0.data(), nullptr, nullptr,
                        nullptr, nullptr, nullptr, gates.data(), hs.data(), h_last.data(),
                        threads);
  };
  auto backward = [&] {
    rnnlab::gru_backward(d, gates.data(), hs.data(), dhs.data(), nullptr, nullptr, nullptr,
                         nullptr, w.data(), h_last.data(), dx.data(), dh0.data(), d_rc.data(),
                         threads);
  };
#else
  // Both products of a step are in the LSTM loops: K = I + H forward, N = H + I backward.
  const int I = H / 2;
  auto xs = random(TB * I, rng, 1.0f), w_ih = random(static_cast<size_t>(I) * G, rng, 0.05f);
  auto bias = random(G, rng, 0.1f), c0 = random(BH, rng, 0.5f);
  std::vector<float> acts(TB * G), cs(TB * H), c_last(BH), dc0(BH), d_rh(BH);
  std::vector<float> rows(TB * (I + H)), dxs(TB * I), db(G), dz(TB * G);
  d.i = I;
  in_features = I;
  auto forward = [&] {
    rnnlab::lstm_forward(d, xs.data(), w_ih.data(), w.data(), bias.data(), c0.data(),
                         h0.data(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                         acts.data(), cs.data(), hs.data(), rows.data(), c_last.data(),
                         h_last.data(), threads);
  };
  auto backward = [&] {
    rnnlab::lstm_backward(d, acts.data(), cs.data(), c0.data(), dhs.data(), nullptr, nullptr,
                          nullptr, nullptr, nullptr, nullptr, w_ih.data(), w.data(),
                          c_last.data(), h_last.data(), dz.data(), dxs.data(), db.data(),
                          nullptr, nullptr, dc0.data(), dh0.data(), d_rc.data(), d_rh.data(),
                          threads);
  };
  // The weight gradients [x, h']^T dZ after the backward loop (the same FLOP count).
  std::vector<float> dw_ih(static_cast<size_t>(I) * G), dw_hh(static_cast<size_t>(H) * G);
  auto weights = [&] {
    rnnlab::weight_grads(d, rows.data(), dz.data(), dw_ih.data(), dw_hh.data(), threads);
  };
#endif
  const double flop = 2.0 * T * B * (in_features + H) * G;
  const char* names[] = {"forward", "backward", "weight gradient"};
  for (int loop = 0; loop < (kGates == 4 ? 3 : 2); ++loop) {
    double wall = 1e30, cpu = 0;
    for (int r = 0; r < repeats; ++r) {
      const double w0 = clock_s(CLOCK_MONOTONIC), c0_ = clock_s(CLOCK_PROCESS_CPUTIME_ID);
#ifdef RNNLAB_GRU
      loop == 0 ? forward() : backward();
#else
      loop == 0 ? forward() : loop == 1 ? backward() : weights();
#endif
      const double dw = clock_s(CLOCK_MONOTONIC) - w0;
      if (dw < wall) wall = dw, cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0_;
    }
    std::printf("%s %s T=%d B=%d H=%d threads=%d: %.2f ms wall, %.2f ms CPU, %.0f GFLOP/s, "
                "%.0f GFLOP per CPU-second\n",
                kGates == 4 ? "lstm" : "gru", names[loop], T, B, H, threads, wall * 1e3,
                cpu * 1e3, flop / wall / 1e9, flop / cpu / 1e9);
  }
  double check = 0;
  for (float x : hs) check += x;
  for (float x : dx) check += std::fabs(x);
  std::printf("checksum %.6g\n", check);
  return 0;
}
