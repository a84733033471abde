#include "agent/labels.h"

#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace hearth::agent {
namespace {

Labels MakeLabels(std::initializer_list<std::pair<const char*, const char*>> pairs) {
  Labels labels;
  for (const auto& [key, value] : pairs) labels[key] = value;
  return labels;
}

// Parses `text`, failing the test if it does not parse.
LabelSelector Selector(const std::string& text) {
  absl::StatusOr<LabelSelector> selector = LabelSelector::Parse(text);
  EXPECT_TRUE(selector.ok()) << text << ": " << selector.status();
  return selector.ok() ? *std::move(selector) : LabelSelector();
}

// ---------------------------------------------------------------------------
// ValidateVmId
// ---------------------------------------------------------------------------

TEST(ValidateVmId, AcceptsLettersDigitsAndDashes) {
  EXPECT_TRUE(ValidateVmId("a").ok());
  EXPECT_TRUE(ValidateVmId("web-01-Prod").ok());
  EXPECT_TRUE(ValidateVmId("0123456789").ok());
}

TEST(ValidateVmId, EmptyIsInvalid) {
  absl::Status status = ValidateVmId("");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(status.message(), "vm_id: ")) << status;
}

TEST(ValidateVmId, SixtyFourCharactersIsTheMaximum) {
  EXPECT_TRUE(ValidateVmId(std::string(64, 'a')).ok());
  absl::Status status = ValidateVmId(std::string(65, 'a'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), "got 65")) << status;
}

TEST(ValidateVmId, RefusesCharactersOutsideTheAlphabet) {
  for (const std::string& id : {std::string("a_b"), std::string("a/b"), std::string(".."),
                                std::string("a b"), std::string("a.b"), std::string("a\0b", 3),
                                std::string("caf\xc3\xa9"), std::string("a\n")}) {
    absl::Status status = ValidateVmId(id);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_TRUE(absl::StartsWith(status.message(), "vm_id: ")) << status;
  }
}

TEST(ValidateVmId, EscapesUnprintableBytesInTheMessage) {
  absl::Status status = ValidateVmId(std::string("a\0z", 3));
  EXPECT_TRUE(absl::StrContains(status.message(), "\"a\\x00z\"")) << status;
  EXPECT_FALSE(absl::StrContains(status.message(), absl::string_view("\0", 1)));
}

// ---------------------------------------------------------------------------
// ValidateLabels
// ---------------------------------------------------------------------------

TEST(ValidateLabels, AcceptsTypicalLabels) {
  EXPECT_TRUE(
      ValidateLabels(
          MakeLabels({{"env", "prod"}, {"app.kubernetes.io/name", "web_1.2-3"}, {"0k", ""}}))
          .ok());
}

TEST(ValidateLabels, NoLabelsIsValid) { EXPECT_TRUE(ValidateLabels(Labels()).ok()); }

TEST(ValidateLabels, KeyMustStartWithLetterOrDigit) {
  for (const char* key : {"-a", ".a", "_a", "/a"}) {
    absl::Status status = ValidateLabels(MakeLabels({{key, "v"}}));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_TRUE(absl::StartsWith(status.message(), "labels: key")) << status;
  }
}

