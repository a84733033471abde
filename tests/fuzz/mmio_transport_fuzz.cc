// The virtio-mmio register interface (vmm/devices/virtio/mmio_transport.h)
// driven by a hostile driver: any sequence of register reads and writes of
// any width at any offset, queue kicks, guest memory edits and event-loop
// turns, in front of a real device (rng or balloon) wrapped in a checker of
// the transport's contract: a device is activated only with valid queues
// and never twice without a reset in between.
//
// Input: device u8 (bit 0: balloon), then operations, each an opcode u8:
//   0 read: offset u16, width u8          1 write: offset u16, width u8, value u64
//   2 run the event loop once             3 kick: queue u8
//   4 poke RAM: address u32, length u8, bytes
//   5 a driver's whole initialisation: features u64, then per queue
//     {size u16, desc u32, avail u32, used u32}
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/event_loop.h"
#include "tests/fuzz/fuzz_support.h"
#include "vmm/devices/interrupt.h"
#include "vmm/devices/virtio/balloon/balloon.h"
#include "vmm/devices/virtio/mmio_transport.h"
#include "vmm/devices/virtio/rng/rng.h"
#include "vmm/memory/guest_memory.h"

namespace hearth::fuzz {
namespace {

using namespace hearth::virtio;

constexpr uint64_t kRamSize = 1 << 20;
constexpr int kMaxOperations = 256;

class CheckedDevice : public VirtioDevice {
 public:
  explicit CheckedDevice(std::shared_ptr<VirtioDevice> inner) : inner_(std::move(inner)) {}
  uint32_t device_type() const override { return inner_->device_type(); }
  uint64_t features() const override { return inner_->features(); }
  std::vector<uint16_t> queue_max_sizes() const override { return inner_->queue_max_sizes(); }
  std::string name() const override { return inner_->name(); }
  void ReadConfig(uint64_t offset, absl::Span<uint8_t> data) override {
    inner_->ReadConfig(offset, data);
  }
  void WriteConfig(uint64_t offset, absl::Span<const uint8_t> data) override {
    inner_->WriteConfig(offset, data);
  }
  uint32_t config_generation() const override { return inner_->config_generation(); }

  absl::Status Activate(ActivateContext context) override {
    FUZZ_CHECK(!active_ && "activated twice without a reset");
    FUZZ_CHECK(context.queues.size() == inner_->queue_max_sizes().size());
    FUZZ_CHECK((context.acked_features & ~inner_->features()) == 0);
    FUZZ_CHECK(context.acked_features & kFeatureVersion1);
    for (size_t i = 0; i < context.queues.size(); ++i) {
      if (!context.queues[i].has_value()) continue;
      FUZZ_CHECK(context.queues[i]->size() <= kMaxQueueSize);
    }
    absl::Status status = inner_->Activate(std::move(context));
    active_ = status.ok();
    return status;
  }
  void ProcessQueue(size_t index) override {
    FUZZ_CHECK(active_ && "kicked while not active");
    inner_->ProcessQueue(index);
  }
  void Reset() override {
    inner_->Reset();
    active_ = false;
  }

 private:
  std::shared_ptr<VirtioDevice> inner_;
  bool active_ = false;
};

class Harness {
 public:
  explicit Harness(bool balloon) {
    std::shared_ptr<VirtioDevice> inner;
    if (balloon) {
      inner = *Balloon::Create(1, true, 1);
    } else {
      inner = std::make_shared<Rng>(*vmm::RateLimiter::Create({}));
    }
    device_ = std::make_shared<CheckedDevice>(inner);
    transport_ = std::make_unique<MmioTransport>(device_, &memory_, loop_.get(),
                                                 std::make_unique<devices::CountingInterrupt>());
  }
  ~Harness() {
    // Run what the transport posted while it still exists, then stop the
    // device as the VMM does at exit.
    (void)loop_->RunOnce(0);
    device_->Reset();
  }

  void Run(FuzzInput* input) {
    for (int i = 0; i < kMaxOperations && !input->empty(); ++i) {
      switch (input->Get<uint8_t>() % 6) {
        case 0: {
          uint64_t offset = input->Get<uint16_t>() % 0x200;
          uint8_t bytes[8];
          transport_->Read(offset, absl::MakeSpan(bytes, Width(input)));
          break;
        }
        case 1: {
          uint64_t offset = input->Get<uint16_t>() % 0x200;
          size_t width = Width(input);
          uint64_t value = input->Get<uint64_t>();
          transport_->Write(offset, absl::MakeConstSpan(reinterpret_cast<uint8_t*>(&value), width));
          break;
        }
        case 2:
          FUZZ_CHECK(loop_->RunOnce(0).ok());
          break;
        case 3:
          transport_->Notify(input->Get<uint8_t>() % 4);
          break;
        case 4: {
          uint64_t address = input->Get<uint32_t>() % kRamSize;
          std::string bytes = input->Bytes(input->Get<uint8_t>());
          (void)memory_.Write(address, bytes.data(), bytes.size());
          break;
        }
        case 5:
          Initialise(input);
          break;
      }
      uint32_t status = Register(kMmioStatus);
      FUZZ_CHECK(!(status & kStatusDriverOk) || (status & kStatusFeaturesOk));
    }
  }

 private:
  static size_t Width(FuzzInput* input) { return size_t{1} << (input->Get<uint8_t>() % 4); }
  uint32_t Register(uint64_t offset) {
    uint32_t value;
    transport_->Read(offset, absl::MakeSpan(reinterpret_cast<uint8_t*>(&value), 4));
    return value;
  }
  void Set(uint64_t offset, uint32_t value) {
    transport_->Write(offset, absl::MakeConstSpan(reinterpret_cast<uint8_t*>(&value), 4));
  }
  void Initialise(FuzzInput* input) {
    uint64_t features = input->Get<uint64_t>() | kFeatureVersion1;
    Set(kMmioStatus, 0);
    Set(kMmioStatus, kStatusAcknowledge);
    Set(kMmioStatus, kStatusAcknowledge | kStatusDriver);
    Set(kMmioDriverFeaturesSel, 0);
    Set(kMmioDriverFeatures, static_cast<uint32_t>(features));
    Set(kMmioDriverFeaturesSel, 1);
    Set(kMmioDriverFeatures, static_cast<uint32_t>(features >> 32));
    Set(kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    for (uint32_t q = 0; q < transport_->queue_count(); ++q) {
      Set(kMmioQueueSel, q);
      Set(kMmioQueueNum, input->Get<uint16_t>());
      Set(kMmioQueueDescLow, input->Get<uint32_t>() % kRamSize);
      Set(kMmioQueueDriverLow, input->Get<uint32_t>() % kRamSize);
      Set(kMmioQueueDeviceLow, input->Get<uint32_t>() % kRamSize);
      Set(kMmioQueueReady, 1);
    }
    Set(kMmioStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  }

  memory::GuestMemory memory_ = *memory::GuestMemory::CreateAnonymous(kRamSize, {});
  std::unique_ptr<EventLoop> loop_ = *EventLoop::Create();
  std::shared_ptr<CheckedDevice> device_;
  std::unique_ptr<MmioTransport> transport_;
};

}  // namespace
}  // namespace hearth::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  hearth::fuzz::FuzzInput input(data, size);
  hearth::fuzz::Harness harness(input.Bool());
  harness.Run(&input);
  return 0;
}
