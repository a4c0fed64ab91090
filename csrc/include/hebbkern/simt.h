// A thread block, written once for the GPU and for its emulation on the CPU.
//
// The loops take the index type of their count: a kernel passes an `int` count where its
// offsets fit 32 bits (plastic_rnn's step loops), so that the device does 32-bit index arithmetic
// instead of 64-bit (NOTES.md M7); the other kernels pass int64_t.
//
// The CUDA kernels of hebbkern are written against the small `Block` interface below instead of
// raw threadIdx arithmetic. On the device (`CudaBlock`) it is the usual block-stride loops, warp
// shuffles and __syncthreads(). On the host (`EmuBlock`) the same kernel body runs one block at a
// time, sequentially, so the CPU tests execute the exact indexing, phase structure, reductions and
// checkpoint logic of the GPU kernels (csrc/cpu/plastic_rnn_emulated.cpp), not a re-implementation.
//
// The contract that makes the emulation exact (and the kernels free of races):
//   - memory is written only inside for_each / for_each_row / single, and the items of one call
//     are independent: an item never reads what another item of the same call writes;
//   - a warp's rows run in order; within a warp, lane l handles j = l, l + 32, ... in order;
//   - sync() separates calls whose items depend on each other, except that item k of a for_each
//     may read what item k of an earlier for_each with the same count wrote (both run on the same
//     thread on the device, and in that order in the emulation);
//   - a row segment (for_each_row_seg) writes only inside its sum's f and behind leader(): on the
//     device a segment without a row in a round still calls f (inactive, with row n - 1), so that
//     every lane of the warp reaches the shuffles; the emulation makes those calls too.
// EmuBlock can run items, warps and lanes in reverse order; a kernel that breaks the contract then
// gives different bits, which the tests check (a CPU-side race detector).
#pragma once

#include <cstdint>

#include "hebbkern/plastic_rules.h"  // HK_HOST_DEVICE

#if defined(__CUDACC__)
#include <cooperative_groups.h>
#else
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#endif

// HK_DEVICE: device code under nvcc (the kernels), plain inline code in the host emulation.
#if defined(__CUDACC__)
#define HK_DEVICE __device__ __forceinline__
#define HK_UNROLL _Pragma("unroll")
#else
#define HK_DEVICE inline
#define HK_UNROLL
#endif

