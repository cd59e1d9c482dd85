// Shared pieces of the recurrence kernels: the packed matrix, the register-tiled product,
// the gate nonlinearities and the split of the batch over threads.
//
// The per-step product of a recurrence is small (B x H by H x G H), so a general GEMM
// library spends much of it in set-up and threading. Here the right-hand matrix (W_hh or
// its transpose) is packed once per call into panels of 64 columns, each panel a
// contiguous [K][64] block that stays in the core's L2 across all time steps, and each
// thread owns a fixed slice of the batch for the whole sequence: the threads never meet
// inside the time loop.
#pragma once

#include <sched.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace rnnlab {

// 16 floats: one AVX-512 register, two AVX2 registers where that is all there is.
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

constexpr int kPanel = 64;  // columns per packed panel (4 vectors)
constexpr int kTileRows = 6;  // rows per register tile: 6 x 4 accumulators

inline int round_up(int n, int m) { return (n + m - 1) / m * m; }

// A 64-byte aligned float buffer (zero-filled).
struct Aligned {
  float* ptr = nullptr;
  explicit Aligned(size_t count) {
    size_t bytes = round_up(static_cast<int>(std::max<size_t>(count, 1) * 4), 64);
    ptr = static_cast<float*>(std::aligned_alloc(64, bytes));
    std::memset(ptr, 0, bytes);
  }
  ~Aligned() { std::free(ptr); }
  Aligned(const Aligned&) = delete;
  Aligned& operator=(const Aligned&) = delete;
};

// M [K, N] as ceil(N / 64) panels of [K][64], the columns past N zero.
struct Packed {
  int k, n, panels;
  Aligned data;
  // transpose=false: src is M itself, [K][N] row-major.
  // transpose=true: src is M^T, [N][K] row-major (W_hh [H, G H] packed as W_hh^T).
  Packed(const float* src, int k_, int n_, bool transpose)
      : Packed(k_, n_, [=](int kk, int col) {
          return transpose ? src[static_cast<size_t>(col) * k_ + kk]
                           : src[static_cast<size_t>(kk) * n_ + col];
        }) {}
  // M[kk, col] = at(kk, col): a matrix stacked from several (the LSTM's [W_ih; W_hh]).
  template <typename At>
  Packed(int k_, int n_, At at)
      : k(k_), n(n_), panels((n_ + kPanel - 1) / kPanel),
        data(static_cast<size_t>(panels) * k_ * kPanel) {
    for (int p = 0; p < panels; ++p) {
      float* dst = data.ptr + static_cast<size_t>(p) * k * kPanel;
      for (int kk = 0; kk < k; ++kk) {
        for (int j = 0; j < kPanel; ++j) {
          int col = p * kPanel + j;
          dst[kk * kPanel + j] = col < n ? at(kk, col) : 0.0f;
        }
      }
    }
  }
  int padded() const { return panels * kPanel; }
};

