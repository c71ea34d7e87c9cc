// Live Generate requests by request_id, for Abort and for unique ids.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "server/generation.h"

namespace slim::server {

class RequestRegistry {
 public:
  // A fresh server-assigned id ("req-<n>").
  std::string NewId() { return "req-" + std::to_string(++next_); }
  // False when `id` is already live.
  bool Add(const std::string& id, const std::shared_ptr<GenerationTask>& task) {
    std::lock_guard<std::mutex> l(mu_);
    return live_.emplace(id, task).second;
  }
  void Remove(const std::string& id) {
    std::lock_guard<std::mutex> l(mu_);
    live_.erase(id);
  }
  std::shared_ptr<GenerationTask> Find(const std::string& id) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = live_.find(id);
    return it == live_.end() ? nullptr : it->second.lock();
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::weak_ptr<GenerationTask>> live_;
  std::atomic<uint64_t> next_{0};
};

}  // namespace slim::server
