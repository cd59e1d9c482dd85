// LSTM recurrence loops (forward and the gate-gradient backward loop) as XLA FFI handlers.
//
// The maths and the residuals are those of rnnlab/fused/lstm.py, which does everything
// around the loops in XLA: the input projection x W_ih + b as one product before the
// forward loop, and the weight gradients as single products over all T * B rows after the
// backward loop. Gate order i, f, g, o; sigma(x) = (1 + tanh(x / 2)) / 2.
//
// Forward, per step and batch row (r: reset flag, m: padding mask, c0/h0: reset carry):
//   (c', h') = r ? (c0, h0) : (c, h);  z = gx_t + (h' * rec_mask) W_hh
//   c_t = f c' + i g upd_mask;  h_t = o tanh(c_t);  a padded step holds (c, h).
// Backward, with dh, dc the gradients reaching the carry after the step:
//   dcc = dc + (dh + dy) o (1 - tanh^2 c_t);  dz = [dcc g u i(1-i), dcc c' f(1-f),
//   dcc i u (1-g^2), (dh + dy) tanh(c_t) o(1-o)];  dh' = (dz W_hh^T) rec_mask, dc' = dcc f;
//   after a reset dh', dc' go to the reset carry and the carry before gets none.
#include "tiles.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace rnnlab {
namespace {

struct Dims {
  int t, b, h;
};

// One row of the forward step: gate activations, c_t and h_t from the pre-activations z.
// Separate functions with restrict pointers so that the compiler vectorises the loops.
void lstm_gates(int H, const float* __restrict z, const float* __restrict c_in,
                const float* __restrict upd, float* __restrict act, float* __restrict c_out,
                float* __restrict h_out) {
  for (int j = 0; j < H; ++j) {
    float i = sigmoid_approx(z[j]), f = sigmoid_approx(z[H + j]);
    float g = tanh_approx(z[2 * H + j]), o = sigmoid_approx(z[3 * H + j]);
    act[j] = i;
    act[H + j] = f;
    act[2 * H + j] = g;
    act[3 * H + j] = o;
    float cv = f * c_in[j] + i * g * upd[j];
    c_out[j] = cv;
    h_out[j] = o * tanh_approx(cv);
  }
}

// One row of the backward step: dz and dcc (the gradient reaching c_t) from the gates.
void lstm_gate_grads(int H, const float* __restrict act, const float* __restrict c,
                     const float* __restrict c_seen, const float* __restrict dy,
                     const float* __restrict upd, const float* __restrict dh,
                     const float* __restrict dc, float* __restrict dcc, float* __restrict dz) {
  for (int j = 0; j < H; ++j) {
    float i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j];
    float dh_in = dh[j] + dy[j];
    float tc = tanh_approx(c[j]);
    float dv = dc[j] + dh_in * o * (1.0f - tc * tc);
    dcc[j] = dv;
    dz[j] = dv * g * upd[j] * i * (1.0f - i);
    dz[H + j] = dv * c_seen[j] * f * (1.0f - f);
    dz[2 * H + j] = dv * i * upd[j] * (1.0f - g * g);
    dz[3 * H + j] = dh_in * tc * o * (1.0f - o);
  }
}

