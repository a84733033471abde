#include "vmm/devices/legacy/serial.h"

#include <string>

#include "gtest/gtest.h"

namespace hearth::devices {
namespace {

class StringOutput : public SerialOutput {
 public:
  void Write(absl::Span<const uint8_t> bytes) override { text.append(bytes.begin(), bytes.end()); }
  std::string text;
};

class SerialTest : public ::testing::Test {
 protected:
  SerialTest() {
    output = std::make_shared<StringOutput>();
    MakeSerial();
  }
  void MakeSerial() {
    auto irq = std::make_unique<CountingInterrupt>();
    interrupt = irq.get();
    serial = std::make_unique<Serial>(std::move(irq), output);
  }
  // Replaces the port by a fresh one restored from `state`, as a restoring
  // VMM does.
  void RestoreFresh(const SerialState& state) {
    MakeSerial();
    serial->RestoreState(state);
  }
  void SaveAndRestore() { RestoreFresh(serial->SaveState()); }
  uint8_t In(uint64_t offset) {
    uint8_t v = 0;
    serial->Read(offset, absl::MakeSpan(&v, 1));
    return v;
  }
  void Out(uint64_t offset, uint8_t v) { serial->Write(offset, absl::MakeConstSpan(&v, 1)); }
  CountingInterrupt* interrupt;
  std::shared_ptr<StringOutput> output;
  std::unique_ptr<Serial> serial;
};

TEST_F(SerialTest, TransmitsToOutputAndThrIsAlwaysEmpty) {
  EXPECT_EQ(In(5) & 0x60, 0x60);  // THRE | TEMT
  for (char c : std::string("hi\n")) Out(0, static_cast<uint8_t>(c));
  EXPECT_EQ(output->text, "hi\n");
  EXPECT_EQ(serial->bytes_written(), 3u);
  EXPECT_EQ(interrupt->count(), 0u);  // IER is off
}

TEST_F(SerialTest, DivisorLatchDoesNotTransmit) {
  Out(3, 0x80);  // DLAB
  Out(0, 0x01);
  Out(1, 0x02);
  EXPECT_EQ(In(0), 0x01);
  EXPECT_EQ(In(1), 0x02);
  Out(3, 0x03);
  EXPECT_EQ(output->text, "");
  EXPECT_EQ(In(3), 0x03);
}

TEST_F(SerialTest, EnablingThreInterruptRaisesItOnceAndIirReportsIt) {
  Out(2, 0x01);  // FIFO on
  Out(1, 0x02);  // IER.THRI
  EXPECT_EQ(interrupt->count(), 1u);
  EXPECT_EQ(In(2), 0xc2);  // FIFO bits | THRE
  EXPECT_EQ(In(2), 0xc1);  // reading IIR cleared it
  Out(0, 'x');
  EXPECT_EQ(interrupt->count(), 2u);
  EXPECT_EQ(In(2), 0xc2);
}

TEST_F(SerialTest, ReceiveFifoAndDataReadyInterrupt) {
  Out(1, 0x01);  // IER.RDI
  const uint8_t input[] = {'a', 'b'};
  EXPECT_EQ(serial->EnqueueInput(input), 2u);
  EXPECT_EQ(interrupt->count(), 1u);
  EXPECT_EQ(In(5) & 0x01, 0x01);
  EXPECT_EQ(In(2) & 0x0f, 0x04);
  EXPECT_EQ(In(0), 'a');
  EXPECT_EQ(In(0), 'b');
  EXPECT_EQ(In(5) & 0x01, 0x00);
  EXPECT_EQ(In(2) & 0x0f, 0x01);
}

TEST_F(SerialTest, FifoIsBoundedAndCanBeCleared) {
  std::string lots(100, 'z');
  EXPECT_EQ(serial->EnqueueInput(
                absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(lots.data()), lots.size())),
            Serial::kFifoSize);
  EXPECT_EQ(serial->InputSpace(), 0u);
  Out(2, 0x03);  // FIFO enable + clear RX
  EXPECT_EQ(serial->InputSpace(), Serial::kFifoSize);
}

TEST_F(SerialTest, LoopbackModeEchoesAndMirrorsModemLines) {
  Out(4, 0x10 | 0x0a);     // LOOP | RTS | OUT2
  EXPECT_EQ(In(6), 0x90);  // CTS | DCD, as Linux's 8250 probe expects
  Out(0, 'q');
  EXPECT_EQ(output->text, "");
  EXPECT_EQ(In(0), 'q');
  Out(4, 0x08);
  EXPECT_EQ(In(6), 0xb0);
}

TEST_F(SerialTest, ScratchAndOddAccessWidths) {
  Out(7, 0x5a);
  EXPECT_EQ(In(7), 0x5a);
  uint8_t wide[2] = {0, 0};
  serial->Read(0, absl::MakeSpan(wide, 2));
  EXPECT_EQ(wide[0], 0xff);
  serial->Write(0, absl::MakeConstSpan(wide, 2));
  EXPECT_EQ(output->text, "");
}

TEST_F(SerialTest, SnapshotKeepsTheRegistersAndTheDivisor) {
  Out(3, 0x80 | 0x1b);  // DLAB, 8E1
  Out(0, 0x01);         // DLL: 115200 baud
  Out(1, 0x02);         // DLM
  Out(3, 0x1b);
  Out(1, 0x05);  // IER: RDI | RLSI
  Out(4, 0x0b);  // MCR: DTR | RTS | OUT2
  Out(2, 0x01);  // FCR: FIFO on
  Out(7, 0x5a);
  SaveAndRestore();
  EXPECT_EQ(In(3), 0x1b);
  EXPECT_EQ(In(1), 0x05);
  EXPECT_EQ(In(4), 0x0b);
  EXPECT_EQ(In(7), 0x5a);
  EXPECT_EQ(In(2), 0xc1);  // FIFO bits, nothing pending
  Out(3, 0x80 | 0x1b);
  EXPECT_EQ(In(0), 0x01);
  EXPECT_EQ(In(1), 0x02);
}

TEST_F(SerialTest, SnapshotWithDlabSetKeepsItSet) {
  Out(3, 0x83);
  Out(0, 0x30);
  SaveAndRestore();
  EXPECT_EQ(In(3), 0x83);
  EXPECT_EQ(In(0), 0x30);  // still the divisor latch, not RBR
  Out(0, 0x31);
  EXPECT_EQ(output->text, "");
}

TEST_F(SerialTest, SnapshotKeepsAPendingThreInterrupt) {
  Out(2, 0x01);
  Out(1, 0x02);  // IER.THRI: THRE pending, not yet reported
  SaveAndRestore();
  EXPECT_EQ(In(2), 0xc2);
  EXPECT_EQ(In(2), 0xc1);  // reported once, as before the snapshot
}

TEST_F(SerialTest, SnapshotKeepsUnreadInputInOrder) {
  Out(1, 0x01);  // IER.RDI
  const uint8_t input[] = {'a', 'b', 'c'};
  ASSERT_EQ(serial->EnqueueInput(input), 3u);
  EXPECT_EQ(In(0), 'a');
  SaveAndRestore();
  EXPECT_EQ(In(5) & 0x01, 0x01);
  EXPECT_EQ(In(2) & 0x0f, 0x04);
  EXPECT_EQ(In(0), 'b');
  EXPECT_EQ(In(0), 'c');
  EXPECT_EQ(In(5) & 0x01, 0x00);
  EXPECT_EQ(In(2) & 0x0f, 0x01);
  EXPECT_EQ(serial->InputSpace(), Serial::kFifoSize);
}

TEST_F(SerialTest, RestoreClampsAHostileState) {
  SerialState state;
  state.ier = 0xff;
  state.mcr = 0xff;
  state.lcr = 0x03;  // 8N1, DLAB clear
  state.rx_fifo.assign(Serial::kFifoSize + 36, 'h');
  RestoreFresh(state);
  EXPECT_EQ(In(1) & 0xf0, 0);  // reserved IER bits dropped
  EXPECT_EQ(In(4), 0x1f);
  EXPECT_EQ(In(3), 0x03);
  EXPECT_EQ(serial->InputSpace(), 0u);
  for (size_t i = 0; i < Serial::kFifoSize; ++i) ASSERT_EQ(In(0), 'h') << i;
  EXPECT_EQ(In(5) & 0x01, 0x00);
  EXPECT_EQ(In(0), 0);
}

}  // namespace
}  // namespace hearth::devices
