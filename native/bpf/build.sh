#!/bin/sh
# Compiles the tc program for the kernel's BPF virtual machine (binding.gyp
# runs this as an action; the object is loaded at run time by libbpf).
# Usage: build.sh OUTPUT.o
set -eu
here=$(dirname "$0")
# -mcpu=v3 (Linux 5.1): atomic fetch-and-add with its result, for ERSPAN sequence numbers.
# Debian keeps asm/types.h under the multiarch directory, which -target bpf does not search.
exec clang -target bpf -mcpu=v3 -O2 -g -Wall -Werror -I"/usr/include/$(gcc -print-multiarch)" \
  -c "$here/mirror.bpf.c" -o "$1"