void lstm_forward(Dims d, const float* gx, const float* w_hh, const float* c0, const float* h0,
                  const float* mask, const float* resets, const float* rc_c, const float* rc_h,
                  const float* rec, const float* upd, float* acts, float* cs, float* hs,
                  float* c_last, float* h_last, int64_t threads) {
  const int H = d.h, G = 4 * H, B = d.b;
  Packed w(w_hh, H, G, false);
  const int ld = w.padded();
  Aligned ones(H);
  std::fill(ones.ptr, ones.ptr + H, 1.0f);
  split_batch(B, threads, [&](int r0, int r1) {
    const int rows = r1 - r0;
    Aligned c(rows * H), h(rows * H), hrec(rows * H), z(static_cast<size_t>(rows) * ld);
    // Where a call keeps no gate activations or cell states (acts or cs null: a forward
    // pass that is not differentiated), each row writes them to these scratch rows, which
    // stay in L1, instead of to [T, B, 4H] and [T, B, H] arrays nobody reads.
    Aligned act_row(acts ? 1 : G), c_row(cs ? 1 : H);
    std::vector<const float*> c_in(rows);
    std::memcpy(c.ptr, c0 + static_cast<size_t>(r0) * H, sizeof(float) * rows * H);
    std::memcpy(h.ptr, h0 + static_cast<size_t>(r0) * H, sizeof(float) * rows * H);
    for (int t = 0; t < d.t; ++t) {
      for (int r = 0; r < rows; ++r) {
        const int b = r0 + r;
        const bool reset = resets && resets[static_cast<size_t>(t) * B + b] != 0.0f;
        c_in[r] = reset ? rc_c + static_cast<size_t>(b) * H : c.ptr + r * H;
        const float* h_in = reset ? rc_h + static_cast<size_t>(b) * H : h.ptr + r * H;
        const float* m = rec ? rec + static_cast<size_t>(b) * H : ones.ptr;
        float* hr = hrec.ptr + r * H;
        for (int j = 0; j < H; ++j) hr[j] = h_in[j] * m[j];
        std::memcpy(z.ptr + static_cast<size_t>(r) * ld, gx + (static_cast<size_t>(t) * B + b) * G,
                    sizeof(float) * G);
      }
      gemm_acc(hrec.ptr, H, rows, w, z.ptr, ld);
      for (int r = 0; r < rows; ++r) {
        const int b = r0 + r;
        const size_t row = static_cast<size_t>(t) * B + b;
        const bool keep = !mask || mask[row] != 0.0f;
        const float* zr = z.ptr + static_cast<size_t>(r) * ld;
        const float* u = upd ? upd + static_cast<size_t>(b) * H : ones.ptr;
        const float* ci = c_in[r];
        float* act = acts ? acts + row * G : act_row.ptr;
        float* cn = cs ? cs + row * H : c_row.ptr;
        float* hn = hs + row * H;
        lstm_gates(H, zr, ci, u, act, cn, hn);
        float* cr = c.ptr + r * H;
        float* hr = h.ptr + r * H;
        if (keep) {
          std::memcpy(cr, cn, sizeof(float) * H);
          std::memcpy(hr, hn, sizeof(float) * H);
        } else {  // padding holds the carry from before the step
          std::memcpy(cn, cr, sizeof(float) * H);
          std::memcpy(hn, hr, sizeof(float) * H);
        }
      }
    }
    std::memcpy(c_last + static_cast<size_t>(r0) * H, c.ptr, sizeof(float) * rows * H);
    std::memcpy(h_last + static_cast<size_t>(r0) * H, h.ptr, sizeof(float) * rows * H);
  });
}

