// WriteWatchdog: one thread that tells a stream when its write in flight has passed its
// deadline, so a Generate stream whose client stopped reading (HTTP/2 flow control holds the
// write forever) can be cancelled instead of holding its memory and, mid-generation, its KV.
// gRPC's callback API has no write timeout of its own.
// Thread-safety: Arm and Disarm may be called from any thread, but not with a lock that the
// stream's OnWriteTimeout takes (Disarm waits for a call in progress).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace slim::server {

class WriteWatchdog {
 public:
  class Stream {
   public:
    virtual ~Stream() = default;
    // Called on the watchdog thread once the deadline passed to Arm is reached (the stream
    // checks whether the write it armed for is still in flight).
    virtual void OnWriteTimeout() = 0;
  };

  WriteWatchdog();
  ~WriteWatchdog();  // stops the thread; every stream must be disarmed by then
  WriteWatchdog(const WriteWatchdog&) = delete;
  WriteWatchdog& operator=(const WriteWatchdog&) = delete;

  // Sets (or moves) the stream's one deadline.
  void Arm(Stream* s, std::chrono::steady_clock::time_point deadline);
  // Forgets the stream; if its OnWriteTimeout is running on the watchdog thread, waits for it to
  // return (unless called from inside it), so the stream may be destroyed afterwards.
  void Disarm(Stream* s);

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<Stream*, std::chrono::steady_clock::time_point> deadlines_;
  Stream* firing_ = nullptr;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace slim::server
