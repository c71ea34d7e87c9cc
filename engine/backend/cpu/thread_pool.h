// A fixed pool of worker threads for the CPU backend's data-parallel loops (ParallelFor).
// Workers spin briefly after each job before sleeping, so the many short loops of a decode
// step do not pay a futex wake-up each; during long OpenBLAS calls they sleep.
// Thread-safety: ParallelFor is called from one thread at a time (the engine thread).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace slim::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // Splits [0, n) into contiguous ranges and runs fn(begin, end) on them in parallel; the
  // caller's thread takes one range. Returns when all are done. Ranges hold >= min_chunk items.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);

 private:
  void Worker(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  std::vector<std::pair<int64_t, int64_t>> ranges_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace slim::cpu
