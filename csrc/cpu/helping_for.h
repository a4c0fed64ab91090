// helping_for(n, f): runs f(0) ... f(n - 1) on the calling thread, with help from sleeping helper
// threads that wake up in time. Built for work that is split per call into a few chunks of tens of
// microseconds, on machines whose cores may be busy with other processes (plastic_step: one call
// per agent step).
//
// Why not at::parallel_for: its OpenMP region ends in a barrier, so the caller waits for every
// thread of the team, also one that the scheduler has not run yet because its core is busy (a time
// slice, milliseconds, per region), and the OpenMP threads spin at the barrier, taking that core's
// time from the other process (measured: 200 steps of the maze agent 13x slower with 2 threads than
// with 1 on a loaded machine). Here the chunks are claimed from a counter: the caller takes chunks
// until none is left and then waits only for chunks a helper has already started; a helper that
// wakes late finds nothing to do, and the helpers never spin: they sleep on a condition variable.
// What remains is a helper descheduled while it holds a chunk, and a helper that the scheduler
// wakes on the caller's own CPU when the other cores are busy (it would only take turns with the
// caller: it leaves the job alone instead). After either (a wait over 0.5 ms, or a helper that
// stepped aside) the next calls run alone (16, then 32, ... up to 4096 calls), so on a busy
// machine the cost is one such call per pause (benchmarks/NOTES.md P14).
#pragma once

#include <cstdint>
#include <functional>

namespace hebbkern {
namespace cpu {

// Uses at most at::get_num_threads() threads (the caller included); runs inline when that is 1,
// when n < 2, inside a parallel region, or while another thread's helping_for holds the helpers.
void helping_for(int64_t n, const std::function<void(int64_t)>& f);

}  // namespace cpu
}  // namespace hebbkern
