// Moving bytes between a validated descriptor chain and the host: gather and
// scatter helpers that treat the readable part and the writable part of a
// chain each as one byte stream, whatever the guest's descriptor layout
// (virtio 1.2 §2.7.4: devices must not assume a particular layout), and
// iovec lists over guest memory for readv/writev/preadv/pwritev.
// Every descriptor was range-checked when the chain was popped.
#ifndef HEARTH_VMM_DEVICES_VIRTIO_CHAIN_IO_H_
#define HEARTH_VMM_DEVICES_VIRTIO_CHAIN_IO_H_

#include <sys/uio.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "vmm/devices/virtio/queue.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::virtio {

// Copies `destination.size()` bytes starting `offset` bytes into the chain's
// readable stream.
absl::Status ReadFromChain(const memory::GuestMemory& memory, const DescriptorChain& chain,
                           uint64_t offset, absl::Span<uint8_t> destination);
// Copies `source` to `offset` bytes into the chain's writable stream and
// marks the pages dirty.
absl::Status WriteToChain(memory::GuestMemory* memory, const DescriptorChain& chain,
                          uint64_t offset, absl::Span<const uint8_t> source);

// iovecs covering [offset, offset + length) of the readable (or writable)
// stream. Fails if the chain is shorter.
absl::StatusOr<std::vector<iovec>> ReadableIovecs(const memory::GuestMemory& memory,
                                                  const DescriptorChain& chain, uint64_t offset,
                                                  uint64_t length);
absl::StatusOr<std::vector<iovec>> WritableIovecs(const memory::GuestMemory& memory,
                                                  const DescriptorChain& chain, uint64_t offset,
                                                  uint64_t length);

// Marks the first `length` bytes of the writable stream dirty (after a
// device wrote them through WritableIovecs).
void MarkWritableDirty(memory::GuestMemory* memory, const DescriptorChain& chain, uint64_t length);

}  // namespace hearth::virtio

#endif  // HEARTH_VMM_DEVICES_VIRTIO_CHAIN_IO_H_
