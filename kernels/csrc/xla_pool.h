// XLA's intra-op thread pool as the kernels' Scheduler (tiles.h): each handler binds
// ffi::ThreadPool and runs its loops inside `UsePool guard(&pool)`.
#pragma once

#include <cstdlib>
#include <functional>
#include <utility>

#include "tiles.h"
#include "xla/ffi/api/ffi.h"

namespace rnnlab {

class XlaPool : public Scheduler {
 public:
  explicit XlaPool(xla::ffi::ThreadPool pool) : pool_(std::move(pool)) {}
  void schedule(std::function<void()> task) const override { pool_.Schedule(std::move(task)); }
  // Asked once per call. Opt-in (RNNLAB_KERNEL_POOL=1): on the quiet benchmark the pool
  // won, but in a process with several CPU devices and under load the kernel tests and
  // the multi-process runs took up to 2.5x longer on it (decision 136), so threads are
  // started per call unless asked.
  int64_t threads() const override {
    static const bool on = [] {
      const char* v = std::getenv("RNNLAB_KERNEL_POOL");
      return v && v[0] == '1';
    }();
    if (threads_ < 0) threads_ = on ? pool_.num_threads() : 0;
    return threads_;
  }

 private:
  mutable xla::ffi::ThreadPool pool_;
  mutable int64_t threads_ = -1;
};

}  // namespace rnnlab
