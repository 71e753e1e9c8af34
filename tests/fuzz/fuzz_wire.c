/* libFuzzer target for the wire decoders (filled in below). */
#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wire_limits lim;
    wire_hdr h;
    wire_limits_default(&lim);
    (void)wire_hdr_decode(data, size, &lim, &h);
    return 0;
}