TEST(ValidateLabels, KeyMustNotBeEmpty) {
  EXPECT_EQ(ValidateLabels(MakeLabels({{"", "v"}})).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateLabels, KeyIsAtMostSixtyThreeCharacters) {
  Labels labels;
  labels[std::string(63, 'k')] = "v";
  EXPECT_TRUE(ValidateLabels(labels).ok());
  labels[std::string(64, 'k')] = "v";
  EXPECT_EQ(ValidateLabels(labels).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidateLabels, KeyRefusesOtherCharacters) {
  for (const char* key : {"a b", "a=b", "a,b", "a!", "k\xc3\xa9"}) {
    EXPECT_EQ(ValidateLabels(MakeLabels({{key, "v"}})).code(), absl::StatusCode::kInvalidArgument)
        << key;
  }
}

TEST(ValidateLabels, ValueIsAtMostSixtyThreeCharacters) {
  Labels labels;
  labels["k"] = std::string(63, 'v');
  EXPECT_TRUE(ValidateLabels(labels).ok());
  labels["k"] = std::string(64, 'v');
  absl::Status status = ValidateLabels(labels);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(status.message(), "labels[k]: value")) << status;
}

TEST(ValidateLabels, ValueRefusesSlashAndOtherCharacters) {
  // Unlike keys, values may not hold '/'.
  for (const char* value : {"a/b", "a b", "a=b", "a,b", "\xc3\xa9"}) {
    absl::Status status = ValidateLabels(MakeLabels({{"k", value}}));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << value;
    EXPECT_TRUE(absl::StartsWith(status.message(), "labels[k]: value")) << status;
  }
}

TEST(ValidateLabels, AtMostSixtyFourLabels) {
  Labels labels;
  for (int i = 0; i < 64; ++i) labels["k" + std::to_string(i)] = "v";
  EXPECT_TRUE(ValidateLabels(labels).ok());
  labels["one-more"] = "v";
  absl::Status status = ValidateLabels(labels);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), "at most 64 labels, got 65")) << status;
}

// ---------------------------------------------------------------------------
// LabelSelector
// ---------------------------------------------------------------------------

TEST(LabelSelector, EmptySelectorMatchesEverything) {
  for (const char* text : {"", "   ", "\t"}) {
    LabelSelector selector = Selector(text);
    EXPECT_TRUE(selector.empty()) << '"' << text << '"';
    EXPECT_TRUE(selector.Matches(Labels()));
    EXPECT_TRUE(selector.Matches(MakeLabels({{"env", "prod"}})));
  }
}

TEST(LabelSelector, EqualsMatchesTheValue) {
  LabelSelector selector = Selector("env=prod");
  EXPECT_TRUE(selector.Matches(MakeLabels({{"env", "prod"}, {"x", "y"}})));
  EXPECT_FALSE(selector.Matches(MakeLabels({{"env", "dev"}})));
  EXPECT_FALSE(selector.Matches(Labels()));
}

TEST(LabelSelector, DoubleEqualsIsEquals) {
  LabelSelector selector = Selector("env==prod");
  EXPECT_TRUE(selector.Matches(MakeLabels({{"env", "prod"}})));
  EXPECT_FALSE(selector.Matches(MakeLabels({{"env", "dev"}})));
}

TEST(LabelSelector, EqualsEmptyValueMatchesAnEmptyValueOnly) {
  LabelSelector selector = Selector("env=");
  EXPECT_TRUE(selector.Matches(MakeLabels({{"env", ""}})));
  EXPECT_FALSE(selector.Matches(MakeLabels({{"env", "prod"}})));
  EXPECT_FALSE(selector.Matches(Labels()));
}

TEST(LabelSelector, NotEqualsMatchesOtherValuesAndAbsentKey) {
  LabelSelector selector = Selector("env!=prod");
  EXPECT_FALSE(selector.Matches(MakeLabels({{"env", "prod"}})));
  EXPECT_TRUE(selector.Matches(MakeLabels({{"env", "dev"}})));
  EXPECT_TRUE(selector.Matches(Labels()));  // as in Kubernetes
}

TEST(LabelSelector, BareKeyRequiresTheKey) {
  LabelSelector selector = Selector("gpu");
  EXPECT_TRUE(selector.Matches(MakeLabels({{"gpu", ""}})));
  EXPECT_TRUE(selector.Matches(MakeLabels({{"gpu", "a100"}})));
  EXPECT_FALSE(selector.Matches(MakeLabels({{"cpu", "x"}})));
}

TEST(LabelSelector, NegatedKeyRequiresItsAbsence) {
  LabelSelector selector = Selector("!gpu");
  EXPECT_FALSE(selector.Matches(MakeLabels({{"gpu", ""}})));
  EXPECT_TRUE(selector.Matches(MakeLabels({{"cpu", "x"}})));
  EXPECT_TRUE(selector.Matches(Labels()));
}

