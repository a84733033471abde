#include "vmm/devices/legacy/persist.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "hearth/vmm/v1/snapshot.pb.h"

namespace hearth::devices {
namespace {

namespace v1 = ::hearth::vmm::v1;

class NullOutput : public SerialOutput {
 public:
  void Write(absl::Span<const uint8_t>) override {}
};

std::unique_ptr<Serial> MakeSerial() {
  return std::make_unique<Serial>(std::make_unique<CountingInterrupt>(),
                                  std::make_shared<NullOutput>());
}

std::unique_ptr<I8042> MakeI8042() {
  return std::make_unique<I8042>(std::make_unique<CountingInterrupt>(), [] {});
}

void Out(bus::BusDevice* device, uint64_t offset, uint8_t value) {
  device->Write(offset, absl::MakeConstSpan(&value, 1));
}

uint8_t In(bus::BusDevice* device, uint64_t offset) {
  uint8_t value = 0;
  device->Read(offset, absl::MakeSpan(&value, 1));
  return value;
}

TEST(SerialPersistTest, SavedStateRestoresIntoAFreshPortUnchanged) {
  std::unique_ptr<Serial> serial = MakeSerial();
  Out(serial.get(), 3, 0x80);  // DLAB
  Out(serial.get(), 0, 0x01);  // DLL: 115200 baud
  Out(serial.get(), 1, 0x00);  // DLM
  Out(serial.get(), 3, 0x1b);  // 8E1, DLAB clear
  Out(serial.get(), 1, 0x03);  // IER: rx and THR-empty interrupts
  Out(serial.get(), 7, 0x5a);  // SCR
  const uint8_t input[] = {'o', 'k'};
  ASSERT_EQ(serial->EnqueueInput(input), 2u);

  v1::SerialState saved;
  SaveSerialState(*serial, &saved);
  EXPECT_EQ(saved.dll(), 0x01u);
  EXPECT_EQ(saved.lcr(), 0x1bu);
  EXPECT_EQ(saved.ier(), 0x03u);
  EXPECT_EQ(saved.scr(), 0x5au);
  EXPECT_EQ(saved.rx_fifo(), "ok");

  std::unique_ptr<Serial> fresh = MakeSerial();
  RestoreSerialState(saved, fresh.get());
  v1::SerialState again;
  SaveSerialState(*fresh, &again);
  EXPECT_EQ(again.SerializeAsString(), saved.SerializeAsString());
  EXPECT_EQ(In(fresh.get(), 0), 'o');
}

TEST(SerialPersistTest, RestoreClampsAHostileState) {
  v1::SerialState state;
  state.set_ier(0xffffffff);
  state.set_mcr(0xff);
  state.set_lcr(0x103);  // the 8-bit register: 8N1, DLAB clear
  state.set_rx_fifo(std::string(Serial::kFifoSize + 36, 'h'));
  std::unique_ptr<Serial> serial = MakeSerial();
  RestoreSerialState(state, serial.get());
  EXPECT_EQ(In(serial.get(), 1) & 0xf0, 0);  // reserved IER bits dropped
  EXPECT_EQ(In(serial.get(), 4), 0x1f);
  EXPECT_EQ(In(serial.get(), 3), 0x03);
  EXPECT_EQ(serial->InputSpace(), 0u);
  for (size_t i = 0; i < Serial::kFifoSize; ++i) ASSERT_EQ(In(serial.get(), 0), 'h') << i;
  EXPECT_EQ(In(serial.get(), 0), 0);
}

TEST(I8042PersistTest, SavedStateRestoresIntoAFreshControllerUnchanged) {
  std::unique_ptr<I8042> i8042 = MakeI8042();
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  Out(i8042.get(), 4, 0x60);  // write control byte: its data byte comes next

  v1::I8042State saved;
  SaveI8042State(*i8042, &saved);
  EXPECT_EQ(saved.pending_command(), 0x60u);
  EXPECT_FALSE(saved.buffer().empty());

  std::unique_ptr<I8042> fresh = MakeI8042();
  RestoreI8042State(saved, fresh.get());
  v1::I8042State again;
  SaveI8042State(*fresh, &again);
  EXPECT_EQ(again.SerializeAsString(), saved.SerializeAsString());
}

TEST(I8042PersistTest, RestoreClampsAnOverlongBuffer) {
  v1::I8042State state;
  state.set_control(0x45);
  state.set_status(0x15);
  state.set_pending_command(0x1ff);  // a byte register: 0xff
  state.set_buffer(std::string(I8042::kBufferSize + 20, '\x2a'));
  std::unique_ptr<I8042> i8042 = MakeI8042();
  RestoreI8042State(state, i8042.get());
  for (size_t i = 0; i < I8042::kBufferSize; ++i) ASSERT_EQ(In(i8042.get(), 0), 0x2a) << i;
  EXPECT_EQ(In(i8042.get(), 4) & 0x01, 0);
  EXPECT_EQ(In(i8042.get(), 0), 0);
  v1::I8042State saved;
  SaveI8042State(*i8042, &saved);
  EXPECT_EQ(saved.pending_command(), 0xffu);
}

}  // namespace
}  // namespace hearth::devices
