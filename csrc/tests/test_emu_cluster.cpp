// Unit tests of the emulated cluster (csrc/include/hebbkern/simt.h, EmuCluster), run by ctest: the
// exchange the kernels' emulation tests rely on, in both of its modes. With distributed shared
// memory, a write through map() lands in the other block's buffer. With mailboxes (the emulation of
// CudaGridCluster, blocks synchronised through global memory), it lands in the other block's
// mailbox and reaches that block's window only at the next barrier, a write outside the window is
// reported, and the barrier's copy overwrites whatever the block wrote into its own window directly
// (the contract: the window is written only through map()).
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "hebbkern/simt.h"

using hebbkern::simt::EmuBarrier;
using hebbkern::simt::EmuCluster;

namespace {

int passed = 0, failed = 0;

void check(bool ok, const char* what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAIL %s\n", what);
  }
}

constexpr int kBlocks = 3;
constexpr int kElems = 16;  // shared memory per block, floats
constexpr int kLo = 4;      // the window: elements [kLo, kHi)
constexpr int kHi = 12;

struct Launch {
  std::vector<std::vector<float>> smem, mail;
  std::vector<unsigned char*> buffers, boxes;
  EmuBarrier barrier{kBlocks};
  std::atomic<bool> outside{false};
  explicit Launch(bool mailboxes) : smem(kBlocks), mail(kBlocks) {
    for (int q = 0; q < kBlocks; ++q) {
      smem[q].assign(kElems, -1.0f);
      buffers.push_back(reinterpret_cast<unsigned char*>(smem[q].data()));
      if (mailboxes) {
        mail[q].assign(kHi - kLo, -2.0f);
        boxes.push_back(reinterpret_cast<unsigned char*>(mail[q].data()));
      }
    }
  }
  EmuCluster cluster(int q) {
    EmuCluster c{q, kBlocks, &barrier, buffers.data()};
    if (!boxes.empty()) {
      c.mail = boxes.data();
      c.offset = kLo * sizeof(float);
      c.bytes = (kHi - kLo) * sizeof(float);
      c.outside = &outside;
    }
    return c;
  }
  // body(cluster, q) on kBlocks host threads, as the emulation runs a cluster's blocks.
  template <typename F>
  void run(F&& body) {
    std::vector<std::thread> th;
    for (int q = 0; q < kBlocks; ++q) th.emplace_back([&, q] { body(cluster(q), q); });
    for (auto& t : th) t.join();
  }
};

// Block q writes 100 q + r into slot kLo + q of every block r; after the barrier every block holds
// all the senders' values in its window.
void exchange(bool mailboxes) {
  Launch L(mailboxes);
  std::atomic<int> wrong{0}, early{0};
  L.run([&](const EmuCluster& clu, int q) {
    float* own = L.smem[q].data();
    for (int r = 0; r < kBlocks; ++r) clu.map(own + kLo + q, r)[0] = 100.0f * q + r;
    // Mailboxes: nothing arrives before the barrier (the window still holds its old values,
    // whatever the other blocks have already sent).
    if (mailboxes && own[kLo + q] != -1.0f) ++early;
    clu.sync();
    for (int s = 0; s < kBlocks; ++s)
      if (own[kLo + s] != 100.0f * s + q) ++wrong;
  });
  check(wrong == 0, mailboxes ? "mailboxes: every sender's value after the barrier"
                              : "DSMEM: every sender's value after the barrier");
  check(early == 0, "mailboxes: no value before the barrier");
  check(!L.outside, "no write outside the window");
  // Outside the window nothing changed.
  bool untouched = true;
  for (int q = 0; q < kBlocks; ++q)
    for (int e = 0; e < kElems; ++e)
      if ((e < kLo || e >= kHi) && L.smem[q][e] != -1.0f) untouched = false;
  check(untouched, "shared memory outside the window untouched");
}

void own_write_is_overwritten() {
  Launch L(true);
  std::atomic<int> kept{0};
  L.run([&](const EmuCluster& clu, int q) {
    float* own = L.smem[q].data();
    own[kLo] = 7.0f;                      // a direct write into the window: lost at the barrier
    clu.map(own + kLo + 1, q)[0] = 8.0f;  // through map to its own rank: kept
    clu.sync();
    if (own[kLo] == 7.0f) ++kept;
    if (own[kLo + 1] != 8.0f) ++kept;
  });
  check(kept == 0, "mailboxes: the barrier's copy replaces direct writes into the window");
}

void outside_is_reported() {
  Launch L(true);
  L.run([&](const EmuCluster& clu, int q) {
    float* own = L.smem[q].data();
    if (q == 1) clu.map(own + kHi, 0)[0] = 1.0f;  // one past the window
    clu.sync();
  });
  check(L.outside.load(), "mailboxes: a map() outside the window is reported");
  check(L.smem[0][kHi] == -1.0f, "mailboxes: the write outside the window reaches no other block");
}

}  // namespace

int main() {
  exchange(false);
  exchange(true);
  own_write_is_overwritten();
  outside_is_reported();
  std::printf("emu_cluster: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
