// LSTM recurrence loops (forward and the gate-gradient backward loop) as XLA FFI handlers.
//
// The maths and the residuals are those of rnnlab/fused/lstm.py. Both products of a step
// run here, as one product over the row [x_t, h'] and the stacked weights [W_ih; W_hh]
// (K = I + H), so that no [T, B, 4H] input projection is written to memory and read back;
// the forward loop keeps those rows ([T, B, I + H]) for the weight gradient, which rnnlab
// computes after the backward loop as one product [x, h']^T dZ over all T * B rows. The
// backward loop likewise multiplies dz_t by [W_hh^T | W_ih^T] once per step, giving dh' and
// the input gradient dx_t together, writes dz over the gate activations (XLA aliases the
// two buffers) and sums the bias gradient. Gate order i, f, g, o;
// sigma(x) = (1 + tanh(x / 2)) / 2.
//
// Forward, per step and batch row (r: reset flag, m: padding mask, c0/h0: reset carry):
//   (c', h') = r ? (c0, h0) : (c, h);  z = [x_t, h' * rec_mask] [W_ih; W_hh] + b
//   c_t = f c' + i g upd_mask;  h_t = o tanh(c_t);  a padded step holds (c, h).
// Backward, with dh, dc the gradients reaching the carry after the step:
//   dcc = dc + (dh + dy) o (1 - tanh^2 c_t);  dz = [dcc g u i(1-i), dcc c' f(1-f),
//   dcc i u (1-g^2), (dh + dy) tanh(c_t) o(1-o)];  [dh'', dx_t] = dz [W_hh^T | W_ih^T];
//   dh' = dh'' rec_mask, dc' = dcc f; after a reset dh', dc' go to the reset carry and the
//   carry before gets none; a padded step has dz = 0, dx_t = 0 and passes dh, dc through.

#include "tiles.h"
#include "xla_pool.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace rnnlab {
namespace {

struct Dims {
  int t, b, h, i;  // steps, batch, hidden, input features
};

// acc[k] += a[k] for k < n.
void add_to(int n, const float* __restrict a, float* __restrict acc) {
  for (int k = 0; k < n; ++k) acc[k] += a[k];
}

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

// One row of the backward step: dz and dcc f (the gradient reaching the carry before the
// step, dcc the one reaching c_t) from the gates.
void lstm_gate_grads(int H, const float* __restrict act, const float* __restrict c,
                     const float* __restrict c_seen, const float* __restrict dy,
                     const float* __restrict upd, const float* __restrict dh,
                     const float* __restrict dc, float* __restrict dcf, float* __restrict dz) {
  for (int j = 0; j < H; ++j) {
    float i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j];
    float dh_in = dh[j] + dy[j];
    float tc = tanh_approx(c[j]);
    float dv = dc[j] + dh_in * o * (1.0f - tc * tc);
    dcf[j] = dv * f;
    float di = dv * g * upd[j] * i * (1.0f - i);
    float df = dv * c_seen[j] * f * (1.0f - f);
    float dg = dv * i * upd[j] * (1.0f - g * g);
    float dout = dh_in * tc * o * (1.0f - o);
    dz[j] = di;
    dz[H + j] = df;
    dz[2 * H + j] = dg;
    dz[3 * H + j] = dout;
  }
}