// C[r, :] += A[r, :] P for `Rows` rows: 6 x 4 vector accumulators held in registers.
template <int Rows>
inline void tile(const float* a, int lda, const float* panel, int k, float* c, int ldc) {
  v16 acc[Rows][4];
  for (int r = 0; r < Rows; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = v16{};
  for (int kk = 0; kk < k; ++kk) {
    const v16* w = reinterpret_cast<const v16*>(panel + static_cast<size_t>(kk) * kPanel);
    v16 w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
    for (int r = 0; r < Rows; ++r) {
      float s = a[static_cast<size_t>(r) * lda + kk];
      acc[r][0] += s * w0;
      acc[r][1] += s * w1;
      acc[r][2] += s * w2;
      acc[r][3] += s * w3;
    }
  }
  for (int r = 0; r < Rows; ++r) {
    v16u* out = reinterpret_cast<v16u*>(c + static_cast<size_t>(r) * ldc);
    for (int j = 0; j < 4; ++j) out[j] += acc[r][j];
  }
}

// Calls fn(std::integral_constant<int, R>{}, r) for the row tiles [r, r + R) that cover
// [0, rows): tiles of kTileRows rows, then one of the rest (R a constant: register tiles).
template <typename Fn>
inline void row_tiles(int rows, Fn fn) {
  int r = 0;
  for (; r + kTileRows <= rows; r += kTileRows) fn(std::integral_constant<int, kTileRows>{}, r);
  switch (rows - r) {
    case 5: fn(std::integral_constant<int, 5>{}, r); break;
    case 4: fn(std::integral_constant<int, 4>{}, r); break;
    case 3: fn(std::integral_constant<int, 3>{}, r); break;
    case 2: fn(std::integral_constant<int, 2>{}, r); break;
    case 1: fn(std::integral_constant<int, 1>{}, r); break;
    default: break;
  }
}

// C [rows, >= M.padded()] += A [rows, K] M: panel by panel, so that one panel serves every
// row tile while it is in cache.
inline void gemm_acc(const float* a, int lda, int rows, const Packed& m, float* c, int ldc) {
  for (int p = 0; p < m.panels; ++p) {
    const float* panel = m.data.ptr + static_cast<size_t>(p) * m.k * kPanel;
    float* cp = c + p * kPanel;
    row_tiles(rows, [&](auto n, int r) {
      tile<decltype(n)::value>(a + static_cast<size_t>(r) * lda, lda, panel, m.k,
                               cp + static_cast<size_t>(r) * ldc, ldc);
    });
  }
}

// C[r, 0:64] += sum_m A[m, r] B[m, 0:64] for `Rows` rows r: the tile of a product A^T B
// over many rows m (a weight gradient), A and B read in place (row strides lda, ldb).
template <int Rows>
inline void tile_tn(const float* a, int lda, const float* b, int ldb, int m, float* c, int ldc) {
  v16 acc[Rows][4];
  for (int r = 0; r < Rows; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = v16{};
  for (int kk = 0; kk < m; ++kk) {
    const v16u* w = reinterpret_cast<const v16u*>(b + static_cast<size_t>(kk) * ldb);
    v16 w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
    const float* ar = a + static_cast<size_t>(kk) * lda;
    for (int r = 0; r < Rows; ++r) {
      float s = ar[r];
      acc[r][0] += s * w0;
      acc[r][1] += s * w1;
      acc[r][2] += s * w2;
      acc[r][3] += s * w3;
    }
  }
  for (int r = 0; r < Rows; ++r) {
    v16u* out = reinterpret_cast<v16u*>(c + static_cast<size_t>(r) * ldc);
    for (int j = 0; j < 4; ++j) out[j] += acc[r][j];
  }
}

// C [k, >= 64 ceil(n / 64)] += A^T B for A [m, lda] (its first k columns) and B [m, ldb]
// (its first n columns), on the 64-column panels [p0, p1) of C. C's rows [0, split) are
// `c`, its rows [split, k) `c2` (two result arrays, the LSTM's dW_ih and dW_hh, written in
// place; c2 may be c + split * ldc for one array). The rows m are taken in blocks, and both
// operands of a block are copied before the tiles read them:
//  - each tile's R columns of A to [mb][R] contiguous (`a_tiles`), one short sequential
//    stream instead of one cache line per row m at a stride of lda floats;
//  - the block of the panel's B columns to [mb][64] (`b_block`, zero-padded past n): read
//    in place its rows lie ldb floats apart (8 KiB in LSTM B), one 4 KiB page each and
//    all in a few cache sets, which the K / R tiles then read in turn; copied, the block
//    is one sequential stream.
// Together 1.7x faster at LSTM B (docs/performance.md, "The weight gradient's blocks").
inline void gemm_tn_panels(const float* a, int lda, int k, const float* b, int ldb, int n, int m,
                           float* c, int ldc, int p0, int p1, int split, float* c2) {
  const int kBlock = std::min(512, m);
  Aligned b_block(static_cast<size_t>(kBlock) * kPanel);
  Aligned a_tiles(static_cast<size_t>(kBlock) * k);
  // Calls fn(R, part, row, r) for the row tiles of both parts, so that no tile straddles
  // the two arrays: R the tile's rows (a std::integral_constant), `row` its first row of A's
  // columns and of C, `r` that row within its part's array (`c` or `c2`).
  auto tiles = [k, split](auto fn) {
    for (int part = 0; part < 2; ++part) {
      const int r0 = part ? split : 0, rows = part ? k - split : split;
      row_tiles(rows, [&](auto n, int r) { fn(n, part, r0 + r, r); });
    }
  };
  for (int m0 = 0; m0 < m; m0 += kBlock) {
    const int mb = std::min(kBlock, m - m0);
    const float* ab = a + static_cast<size_t>(m0) * lda;
    tiles([&](auto n, int, int row, int) {
      constexpr int R = decltype(n)::value;
      float* dst = a_tiles.ptr + static_cast<size_t>(row) * mb;
      for (int i = 0; i < mb; ++i)
        for (int q = 0; q < R; ++q) dst[i * R + q] = ab[static_cast<size_t>(i) * lda + row + q];
    });
    for (int p = p0; p < p1; ++p) {
      const int cols = std::min(kPanel, n - p * kPanel);
      const float* bp = b + static_cast<size_t>(m0) * ldb + p * kPanel;
      for (int i = 0; i < mb; ++i) {
        float* dst = b_block.ptr + static_cast<size_t>(i) * kPanel;
        std::memcpy(dst, bp + static_cast<size_t>(i) * ldb, sizeof(float) * cols);
        std::memset(dst + cols, 0, sizeof(float) * (kPanel - cols));
      }
      tiles([&](auto n, int part, int row, int r) {
        constexpr int R = decltype(n)::value;
        float* cp = (part ? c2 : c) + p * kPanel + static_cast<size_t>(r) * ldc;
        tile_tn<R>(a_tiles.ptr + static_cast<size_t>(row) * mb, R, b_block.ptr, kPanel, mb,
                   cp, ldc);
      });
    }
  }
}

// tanh by the rational approximation XLA and Eigen use for float32 (a few ulp), written
// branch-free so that the compiler vectorises the loops around it.
inline float tanh_approx(float x) {
  const float bound = 7.90531110763549805f;
  float xc = std::min(bound, std::max(-bound, x));
  float x2 = xc * xc;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * xc;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  float t = p / q;
  return (x < 0.0004f && x > -0.0004f) ? x : t;
}

inline float sigmoid_approx(float x) { return 0.5f * tanh_approx(0.5f * x) + 0.5f; }

// Threads for `batch` rows: the cores this process may run on, at most one per row, or
// `requested` when positive.
inline int thread_count(int batch, int64_t requested) {
  int cores = 1;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cores = std::max(1, CPU_COUNT(&set));
  int n = requested > 0 ? static_cast<int>(requested) : cores;
  return std::max(1, std::min(n, batch));
}

// Where a call's slices other than the caller's run: XLA's intra-op thread pool when the
// kernel is called from an XLA computation (kernel/lstm.cc, gru.cc set it around each call
// with UsePool), else threads started for the call (kernels/bench/loops.cc).
struct Scheduler {
  virtual ~Scheduler() = default;
  virtual void schedule(std::function<void()> task) const = 0;
  virtual int64_t threads() const = 0;  // 0: no pool
};

inline thread_local const Scheduler* current_pool = nullptr;

// Makes `pool` the scheduler of split_batch on this thread for the guard's lifetime.
struct UsePool {
  const Scheduler* prev;
  explicit UsePool(const Scheduler* pool) : prev(current_pool) { current_pool = pool; }
  ~UsePool() { current_pool = prev; }
  UsePool(const UsePool&) = delete;
  UsePool& operator=(const UsePool&) = delete;
};

// Runs fn(row_begin, row_end) for contiguous slices of [0, batch), one per thread.
//
// With XLA's pool the slices are claimed, not assigned: the caller schedules one task per
// other thread and then claims slices itself until none is left, and waits only for slices
// another thread has claimed (and so is running). A task that starts late, or never while
// the pool's threads run other work (two kernel calls XLA runs concurrently, each waiting
// on the other's pool thread), costs parallelism but cannot deadlock, and a task that
// starts after the call returned finds no slice and touches nothing but the shared counter.
// The pool's threads are XLA's own: no thread is started per call, and none is added
// beside XLA's workers to compete with them for the cores (docs/performance.md, "The
// training step of A, part by part").
//
// `per_thread` > 1 (with the pool) cuts [0, batch) into that many slices per thread, for
// work whose slices are independent (the LSTM's weight-gradient panels): a thread that the
// OS holds back then leaves its unclaimed slices to the other instead of delaying the call.
template <typename Fn>
void split_batch(int batch, int64_t requested, Fn fn, int per_thread = 1) {
  const int threads = thread_count(batch, requested);
  const Scheduler* pool = current_pool;
  const bool use_pool = threads > 1 && pool && pool->threads() > 0;
  const int n = use_pool ? std::min(batch, threads * std::max(1, per_thread)) : threads;
  auto slice = [batch, n](int i, int* begin, int* end) {
    *begin = static_cast<int>(static_cast<int64_t>(batch) * i / n);
    *end = static_cast<int>(static_cast<int64_t>(batch) * (i + 1) / n);
  };
  if (n == 1) {
    fn(0, batch);
    return;
  }
  if (use_pool) {
    struct Claims {
      std::atomic<int> next{0};
      int done = 0;
      std::mutex m;
      std::condition_variable cv;
    };
    auto claims = std::make_shared<Claims>();
    // Runs unclaimed slices; returns how many this thread ran.
    auto run = [&fn, &slice, n](Claims& c) {
      int ran = 0;
      for (int i; (i = c.next.fetch_add(1)) < n; ++ran) {
        int begin, end;
        slice(i, &begin, &end);
        fn(begin, end);
      }
      return ran;
    };
    auto finish = [n](Claims& c, int ran) {
      std::lock_guard<std::mutex> lock(c.m);
      c.done += ran;
      if (c.done == n) c.cv.notify_all();
    };
    for (int i = 1; i < threads; ++i) {
      pool->schedule([claims, run, finish] {
        int ran = run(*claims);
        if (ran) finish(*claims, ran);
      });
    }
    finish(*claims, run(*claims));
    std::unique_lock<std::mutex> lock(claims->m);
    claims->cv.wait(lock, [&] { return claims->done == n; });
    return;
  }
  std::vector<std::thread> workers;
  for (int i = 1; i < n; ++i) {
    int begin, end;
    slice(i, &begin, &end);
    workers.emplace_back(fn, begin, end);
  }
  int begin0, end0;
  slice(0, &begin0, &end0);
  fn(begin0, end0);
  for (auto& w : workers) w.join();
}

// Asks the OS to back the 2 MiB-aligned part of a large result buffer with huge pages.
// XLA:CPU allocates each execution's buffers afresh; with glibc's default allocator
// policy a large allocation is a fresh mapping whose 4 KiB pages fault in one by one at
// their first write, which the loops make (about 0.4 ms per MiB on the development
// machine under load). A huge page faults in once per 2 MiB. Only a hint: where
// transparent huge pages are off, or the pages are already there, nothing changes.
// RNNLAB_KERNEL_HUGEPAGES=0 turns it off.
inline void advise_huge_pages(void* p, size_t bytes) {
  static const bool on = [] {
    const char* v = std::getenv("RNNLAB_KERNEL_HUGEPAGES");
    return !(v && v[0] == '0');
  }();
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (!on || bytes < 2 * kHuge) return;
  uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

// An optional per-row array: empty (size 0) means absent.
inline const float* opt(const float* p, size_t count) { return count ? p : nullptr; }

}  // namespace rnnlab
