// Philox4x32-10 (csrc/include/hebbkern/philox.h) against Random123's published known answers.
#include <cstdio>

#include "hebbkern/philox.h"

int main() {
  struct Case {
    uint32_t ctr[4], key[2], want[4];
  };
  const Case cases[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
       {0xffffffffu, 0xffffffffu},
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
       {0xa4093822u, 0x299f31d0u},
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  int failed = 0;
  for (const Case& c : cases) {
    const auto got =
        hebbkern::philox::philox4x32_10(c.ctr[0], c.ctr[1], c.ctr[2], c.ctr[3], c.key[0], c.key[1]);
    for (int i = 0; i < 4; ++i) {
      if (got.v[i] != c.want[i]) {
        ++failed;
        std::printf("FAIL: word %d: %08x, want %08x\n", i, got.v[i], c.want[i]);
      }
    }
  }
  std::printf("philox: %s\n", failed ? "FAILED" : "3 known answers ok");
  return failed ? 1 : 0;
}
