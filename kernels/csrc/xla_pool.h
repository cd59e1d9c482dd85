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
  // Asked once per call. On by default: a training process runs its slices on XLA's
  // pool (decision 145); RNNLAB_KERNEL_POOL=0 starts threads per call instead, which
  // `make test` sets, because with eight CPU devices per process and three test workers
  // on two cores the kernel tests waited on XLA's busy pool (decision 139).
  int64_t threads() const override {
    static const bool on = [] {
      const char* v = std::getenv("RNNLAB_KERNEL_POOL");
      return !(v && v[0] == '0');
    }();
    if (threads_ < 0) threads_ = on ? pool_.num_threads() : 0;
    return threads_;
  }

 private:
  mutable xla::ffi::ThreadPool pool_;
  mutable int64_t threads_ = -1;
};

}  // namespace rnnlab
