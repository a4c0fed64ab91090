// The helper threads of helping_for (helping_for.h).
#include "helping_for.h"

#include <ATen/Parallel.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace hebbkern {
namespace cpu {

namespace {

// The CPU the calling thread runs on, or -1 where that cannot be asked.
int current_cpu() {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

struct Job {
  const std::function<void(int64_t)>* f;
  int64_t n;
  int64_t max_helpers;
  int caller_cpu;  // where the caller posted the job (-1: unknown)
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> joined{0};
  std::atomic<bool> shared_cpu{false};  // a helper woke on caller_cpu and left the job alone
};

class Helpers {
 public:
  // One caller at a time; another caller runs its chunks alone.
  std::mutex owner;

  void run(int64_t n, int64_t threads, const std::function<void(int64_t)>& f) {
    grow(threads - 1);
    Job job;
    job.f = &f;
    job.n = n;
    job.max_helpers = threads - 1;
    job.caller_cpu = current_cpu();
    job_.store(&job, std::memory_order_seq_cst);
    {
      std::lock_guard<std::mutex> lock(m_);
      ++generation_;
    }
    cv_.notify_all();
    work(job);
    // Retract the job, then wait for the helpers that saw it (seq_cst on both sides: a helper that
    // registers after this load reads nullptr, or a later job, never this one).
    job_.store(nullptr, std::memory_order_seq_cst);
    bool waited_long = false;
    if (inside_.load(std::memory_order_seq_cst) != 0) {
      const auto t0 = std::chrono::steady_clock::now();
      while (inside_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
      waited_long = std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(kLongWaitUs);
    }
    // A helper that held a chunk this long was descheduled in it, and a helper that woke on the
    // caller's own CPU could only have taken turns with it: either way the other core is busy
    // with other work. Run the next calls alone, doubling the pause at each such call (back to the
    // shortest after a call without either). (shared_cpu is read after inside_ fell to 0, which
    // the helper's decrement orders after its store.)
    if (waited_long || job.shared_cpu.load(std::memory_order_relaxed)) {
      pause_ = std::min<int64_t>(std::max<int64_t>(2 * pause_, kFirstPause), kMaxPause);
      skip_ = pause_;
    } else {
      pause_ = 0;
    }
  }

  // Calls to run alone after a long wait (see run); only the owner reads and writes it.
  bool skip() {
    if (skip_ == 0) return false;
    --skip_;
    return true;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;  // guarded by m_
  std::atomic<Job*> job_{nullptr};
  std::atomic<int64_t> inside_{0};
  std::vector<std::thread> threads_;
  static constexpr int64_t kLongWaitUs = 500, kFirstPause = 16, kMaxPause = 4096;
  int64_t pause_ = 0, skip_ = 0;  // guarded by owner

  static void work(Job& job) {
    for (int64_t c; (c = job.next.fetch_add(1, std::memory_order_relaxed)) < job.n;) (*job.f)(c);
  }

  void grow(int64_t want) {
    while (static_cast<int64_t>(threads_.size()) < want) {
      threads_.emplace_back([this] { loop(); });
      threads_.back().detach();  // never joined: the helpers live as long as the process
    }
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
      }
      inside_.fetch_add(1, std::memory_order_seq_cst);
      Job* job = job_.load(std::memory_order_seq_cst);
      if (job && job->joined.fetch_add(1, std::memory_order_relaxed) < job->max_helpers) {
        // Woken on the caller's CPU (the scheduler found no idle one): working here would only
        // take turns with the caller, each switch costing both. Leave the chunks to it.
        if (job->caller_cpu >= 0 && current_cpu() == job->caller_cpu)
          job->shared_cpu.store(true, std::memory_order_relaxed);
        else
          work(*job);
      }
      // release: the chunks this helper wrote are visible to the caller once it reads 0.
      inside_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }
};

// Leaked on purpose (detached threads may still use it at exit); a forked child starts afresh,
// since the parent's helper threads do not exist in it.
std::atomic<Helpers*> g_helpers{nullptr};
std::once_flag g_atfork;

Helpers* helpers() {
  std::call_once(g_atfork,
                 [] { pthread_atfork(nullptr, nullptr, [] { g_helpers.store(nullptr); }); });
  Helpers* h = g_helpers.load(std::memory_order_acquire);
  if (h) return h;
  auto* fresh = new Helpers();
  if (g_helpers.compare_exchange_strong(h, fresh)) return fresh;
  delete fresh;
  return h;
}

}  // namespace

void helping_for(int64_t n, const std::function<void(int64_t)>& f) {
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), n);
  if (threads <= 1 || at::in_parallel_region()) {
    for (int64_t c = 0; c < n; ++c) f(c);
    return;
  }
  Helpers* h = helpers();
  std::unique_lock<std::mutex> lock(h->owner, std::try_to_lock);
  if (!lock.owns_lock()) {
    for (int64_t c = 0; c < n; ++c) f(c);
    return;
  }
  if (h->skip()) {
    for (int64_t c = 0; c < n; ++c) f(c);
    return;
  }
  h->run(n, threads, f);
}

}  // namespace cpu
}  // namespace hebbkern
