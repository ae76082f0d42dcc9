// The checks' one assertion: CHECK(condition) reports a failure with its place
// and goes on, so that one run lists every failed check; main() returns
// checks_result() (non-zero when any failed).
#pragma once

#include <cstdio>

inline int check_failures = 0;

#define CHECK(condition)                                                                    \
  do {                                                                                      \
    if (!(condition)) {                                                                     \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #condition); \
      ++check_failures;                                                                     \
    }                                                                                       \
  } while (0)

// Prints "NAME checks passed" or how many failed; the exit status for main().
inline int checks_result(const char* name) {
  if (check_failures != 0) {
    std::fprintf(stderr, "%d check(s) failed\n", check_failures);
    return 1;
  }
  std::printf("%s checks passed\n", name);
  return 0;
}
