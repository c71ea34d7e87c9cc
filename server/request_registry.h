// Live Generate requests by request_id, for Abort and for unique ids. A request leaves at its
// terminal event (finished or failed), even while the client has not yet read its last messages.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>

#include "server/generation.h"

namespace slim::server {

class RequestRegistry {
 public:
  // Server-assigned ids start with this; client-chosen ids may not (ValidateRequestId).
  static constexpr std::string_view kIdPrefix = "req-";
  // A fresh server-assigned id: kIdPrefix + 128 random bits in hex, so it can be neither
  // guessed (to Abort someone else's request) nor taken first by a client.
  std::string NewId() {
    uint64_t hi, lo;
    {
      std::lock_guard<std::mutex> l(rng_mu_);
      hi = (uint64_t{rng_()} << 32) | rng_();
      lo = (uint64_t{rng_()} << 32) | rng_();
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id(kIdPrefix);
    for (uint64_t w : {hi, lo}) {
      for (int shift = 60; shift >= 0; shift -= 4) id += kHex[(w >> shift) & 0xF];
    }
    return id;
  }
  // False when `id` is already live.
  bool Add(const std::string& id, const std::shared_ptr<GenerationTask>& task) {
    std::lock_guard<std::mutex> l(mu_);
    return live_.emplace(id, task).second;
  }
  // Removes `id` when it is still `task`'s (a later request may have reused the id since `task`
  // ended); calling it again is harmless.
  void Remove(const std::string& id, const GenerationTask* task) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = live_.find(id);
    if (it == live_.end()) return;
    const std::shared_ptr<GenerationTask> owner = it->second.lock();
    if (owner == nullptr || owner.get() == task) live_.erase(it);
  }
  std::shared_ptr<GenerationTask> Find(const std::string& id) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = live_.find(id);
    return it == live_.end() ? nullptr : it->second.lock();
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::weak_ptr<GenerationTask>> live_;
  // Straight from the OS entropy source (getrandom / urandom): a seeded PRNG such as mt19937
  // would let a client that sees enough of its own ids predict everyone else's.
  std::mutex rng_mu_;
  std::random_device rng_;
};

}  // namespace slim::server
