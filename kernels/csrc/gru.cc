// GRU ("reset after", the form of cuDNN and PyTorch nn.GRU) recurrence loops as XLA FFI
// handlers: the forward loop and the backward loop that yields the gradients of the input
// pre-activations. rnnlab/fused/gru.py does the products around them in XLA.
//
// Forward, gate order r, z, n (gx = x W_ih + b_ih, h' the state the step sees):
//   u = (h' rec_mask) W_hh + b_hh;  r = sigma(gx_r + u_r);  z = sigma(gx_z + u_z)
//   n = tanh(gx_n + r u_n);  h_t = n upd + z (h' - n upd);  a padded step holds h.
// Saved per step: [r, z, n, u_n].
// Backward, dh the gradient reaching h_t:
//   dn = dh (1 - z) upd (1 - n^2);  dz = dh (h' - n upd) z (1 - z);  dr = dn u_n r (1 - r)
//   da = [dr, dz, dn] (the output);  du = [dr, dz, dn r];  dh' = dh z + (du W_hh^T) rec_mask
#include "tiles.h"
#include "xla_pool.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace rnnlab {
namespace {

struct Dims {
  int t, b, h;
};

// One row of the forward step (restrict pointers: the compiler vectorises the loop).
void gru_gates(int H, const float* __restrict a, const float* __restrict u,
               const float* __restrict h_in, const float* __restrict upd, float* __restrict g4,
               float* __restrict h_out) {
  for (int j = 0; j < H; ++j) {
    float rv = sigmoid_approx(a[j] + u[j]);
    float zv = sigmoid_approx(a[H + j] + u[H + j]);
    float un = u[2 * H + j];
    float n = tanh_approx(a[2 * H + j] + rv * un);
    float nu = n * upd[j];
    g4[j] = rv;
    g4[H + j] = zv;
    g4[2 * H + j] = n;
    g4[3 * H + j] = un;
    h_out[j] = nu + zv * (h_in[j] - nu);
  }
}

// One row of the backward step: da (the output), du (for the product with W_hh^T) and
// dh z (the part of dh_{t-1} that bypasses the product).
void gru_gate_grads(int H, const float* __restrict g4, const float* __restrict h_seen,
                    const float* __restrict dy, const float* __restrict upd,
                    const float* __restrict dh, float* __restrict da, float* __restrict du,
                    float* __restrict dh_z) {
  for (int j = 0; j < H; ++j) {
    float rv = g4[j], zv = g4[H + j], nv = g4[2 * H + j], un = g4[3 * H + j];
    float dh_in = dh[j] + dy[j];
    float dn = dh_in * (1.0f - zv) * upd[j] * (1.0f - nv * nv);
    float dz = dh_in * (h_seen[j] - nv * upd[j]) * zv * (1.0f - zv);
    float dr = dn * un * rv * (1.0f - rv);
    da[j] = dr;
    da[H + j] = dz;
    da[2 * H + j] = dn;
    du[j] = dr;
    du[H + j] = dz;
    du[2 * H + j] = dn * rv;
    dh_z[j] = dh_in * zv;
  }
}

void gru_forward(Dims d, const float* gx, const float* w_hh, const float* b_hh, const float* h0,
                 const float* mask, const float* resets, const float* rc, const float* rec,
                 const float* upd, float* gates, float* hs, float* h_last, int64_t threads) {
  const int H = d.h, G = 3 * H, B = d.b;
  Packed w(w_hh, H, G, false);
  const int ld = w.padded();
  Aligned ones(H);
  std::fill(ones.ptr, ones.ptr + H, 1.0f);
  split_batch(B, threads, [&](int r0, int r1) {
    const int rows = r1 - r0;
    Aligned h(rows * H), hrec(rows * H), u(static_cast<size_t>(rows) * ld);
    // Without saved gates (a forward pass that is not differentiated) each row writes them
    // to this scratch row, which stays in L1 (as lstm.cc).
    Aligned g4_row(gates ? 1 : 4 * H);
    std::vector<const float*> h_in(rows);
    std::memcpy(h.ptr, h0 + static_cast<size_t>(r0) * H, sizeof(float) * rows * H);
    for (int t = 0; t < d.t; ++t) {
      for (int r = 0; r < rows; ++r) {
        const int b = r0 + r;
        const bool reset = resets && resets[static_cast<size_t>(t) * B + b] != 0.0f;
        h_in[r] = reset ? rc + static_cast<size_t>(b) * H : h.ptr + r * H;
        const float* m = rec ? rec + static_cast<size_t>(b) * H : ones.ptr;
        float* hr = hrec.ptr + r * H;
        for (int j = 0; j < H; ++j) hr[j] = h_in[r][j] * m[j];
        std::memcpy(u.ptr + static_cast<size_t>(r) * ld, b_hh, sizeof(float) * G);
      }
      gemm_acc(hrec.ptr, H, rows, w, u.ptr, ld);
      for (int r = 0; r < rows; ++r) {
        const int b = r0 + r;
        const size_t row = static_cast<size_t>(t) * B + b;
        const float* a = gx + row * G;
        const float* ur = u.ptr + static_cast<size_t>(r) * ld;
        const float* um = upd ? upd + static_cast<size_t>(b) * H : ones.ptr;
        const float* hi = h_in[r];
        float* g4 = gates ? gates + row * 4 * H : g4_row.ptr;
        float* hn = hs + row * H;
        gru_gates(H, a, ur, hi, um, g4, hn);
        float* hr = h.ptr + r * H;
        if (!mask || mask[row] != 0.0f) {
          std::memcpy(hr, hn, sizeof(float) * H);
        } else {  // padding holds the carry from before the step
          std::memcpy(hn, hr, sizeof(float) * H);
        }
      }
    }
    std::memcpy(h_last + static_cast<size_t>(r0) * H, h.ptr, sizeof(float) * rows * H);
  });
}

void gru_backward(Dims d, const float* gates, const float* h_seen, const float* dhs,
                  const float* mask, const float* resets, const float* rec, const float* upd,
                  const float* w_hh, const float* dh_last, float* das, float* dh0, float* d_rc,
                  int64_t threads) {
  const int H = d.h, G = 3 * H, B = d.b;
  Packed wt(w_hh, G, H, true);  // W_hh^T [3H, H]
  const int ld = wt.padded();
  Aligned ones(H);
  std::fill(ones.ptr, ones.ptr + H, 1.0f);
  split_batch(B, threads, [&](int r0, int r1) {
    const int rows = r1 - r0;
    const size_t n = static_cast<size_t>(rows) * H;
    Aligned dh(n), dhz(n), rc(n), du(static_cast<size_t>(rows) * G);
    Aligned prod(static_cast<size_t>(rows) * ld);
    std::memcpy(dh.ptr, dh_last + static_cast<size_t>(r0) * H, sizeof(float) * n);
    for (int t = d.t - 1; t >= 0; --t) {
      for (int r = 0; r < rows; ++r) {
        const int b = r0 + r;
        const size_t row = static_cast<size_t>(t) * B + b;
        float* da = das + row * G;
        float* dur = du.ptr + static_cast<size_t>(r) * G;
        if (mask && mask[row] == 0.0f) {  // padding: no gradient, the carry's passes
          std::memset(da, 0, sizeof(float) * G);
          std::memset(dur, 0, sizeof(float) * G);
          continue;
        }
        const float* g4 = gates + row * 4 * H;
        const float* hp = h_seen + row * H;
        const float* dy = dhs + row * H;
        const float* um = upd ? upd + static_cast<size_t>(b) * H : ones.ptr;
        const float* dhr = dh.ptr + r * H;
        float* dz_h = dhz.ptr + r * H;
        gru_gate_grads(H, g4, hp, dy, um, dhr, da, dur, dz_h);
      }
      std::memset(prod.ptr, 0, sizeof(float) * rows * ld);
      gemm_acc(du.ptr, G, rows, wt, prod.ptr, ld);
      for (int r = 0; r < rows; ++r) {
        const int b = r0 + r;
        const size_t row = static_cast<size_t>(t) * B + b;
        if (mask && mask[row] == 0.0f) continue;  // padding holds the carry gradient
        const float* m = rec ? rec + static_cast<size_t>(b) * H : ones.ptr;
        const float* p = prod.ptr + static_cast<size_t>(r) * ld;
        const float* dz_h = dhz.ptr + r * H;
        float* dhr = dh.ptr + r * H;
        if (resets && resets[row] != 0.0f) {
          float* acc = rc.ptr + r * H;
          for (int j = 0; j < H; ++j) {
            acc[j] += dz_h[j] + p[j] * m[j];
            dhr[j] = 0.0f;
          }
        } else {
          for (int j = 0; j < H; ++j) dhr[j] = dz_h[j] + p[j] * m[j];
        }
      }
    }
    std::memcpy(dh0 + static_cast<size_t>(r0) * H, dh.ptr, sizeof(float) * n);
    std::memcpy(d_rc + static_cast<size_t>(r0) * H, rc.ptr, sizeof(float) * n);
  });
}

using F32 = ffi::Buffer<ffi::F32>;
using Out = ffi::ResultBuffer<ffi::F32>;

ffi::Error GruForward(F32 gx, F32 w_hh, F32 b_hh, F32 h0, F32 mask, F32 resets, F32 rc, F32 rec,
                      F32 upd, Out gates, Out hs, Out h_last, int64_t threads,
                        ffi::ThreadPool xla_pool) {
  XlaPool pool(xla_pool);
  UsePool guard(&pool);
  auto dims = gx.dimensions();
  if (dims.size() != 3 || dims[2] % 3)
    return ffi::Error::InvalidArgument("gru forward: gx must be [T, B, 3H]");
  Dims d{static_cast<int>(dims[0]), static_cast<int>(dims[1]), static_cast<int>(dims[2] / 3)};
  if (w_hh.element_count() != static_cast<size_t>(d.h) * 3 * d.h ||
      b_hh.element_count() != static_cast<size_t>(3 * d.h) ||
      h0.element_count() != static_cast<size_t>(d.b) * d.h)
    return ffi::Error::InvalidArgument("gru forward: w_hh [H, 3H], b_hh [3H], h0 [B, H]");
  if (d.t == 0 || d.b == 0) return ffi::Error::Success();
  gru_forward(d, gx.typed_data(), w_hh.typed_data(), b_hh.typed_data(), h0.typed_data(),
              opt(mask.typed_data(), mask.element_count()),
              opt(resets.typed_data(), resets.element_count()), rc.typed_data(),
              opt(rec.typed_data(), rec.element_count()),
              opt(upd.typed_data(), upd.element_count()),
              gates->element_count() ? gates->typed_data() : nullptr, hs->typed_data(),
              h_last->typed_data(), threads);
  return ffi::Error::Success();
}

ffi::Error GruBackward(F32 gates, F32 h_seen, F32 dhs, F32 mask, F32 resets, F32 rec, F32 upd,
                       F32 w_hh, F32 dh_last, Out das, Out dh0, Out d_rc, int64_t threads,
                        ffi::ThreadPool xla_pool) {
  XlaPool pool(xla_pool);
  UsePool guard(&pool);
  auto dims = gates.dimensions();
  if (dims.size() != 3 || dims[2] % 4)
    return ffi::Error::InvalidArgument("gru backward: gates must be [T, B, 4H]");
  Dims d{static_cast<int>(dims[0]), static_cast<int>(dims[1]), static_cast<int>(dims[2] / 4)};
  if (w_hh.element_count() != static_cast<size_t>(d.h) * 3 * d.h)
    return ffi::Error::InvalidArgument("gru backward: w_hh must be [H, 3H]");
  if (d.b == 0) return ffi::Error::Success();
  gru_backward(d, gates.typed_data(), h_seen.typed_data(), dhs.typed_data(),
               opt(mask.typed_data(), mask.element_count()),
               opt(resets.typed_data(), resets.element_count()),
               opt(rec.typed_data(), rec.element_count()),
               opt(upd.typed_data(), upd.element_count()), w_hh.typed_data(),
               dh_last.typed_data(), das->typed_data(), dh0->typed_data(), d_rc->typed_data(),
               threads);
  return ffi::Error::Success();
}

}  // namespace
}  // namespace rnnlab

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnlabGruForward, rnnlab::GruForward,
                              ffi::Ffi::Bind()
                                  .Arg<rnnlab::F32>()  // gx = x W_ih + b_ih [T, B, 3H]
                                  .Arg<rnnlab::F32>()  // w_hh [H, 3H]
                                  .Arg<rnnlab::F32>()  // b_hh [3H]
                                  .Arg<rnnlab::F32>()  // h0 [B, H]
                                  .Arg<rnnlab::F32>()  // mask [T, B] or [0]
                                  .Arg<rnnlab::F32>()  // resets [T, B] or [0]
                                  .Arg<rnnlab::F32>()  // reset carry [B, H]
                                  .Arg<rnnlab::F32>()  // recurrent mask [B, H] or [0]
                                  .Arg<rnnlab::F32>()  // update mask [B, H] or [0]
                                  .Ret<rnnlab::F32>()  // [r, z, n, u_n] [T, B, 4H] or [0]
                                  .Ret<rnnlab::F32>()  // hs [T, B, H]
                                  .Ret<rnnlab::F32>()  // h_T
                                  .Attr<int64_t>("threads")
                                  .Ctx<ffi::ThreadPool>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnlabGruBackward, rnnlab::GruBackward,
                              ffi::Ffi::Bind()
                                  .Arg<rnnlab::F32>()  // [r, z, n, u_n] [T, B, 4H]
                                  .Arg<rnnlab::F32>()  // the state each step saw [T, B, H]
                                  .Arg<rnnlab::F32>()  // output gradients [T, B, H]
                                  .Arg<rnnlab::F32>()  // mask [T, B] or [0]
                                  .Arg<rnnlab::F32>()  // resets [T, B] or [0]
                                  .Arg<rnnlab::F32>()  // recurrent mask [B, H] or [0]
                                  .Arg<rnnlab::F32>()  // update mask [B, H] or [0]
                                  .Arg<rnnlab::F32>()  // w_hh [H, 3H]
                                  .Arg<rnnlab::F32>()  // dh_T
                                  .Ret<rnnlab::F32>()  // input pre-activation gradients
                                  .Ret<rnnlab::F32>()  // dh0
                                  .Ret<rnnlab::F32>()  // reset carry gradient
                                  .Attr<int64_t>("threads")
                                  .Ctx<ffi::ThreadPool>());
