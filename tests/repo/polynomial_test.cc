#include "repo/polynomial.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <string>

namespace fsb::repo {
namespace {

// Carry-less product, for building reducible polynomials; the degrees must sum to < 64.
uint64_t ClMul(uint64_t a, uint64_t b) {
  uint64_t r = 0;
  for (int i = 0; i < 64; i++) {
    if ((b >> i) & 1) r ^= a << i;
  }
  return r;
}

// Irreducible by trial division by every polynomial of degree 1 .. deg/2.
bool IrreducibleByTrialDivision(Polynomial p) {
  const int deg = p.Deg();
  if (deg < 1) return false;
  for (uint64_t d = 2; Polynomial(d).Deg() <= deg / 2; d++) {
    if (p.Mod(Polynomial(d)) == Polynomial(0)) return false;
  }
  return true;
}

void ExpectInvalid(std::string_view hex) {
  Result<Polynomial> r = Polynomial::Parse(hex);
  ASSERT_FALSE(r.ok()) << "parsed \"" << hex << "\" as " << r->Hex();
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "invalid chunker polynomial");
}

TEST(PolynomialTest, ResticRepositoryPolynomialsAreIrreducible) {
  for (std::string hex : {"2ca2f83a5f769d", "23c22c30a25373"}) {
    Result<Polynomial> p = Polynomial::Parse(hex);
    ASSERT_TRUE(p.ok()) << hex << ": " << p.status().ToString();
    EXPECT_TRUE(p->Irreducible());
    EXPECT_EQ(p->Deg(), 53);
    EXPECT_EQ(p->Hex(), hex);
  }
  EXPECT_EQ(Polynomial::Parse("2ca2f83a5f769d")->value(), uint64_t{0x2ca2f83a5f769d});
}

TEST(PolynomialTest, ParseRejectsReducibleProducts) {
  const uint64_t p1 = 0x23c22c30a25373;  // degree 53, irreducible
  // (x^2 + x + 1) * (x^51 + ...): a degree-53 product of two factors.
  const uint64_t low = 0x7;
  const uint64_t high = (p1 >> 2) | 1;
  const Polynomial product(ClMul(low, high));
  ASSERT_EQ(product.Deg(), 53);
  EXPECT_FALSE(product.Irreducible());
  ExpectInvalid(product.Hex());
  // x^53 + 1 has the factor x + 1; the restic polynomial times x is divisible by x.
  ExpectInvalid(Polynomial((uint64_t{1} << 53) | 1).Hex());
  ExpectInvalid(Polynomial(p1 >> 1 << 1).Hex());
  // The square of a degree-26 irreducible polynomial.
  uint64_t v = (uint64_t{1} << 26) | 1;
  while (!Polynomial(v).Irreducible()) v += 2;
  ExpectInvalid(Polynomial(ClMul(v, v)).Hex());
}

TEST(PolynomialTest, ParseRejectsMalformedText) {
  ExpectInvalid("");
  ExpectInvalid("0x2ca2f83a5f769d");
  ExpectInvalid("2ca2f83a5f769g");
  ExpectInvalid(" 2ca2f83a5f769d");
  ExpectInvalid("-2ca2f83a5f769d");
  ExpectInvalid("0");
  ExpectInvalid("00000000000000000");
  ExpectInvalid("12ca2f83a5f769d00000");  // more than 64 bits
}

TEST(PolynomialTest, ParseRejectsDegreeAbove53) {
  uint64_t v = (uint64_t{1} << 54) | 1;
  while (!Polynomial(v).Irreducible()) v += 2;
  EXPECT_EQ(Polynomial(v).Deg(), 54);
  ExpectInvalid(Polynomial(v).Hex());
}

TEST(PolynomialTest, ParseAcceptsWhatGoParseUintAccepts) {
  // restic decodes the config field with strconv.ParseUint(s, 16, 64).
  EXPECT_EQ(Polynomial::Parse("2CA2F83A5F769D")->value(), uint64_t{0x2ca2f83a5f769d});
  EXPECT_EQ(Polynomial::Parse("002ca2f83a5f769d")->value(), uint64_t{0x2ca2f83a5f769d});
}

TEST(PolynomialTest, RandomYieldsDistinctIrreducibleDegree53Polynomials) {
  std::set<uint64_t> seen;
  for (int i = 0; i < 20; i++) {
    const Polynomial p = Polynomial::Random();
    EXPECT_EQ(p.Deg(), 53);
    EXPECT_EQ(p.value() & 1, 1u);
    EXPECT_TRUE(p.Irreducible());
    Result<Polynomial> parsed = Polynomial::Parse(p.Hex());
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, p);
    seen.insert(p.value());
  }
  EXPECT_EQ(seen.size(), 20u);
}

