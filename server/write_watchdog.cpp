// The write deadline thread.
#include "server/write_watchdog.h"

#include <algorithm>

namespace slim::server {

WriteWatchdog::WriteWatchdog() : thread_([this] { Run(); }) {}

WriteWatchdog::~WriteWatchdog() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void WriteWatchdog::Arm(Stream* s, std::chrono::steady_clock::time_point deadline) {
  {
    std::lock_guard<std::mutex> l(mu_);
    deadlines_[s] = deadline;
  }
  cv_.notify_all();  // the thread recomputes its wake-up time
}

void WriteWatchdog::Disarm(Stream* s) {
  std::unique_lock<std::mutex> l(mu_);
  deadlines_.erase(s);
  if (std::this_thread::get_id() == thread_.get_id()) return;
  cv_.wait(l, [&] { return firing_ != s; });
}

void WriteWatchdog::Run() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    // One due stream per pass: a stream disarmed while another one's call ran is never touched.
    const auto now = std::chrono::steady_clock::now();
    auto next = std::chrono::steady_clock::time_point::max();
    Stream* due = nullptr;
    for (const auto& [s, deadline] : deadlines_) {
      if (deadline <= now) {
        due = s;
        break;
      }
      next = std::min(next, deadline);
    }
    if (due == nullptr) {
      if (next == std::chrono::steady_clock::time_point::max()) cv_.wait(l);
      else cv_.wait_until(l, next);
      continue;
    }
    deadlines_.erase(due);
    firing_ = due;
    l.unlock();
    due->OnWriteTimeout();
    l.lock();
    firing_ = nullptr;
    cv_.notify_all();
  }
}

}  // namespace slim::server