void lstm_backward(Dims d, const float* acts, const float* cs, const float* c_prevs,
                   const float* dhs, const float* mask, const float* resets, const float* rc_c,
                   const float* rec, const float* upd, const float* w_hh, const float* dc_last,
                   const float* dh_last, float* dz, float* dc0, float* dh0, float* d_rc_c,
                   float* d_rc_h, int64_t threads) {
  const int H = d.h, G = 4 * H, B = d.b;
  Packed wt(w_hh, G, H, true);  // W_hh^T [4H, H]
  const int ld = wt.padded();
  Aligned ones(H);
  std::fill(ones.ptr, ones.ptr + H, 1.0f);
  split_batch(B, threads, [&](int r0, int r1) {
    const int rows = r1 - r0;
    const size_t n = static_cast<size_t>(rows) * H;
    Aligned dc(n), dh(n), dcc(n), rc(n), rh(n), prod(static_cast<size_t>(rows) * ld);
    std::memcpy(dc.ptr, dc_last + static_cast<size_t>(r0) * H, sizeof(float) * n);
    std::memcpy(dh.ptr, dh_last + static_cast<size_t>(r0) * H, sizeof(float) * n);
    for (int t = d.t - 1; t >= 0; --t) {
      for (int r = 0; r < rows; ++r) {
        const int b = r0 + r;
        const size_t row = static_cast<size_t>(t) * B + b;
        float* dzr = dz + row * G;
        float* dcr = dcc.ptr + r * H;
        if (mask && mask[row] == 0.0f) {  // padding: no gate gradient, the carry's passes
          std::memset(dzr, 0, sizeof(float) * G);
          std::memset(dcr, 0, sizeof(float) * H);
          continue;
        }
        const bool reset = resets && resets[row] != 0.0f;
        const float* act = acts + row * G;
        const float* c = cs + row * H;
        const float* c_seen = reset ? rc_c + static_cast<size_t>(b) * H : c_prevs + row * H;
        const float* dy = dhs + row * H;
        const float* u = upd ? upd + static_cast<size_t>(b) * H : ones.ptr;
        const float* dhr = dh.ptr + r * H;
        const float* dci = dc.ptr + r * H;
        lstm_gate_grads(H, act, c, c_seen, dy, u, dhr, dci, dcr, dzr);
      }
      std::memset(prod.ptr, 0, sizeof(float) * rows * ld);
      gemm_acc(dz + (static_cast<size_t>(t) * B + r0) * G, G, rows, wt, prod.ptr, ld);
      for (int r = 0; r < rows; ++r) {
        const int b = r0 + r;
        const size_t row = static_cast<size_t>(t) * B + b;
        if (mask && mask[row] == 0.0f) continue;  // padding holds the carry gradients
        const bool reset = resets && resets[row] != 0.0f;
        const float* act = acts + row * G;
        const float* m = rec ? rec + static_cast<size_t>(b) * H : ones.ptr;
        const float* p = prod.ptr + static_cast<size_t>(r) * ld;
        const float* dcr = dcc.ptr + r * H;
        float* dhr = dh.ptr + r * H;
        float* dci = dc.ptr + r * H;
        if (reset) {
          float* ac = rc.ptr + r * H;
          float* ah = rh.ptr + r * H;
          for (int j = 0; j < H; ++j) {
            ac[j] += dcr[j] * act[H + j];
            ah[j] += p[j] * m[j];
            dci[j] = 0.0f;
            dhr[j] = 0.0f;
          }
        } else {
          for (int j = 0; j < H; ++j) {
            dci[j] = dcr[j] * act[H + j];
            dhr[j] = p[j] * m[j];
          }
        }
      }
    }
    std::memcpy(dc0 + static_cast<size_t>(r0) * H, dc.ptr, sizeof(float) * n);
    std::memcpy(dh0 + static_cast<size_t>(r0) * H, dh.ptr, sizeof(float) * n);
    std::memcpy(d_rc_c + static_cast<size_t>(r0) * H, rc.ptr, sizeof(float) * n);
    std::memcpy(d_rc_h + static_cast<size_t>(r0) * H, rh.ptr, sizeof(float) * n);
  });
}

using F32 = ffi::Buffer<ffi::F32>;
using Out = ffi::ResultBuffer<ffi::F32>;

ffi::Error check_rank3(const F32& a, const char* name) {
  if (a.dimensions().size() != 3)
    return ffi::Error::InvalidArgument(std::string(name) + " must be [T, B, features]");
  return ffi::Error::Success();
}

ffi::Error LstmForward(F32 gx, F32 w_hh, F32 c0, F32 h0, F32 mask, F32 resets, F32 rc_c,
                       F32 rc_h, F32 rec, F32 upd, Out acts, Out cs, Out hs, Out c_last,
                       Out h_last, int64_t threads) {
  if (auto e = check_rank3(gx, "lstm forward: gx"); e.failure()) return e;
  auto dims = gx.dimensions();
  Dims d{static_cast<int>(dims[0]), static_cast<int>(dims[1]), static_cast<int>(dims[2] / 4)};
  if (dims[2] % 4 || w_hh.element_count() != static_cast<size_t>(d.h) * 4 * d.h ||
      c0.element_count() != static_cast<size_t>(d.b) * d.h)
    return ffi::Error::InvalidArgument("lstm forward: gx [T, B, 4H], w_hh [H, 4H], c0 [B, H]");
  if (d.t == 0 || d.b == 0) return ffi::Error::Success();
  lstm_forward(d, gx.typed_data(), w_hh.typed_data(), c0.typed_data(), h0.typed_data(),
               opt(mask.typed_data(), mask.element_count()),
               opt(resets.typed_data(), resets.element_count()), rc_c.typed_data(),
               rc_h.typed_data(), opt(rec.typed_data(), rec.element_count()),
               opt(upd.typed_data(), upd.element_count()),
               acts->element_count() ? acts->typed_data() : nullptr,
               cs->element_count() ? cs->typed_data() : nullptr, hs->typed_data(),
               c_last->typed_data(), h_last->typed_data(), threads);
  return ffi::Error::Success();
}

