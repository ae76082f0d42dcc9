// C++-level checks of PcapRotation's edges that the CLI cannot reach (its
// -C is at least 1,000,000 bytes): a frame larger than the limit goes alone
// into a file, the frame that crosses the limit opens the next file whole,
// -W's ring names and removals, -G by frame timestamps, pcapng sizes. Runs
// in a temporary directory; exits non-zero on a failure.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "check.h"
#include "pcap_rotation.h"

using namespace tapas;

namespace {

long file_size(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0 ? static_cast<long>(st.st_size) : -1;
}

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

}  // namespace

int main() {
  char dir_template[] = "/tmp/tapas-rotation-XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (dir == nullptr) return 2;
  const std::string base = std::string(dir) + "/cap.pcap";
  std::vector<uint8_t> frame(1000, 0xab);
  const timespec t0{1000, 0};

  {
    // 1,100 bytes allowed: header 24 + one record of 16 + 1,000 fits, a second does not.
    RotationSpec spec{base, 1100, 0, 0, false};
    PcapRotation rotation(spec);
    CHECK(rotation.open().empty());
    for (int i = 0; i < 3; ++i) CHECK(rotation.write(t0, frame.data(), 1000, 1000));
    // Larger than the limit on its own: alone in a file, not an endless rotation.
    std::vector<uint8_t> big(5000, 0xcd);
    CHECK(rotation.write(t0, big.data(), 5000, 5000));
    CHECK(rotation.write(t0, frame.data(), 1000, 1000));
    rotation.close();
    CHECK(rotation.counters().frames.get() == 5);
    CHECK(rotation.counters().files_opened.get() == 5);
    for (int n = 0; n < 5; ++n) CHECK(exists(base + std::to_string(n)));
    CHECK(file_size(base + "0") == 24 + 16 + 1000);
    CHECK(file_size(base + "3") == 24 + 16 + 5000);
    CHECK(!exists(base));
  }
  {
    // -W 100: two digits, the ring comes round, the oldest names removed first.
    const std::string ring = std::string(dir) + "/ring.pcap";
    RotationSpec spec{ring, 1100, 0, 100, false};
    PcapRotation rotation(spec);
    CHECK(rotation.file_name(0) == ring + "00");
    CHECK(rotation.file_name(99) == ring + "99");
    CHECK(rotation.file_name(100) == ring + "00");
    CHECK(rotation.open().empty());
    for (int i = 0; i < 102; ++i) CHECK(rotation.write(t0, frame.data(), 1000, 1000));
    rotation.close();
    CHECK(rotation.counters().files_opened.get() == 102);
    CHECK(rotation.counters().files_removed.get() == 2);
    CHECK(exists(ring + "00") && exists(ring + "01") && exists(ring + "99") && !exists(ring + "100"));
  }
  {
    // -G 2 by the frames' timestamps, from each file's first frame: the first
    // frame, 5 s after the open, starts file 0's period; 1.9 s later stays,
    // 2.0 s later rotates; a long gap makes one file, not many.
    const std::string timed = std::string(dir) + "/time.pcap";
    RotationSpec spec{timed, 0, 2, 0, false};
    PcapRotation rotation(spec);
    CHECK(rotation.open().empty());
    CHECK(rotation.write({1005, 0}, frame.data(), 60, 60));
    CHECK(rotation.write({1006, 900000000}, frame.data(), 60, 60));
    CHECK(rotation.counters().files_opened.get() == 1);
    CHECK(rotation.write({1007, 0}, frame.data(), 60, 60));
    CHECK(rotation.counters().files_opened.get() == 2);
    CHECK(rotation.write({1100, 0}, frame.data(), 60, 60));
    CHECK(rotation.counters().files_opened.get() == 3);
    rotation.close();
  }
  {
    // pcapng: the size the rotation compares is the bytes written, IDBs included.
    const std::string ng = std::string(dir) + "/ng.pcapng";
    RotationSpec spec{ng, 4000, 0, 0, true};
    PcapRotation rotation(spec);
    CHECK(rotation.open().empty());
    const std::string a = "a@ns", b = "b";
    for (int i = 0; i < 10; ++i) {
      const RecordMeta meta{i % 2 ? &a : &b, i % 3 ? RecordMeta::Inbound : RecordMeta::Outbound};
      const PcapWriter::Piece piece{frame.data(), 999};
      CHECK(rotation.write(t0, &piece, 1, 999, meta));
    }
    rotation.close();
    CHECK(rotation.counters().frames.get() == 10);
    const uint64_t files = rotation.counters().files_opened.get();
    CHECK(files >= 3);
    for (uint64_t n = 0; n < files; ++n) {
      const long size = file_size(ng + std::to_string(n));
      CHECK(size > 0 && size <= 4000 && size % 4 == 0);
    }
  }
  {
    // -W without -C or -G cannot run; an unwritable path is told at open.
    CHECK(!check_rotation({base, 0, 0, 3, false}).empty());
    PcapRotation rotation({std::string(dir) + "/no/such/dir.pcap", 0, 0, 0, false});
    CHECK(rotation.open().find("cannot write") == 0);
  }

  const std::string cleanup = std::string("rm -rf ") + dir;
  if (std::system(cleanup.c_str()) != 0) ++check_failures;
  return checks_result("pcap rotation");
}