TEST(PolynomialTest, IrreducibleAgreesWithTrialDivisionUpToDegree12) {
  // Number of irreducible polynomials over GF(2) of degree n (OEIS A001037).
  const int kCount[] = {0, 2, 1, 2, 3, 6, 9, 18, 30, 56, 99, 186, 335};
  int count[13] = {};
  for (uint64_t v = 2; v < (uint64_t{1} << 13); v++) {
    const Polynomial p(v);
    const bool ben_or = p.Irreducible();
    ASSERT_EQ(ben_or, IrreducibleByTrialDivision(p)) << p.Hex();
    if (ben_or) count[p.Deg()]++;
  }
  for (int n = 1; n <= 12; n++) EXPECT_EQ(count[n], kCount[n]) << "degree " << n;
}

TEST(PolynomialTest, MulModMatchesCarrylessProductModulo) {
  const Polynomial g(0x2ca2f83a5f769d);
  std::mt19937_64 rng(5);
  for (int i = 0; i < 1000; i++) {
    // Operands below 2^31 so that the plain product fits in 64 bits.
    const uint64_t a = rng() >> 33, b = rng() >> 33;
    EXPECT_EQ(Polynomial(a).MulMod(Polynomial(b), g), Polynomial(ClMul(a, b)).Mod(g));
  }
  // Full-width operands: reduced first, so (a * b) mod g == ((a mod g) * (b mod g)) mod g.
  const uint64_t a = rng(), b = rng();
  EXPECT_EQ(Polynomial(a).MulMod(Polynomial(b), g),
            Polynomial(a).Mod(g).MulMod(Polynomial(b).Mod(g), g));
  // Degree-63 modulus: nothing may overflow.
  const Polynomial g63((uint64_t{1} << 63) | 0x1b);
  EXPECT_EQ(Polynomial(uint64_t{1} << 62).MulMod(Polynomial(4), g63), Polynomial(0x1b << 1));
}

TEST(PolynomialTest, ModDegAndGcdBasics) {
  EXPECT_EQ(Polynomial(0).Deg(), -1);
  EXPECT_EQ(Polynomial(1).Deg(), 0);
  EXPECT_EQ(Polynomial(uint64_t{1} << 63).Deg(), 63);
  // x^2 mod (x^2 + x + 1) = x + 1
  EXPECT_EQ(Polynomial(4).Mod(Polynomial(7)), Polynomial(3));
  const uint64_t f = 0x23c22c30a25373, h = 0x13;  // x^4 + x + 1 is irreducible
  EXPECT_EQ(Polynomial::Gcd(Polynomial(ClMul(f, 0x7)), Polynomial(ClMul(h, 0x7))), Polynomial(7));
  EXPECT_EQ(Polynomial::Gcd(Polynomial(f), Polynomial(h)), Polynomial(1));
  EXPECT_EQ(Polynomial::Gcd(Polynomial(f), Polynomial(0)), Polynomial(f));
}

TEST(PolynomialTest, HexIsLowercaseWithoutLeadingZeros) {
  EXPECT_EQ(Polynomial(0x2ca2f83a5f769d).Hex(), "2ca2f83a5f769d");
  EXPECT_EQ(Polynomial(0x1b).Hex(), "1b");
  EXPECT_EQ(Polynomial(0).Hex(), "0");
  EXPECT_EQ(Polynomial(~uint64_t{0}).Hex(), "ffffffffffffffff");
}

}  // namespace
}  // namespace fsb::repo