TEST(LabelSelector, WhitespaceAroundTermsAndOperatorsIsIgnored) {
  LabelSelector selector = Selector("  env = prod ,  tier!= db , ! gpu , zone ");
  EXPECT_TRUE(selector.Matches(MakeLabels({{"env", "prod"}, {"tier", "web"}, {"zone", "a"}})));
  EXPECT_FALSE(selector.Matches(MakeLabels({{"env", "prod"}, {"tier", "db"}, {"zone", "a"}})));
}

TEST(LabelSelector, AllTermsMustMatch) {
  LabelSelector selector = Selector("env=prod,tier!=db,!gpu,zone");
  EXPECT_FALSE(selector.empty());
  EXPECT_TRUE(selector.Matches(MakeLabels({{"env", "prod"}, {"zone", "a"}})));
  EXPECT_FALSE(selector.Matches(MakeLabels({{"env", "dev"}, {"zone", "a"}})));
  EXPECT_FALSE(selector.Matches(MakeLabels({{"env", "prod"}, {"zone", "a"}, {"tier", "db"}})));
  EXPECT_FALSE(selector.Matches(MakeLabels({{"env", "prod"}, {"zone", "a"}, {"gpu", "1"}})));
  EXPECT_FALSE(selector.Matches(MakeLabels({{"env", "prod"}})));
}

TEST(LabelSelector, ContradictoryTermsMatchNothing) {
  LabelSelector selector = Selector("env=prod,env=dev");
  EXPECT_FALSE(selector.Matches(MakeLabels({{"env", "prod"}})));
  EXPECT_FALSE(selector.Matches(MakeLabels({{"env", "dev"}})));
}

TEST(LabelSelector, KeysWithSlashesAndDots) {
  LabelSelector selector = Selector("app.kubernetes.io/name=web");
  EXPECT_TRUE(selector.Matches(MakeLabels({{"app.kubernetes.io/name", "web"}})));
}

TEST(LabelSelector, MalformedSelectorsAreInvalidArgumentNamingTheField) {
  for (const char* text : {
           "=v",          // no key
           "==v",         // no key
           "!=v",         // no key
           "!",           // no key
           "k in (a,b)",  // set-based selectors are not supported
           "k notin (a)",
           "k=v=w",  // '=' is not a value character
           "k===v",       "k!==v",
           "!k=v",  // negation takes a bare key
           "k=v w",       "k k=v",
           "-k=v",   // key must start with a letter or digit
           "k=a/b",  // '/' is not a value character
           "k>1",
           "k=v,",  // empty terms: a trailing, leading or doubled comma
           ",k=v",        "k=v,,j=w", "k=v, ,j=w", ",",
       }) {
    absl::StatusOr<LabelSelector> selector = LabelSelector::Parse(text);
    ASSERT_FALSE(selector.ok()) << '"' << text << "\" parsed";
    EXPECT_EQ(selector.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_TRUE(absl::StartsWith(selector.status().message(), "label_selector: "))
        << selector.status();
  }
}

TEST(LabelSelector, ErrorQuotesTheOffendingTerm) {
  absl::StatusOr<LabelSelector> selector = LabelSelector::Parse("env=prod,k=v=w");
  ASSERT_FALSE(selector.ok());
  EXPECT_TRUE(absl::StrContains(selector.status().message(), "\"k=v=w\"")) << selector.status();
}

TEST(LabelSelector, OverlongKeyOrValueIsInvalid) {
  EXPECT_FALSE(LabelSelector::Parse(std::string(64, 'k') + "=v").ok());
  EXPECT_FALSE(LabelSelector::Parse("k=" + std::string(64, 'v')).ok());
  EXPECT_TRUE(LabelSelector::Parse(std::string(63, 'k') + "=" + std::string(63, 'v')).ok());
}

}  // namespace
}  // namespace hearth::agent