void lstm_forward(Dims d, const float* xs, const float* w_ih, const float* w_hh,
                  const float* bias, const float* c0, const float* h0, const float* mask,
                  const float* resets, const float* rc_c, const float* rc_h, const float* rec,
                  const float* upd, float* acts, float* cs, float* hs, float* xh_out,
                  float* c_last, float* h_last, int64_t threads) {
  const int H = d.h, G = 4 * H, B = d.b, I = d.i, K = I + H;
  // [W_ih; W_hh] [I + H, 4H]: one product per step over the row [x_t, h'].
  Packed w(K, G, [=](int kk, int col) {
    return kk < I ? w_ih[static_cast<size_t>(kk) * G + col]
                  : w_hh[static_cast<size_t>(kk - I) * G + col];
  });
  const int ld = w.padded();
  Aligned ones(H);
  std::fill(ones.ptr, ones.ptr + H, 1.0f);
  split_batch(B, threads, [&](int r0, int r1) {
    const int rows = r1 - r0;
    Aligned c(rows * H), h(rows * H), z(static_cast<size_t>(rows) * ld);
    // The rows [x_t, h'] go straight to the kept [T, B, I + H] array when there is one
    // (a thread's rows of a step are contiguous there), else to this scratch block.
    Aligned xh_rows(xh_out ? 1 : static_cast<size_t>(rows) * K);
    // Where a call keeps no gate activations or cell states (acts or cs null: a forward
    // pass that is not differentiated), each row writes them to these scratch rows, which
    // stay in L1, instead of to [T, B, 4H] and [T, B, H] arrays nobody reads.
    Aligned act_row(acts ? 1 : G), c_row(cs ? 1 : H);
    std::vector<const float*> c_in(rows);
    std::memcpy(c.ptr, c0 + static_cast<size_t>(r0) * H, sizeof(float) * rows * H);
    std::memcpy(h.ptr, h0 + static_cast<size_t>(r0) * H, sizeof(float) * rows * H);
    for (int t = 0; t < d.t; ++t) {
      float* xh = xh_out ? xh_out + (static_cast<size_t>(t) * B + r0) * K : xh_rows.ptr;
      for (int r = 0; r < rows; ++r) {
        const int b = r0 + r;
        const size_t row = static_cast<size_t>(t) * B + b;
        const bool reset = resets && resets[row] != 0.0f;
        c_in[r] = reset ? rc_c + static_cast<size_t>(b) * H : c.ptr + r * H;
        const float* h_in = reset ? rc_h + static_cast<size_t>(b) * H : h.ptr + r * H;
        const float* m = rec ? rec + static_cast<size_t>(b) * H : ones.ptr;
        float* a = xh + static_cast<size_t>(r) * K;
        std::memcpy(a, xs + row * I, sizeof(float) * I);
        for (int j = 0; j < H; ++j) a[I + j] = h_in[j] * m[j];
        std::memcpy(z.ptr + static_cast<size_t>(r) * ld, bias, sizeof(float) * G);
      }
      gemm_acc(xh, K, rows, w, z.ptr, ld);
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

// [dW_ih; dW_hh] = [x, h']^T dZ over all T B rows (the rows the forward loop kept), one
// product split over the threads by 64-column panels of the result. Where 4H is a multiple
// of 64 each thread zeroes and writes its panels of dW_ih and dW_hh in place; else the
// product goes to a padded buffer, copied out after.
void weight_grads(Dims d, const float* rows, const float* dz, float* dw_ih, float* dw_hh,
                  int64_t threads) {
  const int G = 4 * d.h, K = d.i + d.h, M = d.t * d.b;
  const int panels = (G + kPanel - 1) / kPanel, ldc = panels * kPanel;
  if (ldc == G) {
    split_batch(panels, threads, [&](int p0, int p1) {
      const size_t c0 = static_cast<size_t>(p0) * kPanel;
      const size_t bytes = sizeof(float) * (p1 - p0) * kPanel;
      for (int r = 0; r < d.i; ++r) std::memset(dw_ih + r * static_cast<size_t>(G) + c0, 0, bytes);
      for (int r = 0; r < d.h; ++r) std::memset(dw_hh + r * static_cast<size_t>(G) + c0, 0, bytes);
      gemm_tn_panels(rows, K, K, dz, G, G, M, dw_ih, G, p0, p1, d.i, dw_hh);
    }, 2);  // two runs of panels per thread, claimed: see split_batch
    return;
  }
  Aligned dw(static_cast<size_t>(K) * ldc);
  split_batch(panels, threads, [&](int p0, int p1) {
    gemm_tn_panels(rows, K, K, dz, G, G, M, dw.ptr, ldc, p0, p1, K, nullptr);
  });
  for (int r = 0; r < K; ++r) {
    float* out = r < d.i ? dw_ih + static_cast<size_t>(r) * G
                         : dw_hh + static_cast<size_t>(r - d.i) * G;
    std::memcpy(out, dw.ptr + static_cast<size_t>(r) * ldc, sizeof(float) * G);
  }
}

// `dz` may be `acts` itself (XLA aliases them): each row's activations are copied to an L1
// row before its gradients overwrite them. Without `dxs` (null: the inputs are constants)
// the product is dz_t W_hh^T alone.
void lstm_backward(Dims d, const float* acts, const float* cs, const float* c_first,
                   const float* dhs, const float* rows, const float* mask, const float* resets,
                   const float* rc_c, const float* rec, const float* upd, const float* w_ih,
                   const float* w_hh, const float* dc_last, const float* dh_last, float* dz,
                   float* dxs, float* db, float* dw_ih, float* dw_hh, float* dc0, float* dh0,
                   float* d_rc_c, float* d_rc_h, int64_t threads) {
  const int H = d.h, G = 4 * H, B = d.b, I = dxs ? d.i : 0, N = H + I;
  // [W_hh^T | W_ih^T] [4H, H + I]: dh'' and dx_t from one product per step.
  Packed wt(G, N, [=](int kk, int col) {
    return col < H ? w_hh[static_cast<size_t>(col) * G + kk]
                   : w_ih[static_cast<size_t>(col - H) * G + kk];
  });
  const int ld = wt.padded();
  Aligned ones(H);
  std::fill(ones.ptr, ones.ptr + H, 1.0f);
  // Each slice's bias gradient goes to the row of db_parts where its rows start, and the
  // parts are summed in that order after the loop: added as the slices finished, with
  // three or more threads the sum's bits changed from run to run.
  Aligned db_parts(static_cast<size_t>(B) * G);
  std::vector<char> first_rows(B, 0);
  split_batch(B, threads, [&](int r0, int r1) {
    const int rows = r1 - r0;
    const size_t n = static_cast<size_t>(rows) * H;
    Aligned dc(n), dh(n), rc(n), rh(n), prod(static_cast<size_t>(rows) * ld);
    Aligned act_row(G), dcf_row(H);
    float* db_part = db_parts.ptr + static_cast<size_t>(r0) * G;
    first_rows[r0] = 1;
    std::memcpy(dc.ptr, dc_last + static_cast<size_t>(r0) * H, sizeof(float) * n);
    std::memcpy(dh.ptr, dh_last + static_cast<size_t>(r0) * H, sizeof(float) * n);
    for (int t = d.t - 1; t >= 0; --t) {
      for (int r = 0; r < rows; ++r) {
        const int b = r0 + r;
        const size_t row = static_cast<size_t>(t) * B + b;
        float* dzr = dz + row * G;
        if (mask && mask[row] == 0.0f) {  // padding: no gate gradient, the carry's passes
          std::memset(dzr, 0, sizeof(float) * G);
          continue;
        }
        const bool reset = resets && resets[row] != 0.0f;
        std::memcpy(act_row.ptr, acts + row * G, sizeof(float) * G);
        const float* c = cs + row * H;
        const float* c_prev =
            t > 0 ? cs + (row - B) * H : c_first + static_cast<size_t>(b) * H;
        const float* c_seen = reset ? rc_c + static_cast<size_t>(b) * H : c_prev;
        const float* dy = dhs + row * H;
        const float* u = upd ? upd + static_cast<size_t>(b) * H : ones.ptr;
        float* dci = dc.ptr + r * H;
        lstm_gate_grads(H, act_row.ptr, c, c_seen, dy, u, dh.ptr + r * H, dci, dcf_row.ptr,
                        dzr);
        // The bias gradient, in a loop of its own: summed inside the one above (db[j],
        // db[H + j], ... of one array) it kept GCC from vectorising that loop.
        add_to(G, dzr, db_part);
        if (reset) {  // the state this step saw was the reset carry
          float* ac = rc.ptr + r * H;
          for (int j = 0; j < H; ++j) ac[j] += dcf_row.ptr[j];
          std::memset(dci, 0, sizeof(float) * H);
        } else {
          std::memcpy(dci, dcf_row.ptr, sizeof(float) * H);
        }
      }
      std::memset(prod.ptr, 0, sizeof(float) * rows * ld);
      gemm_acc(dz + (static_cast<size_t>(t) * B + r0) * G, G, rows, wt, prod.ptr, ld);
      for (int r = 0; r < rows; ++r) {
        const int b = r0 + r;
        const size_t row = static_cast<size_t>(t) * B + b;
        const float* p = prod.ptr + static_cast<size_t>(r) * ld;
        if (dxs) std::memcpy(dxs + row * I, p + H, sizeof(float) * I);  // 0 at padding
        if (mask && mask[row] == 0.0f) continue;  // padding holds the carry gradients
        const bool reset = resets && resets[row] != 0.0f;
        const float* m = rec ? rec + static_cast<size_t>(b) * H : ones.ptr;
        float* dhr = dh.ptr + r * H;
        if (reset) {
          float* ah = rh.ptr + r * H;
          for (int j = 0; j < H; ++j) {
            ah[j] += p[j] * m[j];
            dhr[j] = 0.0f;
          }
        } else {
          for (int j = 0; j < H; ++j) dhr[j] = p[j] * m[j];
        }
      }
    }
    std::memcpy(dc0 + static_cast<size_t>(r0) * H, dc.ptr, sizeof(float) * n);
    std::memcpy(dh0 + static_cast<size_t>(r0) * H, dh.ptr, sizeof(float) * n);
    std::memcpy(d_rc_c + static_cast<size_t>(r0) * H, rc.ptr, sizeof(float) * n);
    std::memcpy(d_rc_h + static_cast<size_t>(r0) * H, rh.ptr, sizeof(float) * n);
  });
  std::fill(db, db + G, 0.0f);
  for (int b = 0; b < B; ++b) {
    if (first_rows[b]) add_to(G, db_parts.ptr + static_cast<size_t>(b) * G, db);
  }
  if (rows) weight_grads(d, rows, dz, dw_ih, dw_hh, threads);
}

using F32 = ffi::Buffer<ffi::F32>;
using Out = ffi::ResultBuffer<ffi::F32>;

ffi::Error check_rank3(const F32& a, const char* name) {
  if (a.dimensions().size() != 3)
    return ffi::Error::InvalidArgument(std::string(name) + " must be [T, B, features]");
  return ffi::Error::Success();
}

ffi::Error LstmForward(F32 xs, F32 w_ih, F32 w_hh, F32 bias, F32 c0, F32 h0, F32 mask,
                       F32 resets, F32 rc_c, F32 rc_h, F32 rec, F32 upd, Out acts, Out cs,
                       Out hs, Out xh, Out c_last, Out h_last, int64_t threads,
                        ffi::ThreadPool xla_pool) {
  XlaPool pool(xla_pool);
  UsePool guard(&pool);
  if (auto e = check_rank3(xs, "lstm forward: xs"); e.failure()) return e;
  auto dims = xs.dimensions();
  auto wd = w_hh.dimensions();
  if (wd.size() != 2 || wd[1] != 4 * wd[0])
    return ffi::Error::InvalidArgument("lstm forward: w_hh must be [H, 4H]");
  Dims d{static_cast<int>(dims[0]), static_cast<int>(dims[1]), static_cast<int>(wd[0]),
         static_cast<int>(dims[2])};
  const size_t G = 4 * static_cast<size_t>(d.h);
  if (w_ih.element_count() != d.i * G || bias.element_count() != G ||
      c0.element_count() != static_cast<size_t>(d.b) * d.h ||
      h0.element_count() != static_cast<size_t>(d.b) * d.h)
    return ffi::Error::InvalidArgument(
        "lstm forward: xs [T, B, I], w_ih [I, 4H], bias [4H], c0 and h0 [B, H]");
  if (d.b == 0) return ffi::Error::Success();
  if (d.t == 0) {  // no step: the carry passes through
    const size_t n = static_cast<size_t>(d.b) * d.h;
    std::memcpy(c_last->typed_data(), c0.typed_data(), sizeof(float) * n);
    std::memcpy(h_last->typed_data(), h0.typed_data(), sizeof(float) * n);
    return ffi::Error::Success();
  }
  for (auto* out : {&acts, &cs, &hs, &xh})
    advise_huge_pages((*out)->typed_data(), (*out)->size_bytes());
  lstm_forward(d, xs.typed_data(), w_ih.typed_data(), w_hh.typed_data(), bias.typed_data(),
               c0.typed_data(), h0.typed_data(), opt(mask.typed_data(), mask.element_count()),
               opt(resets.typed_data(), resets.element_count()), rc_c.typed_data(),
               rc_h.typed_data(), opt(rec.typed_data(), rec.element_count()),
               opt(upd.typed_data(), upd.element_count()),
               acts->element_count() ? acts->typed_data() : nullptr,
               cs->element_count() ? cs->typed_data() : nullptr, hs->typed_data(),
               xh->element_count() ? xh->typed_data() : nullptr, c_last->typed_data(),
               h_last->typed_data(), threads);
  return ffi::Error::Success();
}

ffi::Error LstmBackward(F32 acts, F32 cs, F32 c_first, F32 dhs, F32 rows, F32 mask,
                        F32 resets, F32 rc_c, F32 rec, F32 upd, F32 w_ih, F32 w_hh,
                        F32 dc_last, F32 dh_last, Out dz, Out dxs, Out db, Out dw_ih,
                        Out dw_hh, Out dc0, Out dh0, Out d_rc_c, Out d_rc_h, int64_t threads,
                        ffi::ThreadPool xla_pool) {
  XlaPool pool(xla_pool);
  UsePool guard(&pool);
  if (auto e = check_rank3(acts, "lstm backward: acts"); e.failure()) return e;
  auto dims = acts.dimensions();
  auto wd = w_ih.dimensions();
  if (dims[2] % 4 || wd.size() != 2 || wd[1] != dims[2])
    return ffi::Error::InvalidArgument("lstm backward: acts [T, B, 4H], w_ih [I, 4H]");
  Dims d{static_cast<int>(dims[0]), static_cast<int>(dims[1]), static_cast<int>(dims[2] / 4),
         static_cast<int>(wd[0])};
  const size_t G = 4 * static_cast<size_t>(d.h);
  const bool want_dx = dxs->element_count() != 0, want_dw = rows.element_count() != 0;
  const size_t steps_rows = static_cast<size_t>(d.t) * d.b;
  if (w_hh.element_count() != d.h * G || db->element_count() != G ||
      (want_dx && dxs->element_count() != steps_rows * d.i) ||
      (want_dw && (rows.element_count() != steps_rows * (d.i + d.h) ||
                   dw_ih->element_count() != d.i * G || dw_hh->element_count() != d.h * G)))
    return ffi::Error::InvalidArgument(
        "lstm backward: w_hh [H, 4H], db [4H], dx [T, B, I] or [0], rows [T, B, I + H] "
        "with dW_ih [I, 4H] and dW_hh [H, 4H], or [0], for acts [T, B, 4H]");
  if (d.b == 0) return ffi::Error::Success();
  if (d.t == 0) {  // no step: the carry gradients pass through
    std::fill(db->typed_data(), db->typed_data() + G, 0.0f);
    if (want_dw) {
      std::fill(dw_ih->typed_data(), dw_ih->typed_data() + d.i * G, 0.0f);
      std::fill(dw_hh->typed_data(), dw_hh->typed_data() + d.h * G, 0.0f);
    }
    const size_t n = static_cast<size_t>(d.b) * d.h;
    std::memcpy(dc0->typed_data(), dc_last.typed_data(), sizeof(float) * n);
    std::memcpy(dh0->typed_data(), dh_last.typed_data(), sizeof(float) * n);
    std::fill(d_rc_c->typed_data(), d_rc_c->typed_data() + n, 0.0f);
    std::fill(d_rc_h->typed_data(), d_rc_h->typed_data() + n, 0.0f);
    return ffi::Error::Success();
  }
  if (want_dx) advise_huge_pages(dxs->typed_data(), dxs->size_bytes());
  lstm_backward(d, acts.typed_data(), cs.typed_data(), c_first.typed_data(), dhs.typed_data(),
                want_dw ? rows.typed_data() : nullptr,
                opt(mask.typed_data(), mask.element_count()),
                opt(resets.typed_data(), resets.element_count()), rc_c.typed_data(),
                opt(rec.typed_data(), rec.element_count()),
                opt(upd.typed_data(), upd.element_count()), w_ih.typed_data(),
                w_hh.typed_data(), dc_last.typed_data(), dh_last.typed_data(),
                dz->typed_data(), want_dx ? dxs->typed_data() : nullptr, db->typed_data(),
                want_dw ? dw_ih->typed_data() : nullptr,
                want_dw ? dw_hh->typed_data() : nullptr, dc0->typed_data(),
                dh0->typed_data(), d_rc_c->typed_data(), d_rc_h->typed_data(), threads);
  return ffi::Error::Success();
}

}  // namespace
}  // namespace rnnlab

// The calling convention rnnlab/fused/kernel.py expects (kernel.ABI): 3 since the LSTM
// loops take the inputs and both weight matrices (the input projection and the input
// gradient are in the loops), keep the rows [x_t, h'] and return dx and db. A library
// without this symbol, or with another number, is reported out of date and not used.
extern "C" int RnnlabKernelsAbi() { return 3; }

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnlabLstmForward, rnnlab::LstmForward,
                              ffi::Ffi::Bind()
                                  .Arg<rnnlab::F32>()  // xs [T, B, I]
                                  .Arg<rnnlab::F32>()  // w_ih [I, 4H]
                                  .Arg<rnnlab::F32>()  // w_hh [H, 4H]
                                  .Arg<rnnlab::F32>()  // bias [4H]
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
                                  .Ret<rnnlab::F32>()  // rows [x_t, h'] [T, B, I + H] or [0]
                                  .Ret<rnnlab::F32>()  // c_T
                                  .Ret<rnnlab::F32>()  // h_T
                                  .Attr<int64_t>("threads")
                                  .Ctx<ffi::ThreadPool>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnlabLstmBackward, rnnlab::LstmBackward,
                              ffi::Ffi::Bind()
                                  .Arg<rnnlab::F32>()  // gate activations [T, B, 4H]
                                  .Arg<rnnlab::F32>()  // cs [T, B, H]
                                  .Arg<rnnlab::F32>()  // c before step 0 [B, H]
                                  .Arg<rnnlab::F32>()  // output gradients [T, B, H]
                                  .Arg<rnnlab::F32>()  // rows [x_t, h'] [T, B, I + H] or [0]
                                  .Arg<rnnlab::F32>()  // mask [T, B] or [0]
                                  .Arg<rnnlab::F32>()  // resets [T, B] or [0]
                                  .Arg<rnnlab::F32>()  // reset carry c [B, H]
                                  .Arg<rnnlab::F32>()  // recurrent mask [B, H] or [0]
                                  .Arg<rnnlab::F32>()  // update mask [B, H] or [0]
                                  .Arg<rnnlab::F32>()  // w_ih [I, 4H]
                                  .Arg<rnnlab::F32>()  // w_hh [H, 4H]
                                  .Arg<rnnlab::F32>()  // dc_T
                                  .Arg<rnnlab::F32>()  // dh_T
                                  .Ret<rnnlab::F32>()  // dz [T, B, 4H] (aliases acts)
                                  .Ret<rnnlab::F32>()  // dx [T, B, I] or [0] (not wanted)
                                  .Ret<rnnlab::F32>()  // db [4H]
                                  .Ret<rnnlab::F32>()  // dW_ih [I, 4H] or [0] (no rows)
                                  .Ret<rnnlab::F32>()  // dW_hh [H, 4H] or [0] (no rows)
                                  .Ret<rnnlab::F32>()  // dc0
                                  .Ret<rnnlab::F32>()  // dh0
                                  .Ret<rnnlab::F32>()  // reset carry gradient c
                                  .Ret<rnnlab::F32>()  // reset carry gradient h
                                  .Attr<int64_t>("threads")
                                  .Ctx<ffi::ThreadPool>());
