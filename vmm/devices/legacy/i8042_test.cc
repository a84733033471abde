#include "vmm/devices/legacy/i8042.h"

#include "gtest/gtest.h"

namespace hearth::devices {
namespace {

class I8042Test : public ::testing::Test {
 protected:
  I8042Test() { MakeI8042(); }
  void MakeI8042() {
    auto irq = std::make_unique<CountingInterrupt>();
    interrupt = irq.get();
    i8042 = std::make_unique<I8042>(std::move(irq), [this] { ++resets; });
  }
  // Replaces the controller by a fresh one restored from `state`, as a
  // restoring VMM does.
  void RestoreFresh(const I8042State& state) {
    MakeI8042();
    i8042->RestoreState(state);
  }
  void SaveAndRestore() { RestoreFresh(i8042->SaveState()); }
  uint8_t In(uint64_t offset) {
    uint8_t v = 0;
    i8042->Read(offset, absl::MakeSpan(&v, 1));
    return v;
  }
  void Out(uint64_t offset, uint8_t v) { i8042->Write(offset, absl::MakeConstSpan(&v, 1)); }
  CountingInterrupt* interrupt;
  std::unique_ptr<I8042> i8042;
  int resets = 0;
};

TEST_F(I8042Test, PulseResetCallsBack) {
  Out(4, 0xfe);
  EXPECT_EQ(resets, 1);
  EXPECT_EQ(i8042->resets_requested(), 1u);
}

TEST_F(I8042Test, SelfTestAndControlByte) {
  EXPECT_EQ(In(4) & 0x01, 0);  // output buffer empty
  Out(4, 0xaa);
  EXPECT_EQ(In(4) & 0x01, 1);
  EXPECT_EQ(In(0), 0x55);
  Out(4, 0x60);
  Out(0, 0x47);
  Out(4, 0x20);
  EXPECT_EQ(In(0), 0x47);
  EXPECT_EQ(resets, 0);
}

TEST_F(I8042Test, KeyboardCommandsAreAcked) {
  Out(0, 0xff);  // keyboard reset
  EXPECT_EQ(In(0), 0xfa);
  Out(4, 0xd4);  // to aux: no mouse
  Out(0, 0xf4);
  EXPECT_EQ(In(0), 0xff);
}

TEST_F(I8042Test, CtrlAltDelQueuesScancodesAndInterrupts) {
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  EXPECT_EQ(interrupt->count(), 1u);
  EXPECT_EQ(In(0), 0x14);
  EXPECT_EQ(In(0), 0x11);
  EXPECT_EQ(In(0), 0xe0);
  EXPECT_EQ(In(0), 0x71);
  EXPECT_EQ(In(4) & 0x01, 0);
  EXPECT_GE(interrupt->count(), 3u);  // re-raised while bytes remain
  // A guest that never reads fills the buffer; further injections fail.
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  EXPECT_EQ(i8042->TriggerCtrlAltDel().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(I8042Test, SnapshotKeepsQueuedScancodes) {
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  EXPECT_EQ(In(0), 0x14);
  SaveAndRestore();
  EXPECT_EQ(In(4) & 0x01, 1);
  EXPECT_EQ(In(0), 0x11);
  EXPECT_EQ(In(0), 0xe0);
  EXPECT_EQ(In(0), 0x71);
  EXPECT_EQ(In(4) & 0x01, 0);
}

TEST_F(I8042Test, SnapshotKeepsTheControlByte) {
  Out(4, 0x60);
  Out(0, 0x46);  // keyboard interrupt off
  SaveAndRestore();
  Out(4, 0x20);
  EXPECT_EQ(In(0), 0x46);
  ASSERT_TRUE(i8042->TriggerCtrlAltDel().ok());
  EXPECT_EQ(interrupt->count(), 0u);  // still off
}

TEST_F(I8042Test, SnapshotKeepsAPendingCommand) {
  Out(4, 0x60);  // write control byte: its data byte comes next
  SaveAndRestore();
  EXPECT_EQ(In(4) & 0x08, 0x08);  // status: last write was a command
  Out(0, 0x45);
  EXPECT_EQ(In(4) & 0x01, 0);  // taken as the control byte, not acked
  Out(4, 0x20);
  EXPECT_EQ(In(0), 0x45);
}

TEST_F(I8042Test, RestoreClampsAnOverlongBuffer) {
  I8042State state;
  state.control = 0x45;
  state.status = 0x15;
  state.pending_command = 0xff;
  state.buffer.assign(I8042::kBufferSize + 20, 0x2a);
  RestoreFresh(state);
  for (size_t i = 0; i < I8042::kBufferSize; ++i) ASSERT_EQ(In(0), 0x2a) << i;
  EXPECT_EQ(In(4) & 0x01, 0);
  EXPECT_EQ(In(0), 0);
  EXPECT_TRUE(i8042->TriggerCtrlAltDel().ok());
}

}  // namespace
}  // namespace hearth::devices
