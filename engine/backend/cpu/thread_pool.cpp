// ThreadPool: a generation counter announces each job; workers spin on it for a short while,
// then sleep on a condition variable. The caller spins on the pending count.
#include "engine/backend/cpu/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SLIM_PAUSE() _mm_pause()
#else
#define SLIM_PAUSE() std::this_thread::yield()
#endif

namespace slim::cpu {
namespace {
// How long an idle worker keeps spinning before it sleeps.
constexpr std::chrono::microseconds kSpin(100);
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  ranges_.assign(static_cast<size_t>(n_threads_), {0, 0});
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { Worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::Worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin for a new generation, then sleep.
    const auto spin_until = std::chrono::steady_clock::now() + kSpin;
    int polls = 0;
    while (generation_.load(std::memory_order_acquire) == seen && !stop_.load(std::memory_order_relaxed)) {
      SLIM_PAUSE();
      if (++polls % 64 == 0 && std::chrono::steady_clock::now() > spin_until) {
        std::unique_lock<std::mutex> lock(mu_);
        start_cv_.wait(lock, [&] { return stop_.load() || generation_.load(std::memory_order_acquire) != seen; });
        break;
      }
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    const auto range = ranges_[static_cast<size_t>(index)];
    if (range.first < range.second) (*job_)(range.first, range.second);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                             int64_t min_chunk) {
  if (n <= 0) return;
  const int64_t max_parts = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
  const int parts = static_cast<int>(std::min<int64_t>(n_threads_, max_parts));
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  for (int i = 0; i < n_threads_; ++i) {
    ranges_[static_cast<size_t>(i)] = i < parts ? std::make_pair(n * i / parts, n * (i + 1) / parts)
                                                : std::make_pair(int64_t{0}, int64_t{0});
  }
  job_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    // Publishing under the mutex orders it with a worker that is about to sleep.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  start_cv_.notify_all();
  fn(ranges_[0].first, ranges_[0].second);
  while (pending_.load(std::memory_order_acquire) != 0) SLIM_PAUSE();
}

}  // namespace slim::cpu