namespace hebbkern::simt {

constexpr int kWarpSize = 32;
constexpr int kMaxWarps = 32;  // 1024 threads

// A few values reduced together (one warp-level tree for all of them).
template <typename T, int K>
struct Vec {
  T v[K];
  HK_DEVICE Vec operator+(const Vec& o) const {
    Vec r;
    HK_UNROLL
    for (int k = 0; k < K; ++k) r.v[k] = v[k] + o.v[k];
    return r;
  }
  HK_DEVICE T& operator[](int k) { return v[k]; }
  HK_DEVICE const T& operator[](int k) const { return v[k]; }
};

// Launch geometry. A kernel family computes its grid in ONE host function (trace_update_grid,
// plastic_rnn_grid); the CUDA launch turns that Grid into its dim3 and each block reads its index
// from blockIdx (cuda_block_index), while the emulation enumerates the same Grid and hands every
// block its index (block_index). So the emulation runs exactly the blocks of the launch, with the
// indices the kernel will see: a kernel that decodes its index against the wrong geometry fails
// on the CPU (the first H200 run found such a bug that an emulation with its own block loop hid).
//
// `cluster`: blocks per thread-block cluster along x (sm_90; 1: no cluster). x is a multiple of
// it; cluster k holds the blocks whose x / cluster is k (for y = z = 1, blocks k * cluster ..
// k * cluster + cluster - 1), and a block's rank in its cluster is x % cluster, as CUDA numbers a
// cluster of dimensions (cluster, 1, 1).
struct Grid {
  int64_t x = 1, y = 1, z = 1;
  int cluster = 1;
  HK_HOST_DEVICE int64_t blocks() const { return x * y * z; }
};

struct BlockIdx {
  int64_t x = 0, y = 0, z = 0;
};

// Block k of `g` in the order CUDA numbers them (x fastest).
HK_HOST_DEVICE BlockIdx block_index(const Grid& g, int64_t k) {
  return {k % g.x, (k / g.x) % g.y, k / (g.x * g.y)};
}

// CUDA's limits on a grid: x < 2^31, y and z <= 65535, at least one block; a cluster of 1 to 16
// blocks (more than 8: non-portable) that tiles x.
HK_HOST_DEVICE bool grid_fits_cuda(const Grid& g) {
  return g.x >= 1 && g.y >= 1 && g.z >= 1 && g.x < (int64_t{1} << 31) && g.y <= 65535 &&
         g.z <= 65535 && g.cluster >= 1 && g.cluster <= 16 && g.x % g.cluster == 0;
}

// Blocks of a cluster that synchronise through global memory (CudaGridCluster, below sm_90, where
// there is no distributed shared memory): what another block writes into this block's shared
// memory goes into this block's mailbox in global memory instead, and each barrier copies the
// mailbox over the "window" of shared memory it stands for. Every address a kernel gives map()
// lies in the window, and the window is written only through map() (to other blocks or to this
// block's own rank): the copy after each barrier overwrites it.
struct Mailbox {
  unsigned char* mail;  // [blocks of the launch][bytes]: block x's mailbox at x * bytes
  unsigned* arrivals;   // [clusters]: arrivals at the cluster's barriers (zeroed by the launch)
  int64_t offset;       // the window: bytes [offset, offset + bytes) of each block's shared memory
  int64_t bytes;        // (a multiple of 4)
  int c;                // blocks per cluster
};

#if defined(__CUDACC__)  // nvcc, both passes: the kernels; g++: the emulation

__device__ __forceinline__ BlockIdx cuda_block_index() {
  return {static_cast<int64_t>(blockIdx.x), static_cast<int64_t>(blockIdx.y),
          static_cast<int64_t>(blockIdx.z)};
}

inline dim3 to_dim3(const Grid& g) {
  return dim3(static_cast<unsigned>(g.x), static_cast<unsigned>(g.y), static_cast<unsigned>(g.z));
}

template <typename T>
__device__ __forceinline__ T shfl_xor(T x, int mask) {
  return __shfl_xor_sync(0xffffffffu, x, mask);
}

template <typename T, int K>
__device__ __forceinline__ Vec<T, K> shfl_xor(const Vec<T, K>& x, int mask) {
  Vec<T, K> r;
#pragma unroll
  for (int k = 0; k < K; ++k) r.v[k] = __shfl_xor_sync(0xffffffffu, x.v[k], mask);
  return r;
}

// One warp of the block working on one row.
struct CudaWarp {
  int lane;
  // sum_{j < n} f(j), with lane l evaluating f(j) for j = l, l + 32, ...; the xor butterfly gives
  // every lane the same bits (IEEE addition is commutative), so no broadcast is needed.
  template <typename V, typename I, typename F>
  __device__ __forceinline__ V sum(I n, F&& f) const {
    V s = V{};
    // Unrolled twice at most: the row passes of the backward keep many pointers live, and deeper
    // unrolling made ptxas spill (NOTES.md).
#pragma unroll 2
    for (I j = lane; j < n; j += kWarpSize) s = s + f(j);
#pragma unroll
    for (int off = kWarpSize / 2; off > 0; off >>= 1) s = s + shfl_xor(s, off);
    return s;
  }
  // f(j) for j = lane, lane + 32, ... < n (no result).
  template <typename I, typename F>
  __device__ __forceinline__ void for_each(I n, F&& f) const {
    for (I j = lane; j < n; j += kWarpSize) f(j);
  }
  __device__ __forceinline__ bool leader() const { return lane == 0; }
};

// A segment of `width` lanes of a warp (a power of two, 1 to 32) working on one row: the rows of a
// slice narrower than a warp (the cluster backward's columns, NOTES.md M11) use every lane.
// `active`: whether the segment has a row this round. An inactive segment still runs the xor
// butterfly (the shuffles need every lane of the warp) but evaluates no term and leads nothing.
struct CudaSeg {
  int lane;  // within the segment
  int width;
  bool active;
  template <typename V, typename I, typename F>
  __device__ __forceinline__ V sum(I n, F&& f) const {
    V s = V{};
    if (active) {
      // Not unrolled: the cluster backward's row passes keep many values live (registers).
#pragma unroll 1
      for (I j = lane; j < n; j += width) s = s + f(j);
    }
    // Every level's shuffle runs (no branch around it, which cost a divergence guard per level);
    // only the addition is predicated. At off >= width the partner is in another segment.
#pragma unroll
    for (int off = kWarpSize / 2; off > 0; off >>= 1) {
      const V o = shfl_xor(s, off);
      if (off < width) s = s + o;
    }
    return s;
  }
  __device__ __forceinline__ bool leader() const { return active && lane == 0; }
};

struct CudaBlock {
  __device__ __forceinline__ int nthreads() const { return blockDim.x; }
  __device__ __forceinline__ int nwarps() const { return blockDim.x / kWarpSize; }
  template <typename I, typename F>
  __device__ __forceinline__ void for_each(I n, F&& f) const {
    for (I k = threadIdx.x; k < n; k += blockDim.x) f(k);
  }
  // f(warp, row, warp_index) for rows i = w, w + nwarps, ... of warp w.
  template <typename I, typename F>
  __device__ __forceinline__ void for_each_row(I n, F&& f) const {
    const int w = threadIdx.x / kWarpSize;
    const CudaWarp warp{static_cast<int>(threadIdx.x % kWarpSize)};
    for (I i = w; i < n; i += nwarps()) f(warp, i, w);
  }
  // f(segment, row, segment_index) for rows i = s, s + S, ... of segment s, S = nthreads / width
  // segments of `width` lanes (a power of two, at most 32). Rounds are warp-uniform: while any
  // segment of a warp has a row, all its segments call f, those without one inactive (row n - 1).
  template <typename I, typename F>
  __device__ __forceinline__ void for_each_row_seg(I n, int width, F&& f) const {
    const int S = blockDim.x / width, s = threadIdx.x / width;
    const int s0 = (threadIdx.x / kWarpSize) * (kWarpSize / width);  // the warp's first segment
    for (I i0 = s0; i0 < n; i0 += S) {
      const I i = i0 + (s - s0);
      const bool active = i < n;
      f(CudaSeg{static_cast<int>(threadIdx.x % width), width, active}, active ? i : n - 1, s);
    }
  }
  // f(warp, warp_index) once per warp: for kernels that assign rows to warps themselves.
  template <typename F>
  __device__ __forceinline__ void for_each_warp(F&& f) const {
    f(CudaWarp{static_cast<int>(threadIdx.x % kWarpSize)},
      static_cast<int>(threadIdx.x / kWarpSize));
  }
  template <typename F>
  __device__ __forceinline__ void single(F&& f) const {
    if (threadIdx.x == 0) f();
  }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  // sum_{k < n} f(k) for the whole block, identical bits in every thread. `red` holds kMaxWarps
  // values (shared memory); two barriers inside.
  template <typename T, typename F>
  __device__ __forceinline__ T sum(int64_t n, F&& f, T* red) const {
    T s = T(0);
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) s += f(k);
#pragma unroll
    for (int off = kWarpSize / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (threadIdx.x % kWarpSize == 0) red[threadIdx.x / kWarpSize] = s;
    __syncthreads();
    T total = T(0);
    for (int w = 0; w < nwarps(); ++w) total += red[w];
    __syncthreads();  // `red` may be reused right after
    return total;
  }
  // sum_{j < n} f(j) computed by EVERY warp on its own (lane-strided, then the xor butterfly):
  // identical bits in every thread of the block (and of every block running the same code on the
  // same data), with no barrier and no shared memory. For short sums that all threads need.
  template <typename V, typename I, typename F>
  __device__ __forceinline__ V warp_sum_all(I n, F&& f) const {
    return CudaWarp{static_cast<int>(threadIdx.x % kWarpSize)}.template sum<V>(n, f);
  }
};

// The thread-block cluster a block belongs to (sm_90: cooperative_groups::this_cluster()), with
// distributed shared memory. It compiles for every architecture, but below sm_90 its members trap:
// the kernels take CudaGridCluster there (csrc/cuda/plastic_rnn.cu).
//   rank(): this block's index in the cluster; size(): blocks in the cluster;
//   sync(): barrier of every thread of every block of the cluster, with release/acquire order for
//           shared memory (a block's writes into another block's shared memory before it are seen
//           by that block after it);
//   map(p, r): the address of p's element in block r's shared memory (p points into this block's).
struct CudaCluster {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __device__ __forceinline__ int rank() const {
    return static_cast<int>(cooperative_groups::this_cluster().block_rank());
  }
  __device__ __forceinline__ int size() const {
    return static_cast<int>(cooperative_groups::this_cluster().num_blocks());
  }
  __device__ __forceinline__ void sync() const { cooperative_groups::this_cluster().sync(); }
  template <typename T>
  __device__ __forceinline__ T* map(T* p, int r) const {
    return cooperative_groups::this_cluster().map_shared_rank(p, static_cast<unsigned>(r));
  }
#else
  __device__ __forceinline__ int rank() const { return 0; }
  __device__ __forceinline__ int size() const { return 1; }
  __device__ __forceinline__ void sync() const { __trap(); }
  template <typename T>
  __device__ __forceinline__ T* map(T* p, int) const {
    __trap();
    return p;
  }
#endif
};

// A cluster of c consecutive blocks (rank blockIdx.x % c) that synchronise through global memory,
// with the Cluster interface of CudaCluster (NOTES.md M12). The launch must make every block of the
// grid co-resident (a cooperative launch): a block spins at the barrier until the others arrive.
//   sync(): __syncthreads; thread 0 fences, adds one arrival to the cluster's counter and spins
//           until the counter reaches (barriers passed) x c (never reset: barrier k waits for
//           (k + 1) c arrivals); __syncthreads; then the block copies its mailbox over the window
//           with ld.global.cg (L2: the L1 of this SM is not coherent with the others' stores and
//           might hold a line read at an earlier barrier), and __syncthreads.
//   map(p, r): p's offset in the window, in block r's mailbox.
// A mailbox slot written for the next exchange while its owner is still copying may be copied
// half-written; the owner reads that slot only after the next barrier, whose copy is complete (the
// same argument as for distributed shared memory: nothing is read before the barrier after the
// write).
struct CudaGridCluster {
  unsigned char* smem;  // this block's shared memory
  unsigned char* box;   // this cluster's mailboxes: block q's at q * mb.bytes
  unsigned* arrivals;   // this cluster's counter
  int64_t offset, bytes;
  int c, r;
  mutable unsigned target = 0;  // arrivals awaited at the last barrier (thread 0's copy counts)
  __device__ __forceinline__ CudaGridCluster(const Mailbox& mb, unsigned char* shared)
      : smem(shared), offset(mb.offset), bytes(mb.bytes), c(mb.c) {
    const int64_t x = blockIdx.x, k = x / mb.c;
    r = static_cast<int>(x - k * mb.c);
    box = mb.mail + k * mb.c * mb.bytes;
    arrivals = mb.arrivals + k;
  }
  __device__ __forceinline__ int rank() const { return r; }
  __device__ __forceinline__ int size() const { return c; }
  __device__ __forceinline__ void sync() const {
    __syncthreads();
    if (threadIdx.x == 0) {
      target += static_cast<unsigned>(c);
      __threadfence();  // this block's stores (ordered before by the barrier) before the arrival
      atomicAdd(arrivals, 1u);
      // Wrap-safe: the difference, not the values, is compared.
      while (static_cast<int>(*static_cast<volatile unsigned*>(arrivals) - target) < 0) {
      }
      __threadfence();
    }
    __syncthreads();
    const unsigned* src = reinterpret_cast<const unsigned*>(box + r * bytes);
    unsigned* dst = reinterpret_cast<unsigned*>(smem + offset);
    const int words = static_cast<int>(bytes / 4);
    for (int k = static_cast<int>(threadIdx.x); k < words; k += static_cast<int>(blockDim.x))
      dst[k] = __ldcg(src + k);
    __syncthreads();
  }
  template <typename T>
  __device__ __forceinline__ T* map(T* p, int q) const {
    const int64_t off = reinterpret_cast<unsigned char*>(p) - smem - offset;
    return reinterpret_cast<T*>(box + q * bytes + off);
  }
};

#else  // host: the emulation

// The xor butterfly of CudaWarp::sum over 32 lane values, in the same order.
template <typename V>
inline V butterfly(V (&lanes)[kWarpSize]) {
  for (int off = kWarpSize / 2; off > 0; off >>= 1) {
    V next[kWarpSize];
    for (int l = 0; l < kWarpSize; ++l) next[l] = lanes[l] + lanes[l ^ off];
    for (int l = 0; l < kWarpSize; ++l) lanes[l] = next[l];
  }
  return lanes[0];
}

// The butterfly of CudaSeg::sum over `width` lane values (offsets width / 2 .. 1), in its order.
template <typename V>
inline V butterfly(V (&lanes)[kWarpSize], int width) {
  for (int off = width / 2; off > 0; off >>= 1) {
    V next[kWarpSize];
    for (int l = 0; l < width; ++l) next[l] = lanes[l] + lanes[l ^ off];
    for (int l = 0; l < width; ++l) lanes[l] = next[l];
  }
  return lanes[0];
}

struct EmuSeg {
  bool reverse;
  int width;
  bool active;
  template <typename V, typename I, typename F>
  V sum(I n, F&& f) const {
    V lanes[kWarpSize];
    for (int l = 0; l < width; ++l) lanes[l] = V{};
    if (active) {
      for (int q = 0; q < width; ++q) {
        const int l = reverse ? width - 1 - q : q;
        for (I j = l; j < n; j += width) lanes[l] = lanes[l] + f(j);
      }
    }
    return butterfly(lanes, width);
  }
  bool leader() const { return active; }  // the emulated segment body runs once, not per lane
};

struct EmuWarp {
  bool reverse;
  template <typename V, typename I, typename F>
  V sum(I n, F&& f) const {
    V lanes[kWarpSize];
    for (int l = 0; l < kWarpSize; ++l) lanes[l] = V{};
    for (int q = 0; q < kWarpSize; ++q) {
      const int l = reverse ? kWarpSize - 1 - q : q;
      for (I j = l; j < n; j += kWarpSize) lanes[l] = lanes[l] + f(j);
    }
    return butterfly(lanes);
  }
  template <typename I, typename F>
  void for_each(I n, F&& f) const {
    for (int q = 0; q < kWarpSize; ++q) {
      const int l = reverse ? kWarpSize - 1 - q : q;
      for (I j = l; j < n; j += kWarpSize) f(j);
    }
  }
  bool leader() const { return true; }  // the emulated warp body runs once, not per lane
};

struct EmuBlock {
  int threads;   // multiple of 32, at most 1024
  bool reverse;  // run items, warps and lanes last to first
  int nthreads() const { return threads; }
  int nwarps() const { return threads / kWarpSize; }
  template <typename I, typename F>
  void for_each(I n, F&& f) const {
    if (reverse) {
      for (I k = n - 1; k >= 0; --k) f(k);
    } else {
      for (I k = 0; k < n; ++k) f(k);
    }
  }
  template <typename I, typename F>
  void for_each_row(I n, F&& f) const {
    const EmuWarp warp{reverse};
    for (int q = 0; q < nwarps(); ++q) {
      const int w = reverse ? nwarps() - 1 - q : q;
      for (I i = w; i < n; i += nwarps()) f(warp, i, w);
    }
  }
  // CudaBlock::for_each_row_seg's calls, the inactive ones included, segment by segment.
  template <typename I, typename F>
  void for_each_row_seg(I n, int width, F&& f) const {
    const int S = threads / width;
    for (int q = 0; q < S; ++q) {
      const int s = reverse ? S - 1 - q : q;
      const int s0 = (s * width / kWarpSize) * (kWarpSize / width);
      for (I i0 = s0; i0 < n; i0 += S) {
        const I i = i0 + (s - s0);
        const bool active = i < n;
        f(EmuSeg{reverse, width, active}, active ? i : n - 1, s);
      }
    }
  }
  template <typename F>
  void for_each_warp(F&& f) const {
    const EmuWarp warp{reverse};
    for (int q = 0; q < nwarps(); ++q) f(warp, reverse ? nwarps() - 1 - q : q);
  }
  template <typename F>
  void single(F&& f) const {
    f();
  }
  void sync() const {}
  // The same partition and order as CudaBlock::sum: per-thread strided partials, a butterfly per
  // warp, then the warps in order.
  template <typename T, typename F>
  T sum(int64_t n, F&& f, T* /*red*/) const {
    T total = T(0);
    for (int w = 0; w < nwarps(); ++w) {
      T lanes[kWarpSize];
      for (int l = 0; l < kWarpSize; ++l) {
        T s = T(0);
        for (int64_t k = w * kWarpSize + l; k < n; k += threads) s += f(k);
        lanes[l] = s;
      }
      total += butterfly(lanes);
    }
    return total;
  }
  template <typename V, typename I, typename F>
  V warp_sum_all(I n, F&& f) const {
    return EmuWarp{reverse}.template sum<V>(n, f);
  }
};

// A reusable barrier of n host threads. std::barrier is C++20, and the extension is built as
// C++17 against older torch (2.11, the GPU image's). The mutex orders memory: every write before
// arrive_and_wait() in one thread happens-before every return from it in the others.
class EmuBarrier {
 public:
  explicit EmuBarrier(int n) : n_(n) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const int64_t phase = phase_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++phase_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return phase_ != phase; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  const int n_;
  int arrived_ = 0;
  int64_t phase_ = 0;
};

// One block's view of its emulated cluster: the c blocks of a cluster run concurrently as c host
// threads (csrc/cpu/plastic_rnn_emulated.cpp), each with its own shared-memory buffer; sync() is a
// barrier of those threads (EmuBarrier: a block's writes into another block's buffer before sync()
// are visible after it); map() turns a pointer into this block's buffer into the same offset in
// block r's.
// With `mail` set it emulates CudaGridCluster instead: map() points into block r's mailbox (a
// pointer outside the window sets *outside, and the write lands harmlessly in this block's own
// buffer), and sync() copies this block's mailbox over its window after the barrier. A second
// barrier follows the copy, for the host only (no block writes a mailbox its owner is copying: a
// data race in C++); it hides nothing the tests look for, since a read of a slot before the
// barrier after its write still sees the older copy.
struct EmuCluster {
  int block_rank;
  int blocks;
  EmuBarrier* barrier;
  unsigned char* const* buffers;         // [blocks]: each block's shared memory
  unsigned char* const* mail = nullptr;  // [blocks]: each block's mailbox (window bytes)
  int64_t offset = 0, bytes = 0;         // the window
  std::atomic<bool>* outside = nullptr;
  int rank() const { return block_rank; }
  int size() const { return blocks; }
  void sync() const {
    barrier->arrive_and_wait();
    if (mail == nullptr) return;
    std::memcpy(buffers[block_rank] + offset, mail[block_rank], static_cast<size_t>(bytes));
    barrier->arrive_and_wait();
  }
  template <typename T>
  T* map(T* p, int r) const {
    const auto off = reinterpret_cast<unsigned char*>(p) - buffers[block_rank];
    if (mail == nullptr) return reinterpret_cast<T*>(buffers[r] + off);
    if (off < offset || off + static_cast<int64_t>(sizeof(T)) > offset + bytes) {
      outside->store(true);
      return p;
    }
    return reinterpret_cast<T*>(mail[r] + (off - offset));
  }
};

#endif

}  // namespace hebbkern::simt