ffi::Error LstmBackward(F32 acts, F32 cs, F32 c_prevs, F32 dhs, F32 mask, F32 resets, F32 rc_c,
                        F32 rec, F32 upd, F32 w_hh, F32 dc_last, F32 dh_last, Out dz, Out dc0,
                        Out dh0, Out d_rc_c, Out d_rc_h, int64_t threads) {
  if (auto e = check_rank3(acts, "lstm backward: acts"); e.failure()) return e;
  auto dims = acts.dimensions();
  Dims d{static_cast<int>(dims[0]), static_cast<int>(dims[1]), static_cast<int>(dims[2] / 4)};
  if (dims[2] % 4 || w_hh.element_count() != static_cast<size_t>(d.h) * 4 * d.h)
    return ffi::Error::InvalidArgument("lstm backward: acts [T, B, 4H], w_hh [H, 4H]");
  if (d.b == 0) return ffi::Error::Success();
  lstm_backward(d, acts.typed_data(), cs.typed_data(), c_prevs.typed_data(), dhs.typed_data(),
                opt(mask.typed_data(), mask.element_count()),
                opt(resets.typed_data(), resets.element_count()), rc_c.typed_data(),
                opt(rec.typed_data(), rec.element_count()),
                opt(upd.typed_data(), upd.element_count()), w_hh.typed_data(),
                dc_last.typed_data(), dh_last.typed_data(), dz->typed_data(), dc0->typed_data(),
                dh0->typed_data(), d_rc_c->typed_data(), d_rc_h->typed_data(), threads);
  return ffi::Error::Success();
}

}  // namespace
}  // namespace rnnlab

// The calling convention rnnlab/fused/kernel.py expects (kernel.ABI): 2 since a forward
// call may pass empty acts and cs results (nothing to keep). A library without this symbol,
// or with another number, is reported out of date and not used.
extern "C" int RnnlabKernelsAbi() { return 2; }

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnlabLstmForward, rnnlab::LstmForward,
                              ffi::Ffi::Bind()
                                  .Arg<rnnlab::F32>()  // gx = x W_ih + b [T, B, 4H]
                                  .Arg<rnnlab::F32>()  // w_hh [H, 4H]
                                  .Arg<rnnlab::F32>()  // c0 [B, H]
                                  .Arg<rnnlab::F32>()  // h0 [B, H]
                                  .Arg<rnnlab::F32>()  // mask [T, B] or [0]
                                  .Arg<rnnlab::F32>()  // resets [T, B] or [0]
                                  .Arg<rnnlab::F32>()  // reset carry c [B, H]
                                  .Arg<rnnlab::F32>()  // reset carry h [B, H]
                                  .Arg<rnnlab::F32>()  // recurrent mask [B, H] or [0]
                                  .Arg<rnnlab::F32>()  // update mask [B, H] or [0]
                                  .Ret<rnnlab::F32>()  // gate activations [T, B, 4H] or [0]
                                  .Ret<rnnlab::F32>()  // cs [T, B, H] or [0]
                                  .Ret<rnnlab::F32>()  // hs [T, B, H]
                                  .Ret<rnnlab::F32>()  // c_T
                                  .Ret<rnnlab::F32>()  // h_T
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnlabLstmBackward, rnnlab::LstmBackward,
                              ffi::Ffi::Bind()
                                  .Arg<rnnlab::F32>()  // gate activations [T, B, 4H]
                                  .Arg<rnnlab::F32>()  // cs [T, B, H]
                                  .Arg<rnnlab::F32>()  // c_{t-1} [T, B, H]
                                  .Arg<rnnlab::F32>()  // output gradients [T, B, H]
                                  .Arg<rnnlab::F32>()  // mask [T, B] or [0]
                                  .Arg<rnnlab::F32>()  // resets [T, B] or [0]
                                  .Arg<rnnlab::F32>()  // reset carry c [B, H]
                                  .Arg<rnnlab::F32>()  // recurrent mask [B, H] or [0]
                                  .Arg<rnnlab::F32>()  // update mask [B, H] or [0]
                                  .Arg<rnnlab::F32>()  // w_hh [H, 4H]
                                  .Arg<rnnlab::F32>()  // dc_T
                                  .Arg<rnnlab::F32>()  // dh_T
                                  .Ret<rnnlab::F32>()  // dz [T, B, 4H]
                                  .Ret<rnnlab::F32>()  // dc0
                                  .Ret<rnnlab::F32>()  // dh0
                                  .Ret<rnnlab::F32>()  // reset carry gradient c
                                  .Ret<rnnlab::F32>()  // reset carry gradient h
                                  .Attr<int64_t>("threads"));
