#include "repo/polynomial.h"

#include <bit>

#include "base/bytes.h"
#include "repo/crypto.h"

namespace fsb::repo {
namespace {

constexpr int kRandomDegree = 53;
constexpr int kRandomMaxTries = 1'000'000;

Status InvalidPolynomial() { return Status::InvalidArgument("invalid chunker polynomial"); }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

int Polynomial::Deg() const { return std::bit_width(value_) - 1; }

Polynomial Polynomial::Mod(Polynomial divisor) const {
  FSB_CHECK(divisor.value_ != 0);
  const int d = divisor.Deg();
  uint64_t x = value_;
  for (int diff = Polynomial(x).Deg() - d; diff >= 0; diff = Polynomial(x).Deg() - d) {
    x ^= divisor.value_ << diff;
  }
  return Polynomial(x);
}

Polynomial Polynomial::MulMod(Polynomial f, Polynomial g) const {
  FSB_CHECK(g.value_ != 0);
  const uint64_t a = Mod(g).value_;
  const uint64_t b = f.Mod(g).value_;
  const int k = g.Deg();
  if (k == 0) return Polynomial(0);  // everything is 0 modulo a constant
  // Horner over the bits of b, high to low: res = res*x mod g, then add a where b has a 1.
  // res and a stay below 2^k, so res << 1 is below 2^(k+1) <= 2^64 and one XOR of g reduces it.
  const uint64_t top = uint64_t{1} << (k - 1);
  uint64_t res = 0;
  for (int i = Polynomial(b).Deg(); i >= 0; i--) {
    const bool carry = (res & top) != 0;
    res <<= 1;
    if (carry) res ^= g.value_;  // clears bit k and reduces
    if ((b >> i) & 1) res ^= a;
  }
  return Polynomial(res);
}

Polynomial Polynomial::Gcd(Polynomial a, Polynomial b) {
  while (b.value_ != 0) {
    Polynomial r = a.Mod(b);
    a = b;
    b = r;
  }
  return a;
}

bool Polynomial::Irreducible() const {
  if (value_ == 0) return false;
  const Polynomial x(2);
  Polynomial h = x.Mod(*this);  // x^(2^0) mod this
  for (int i = 1; i <= Deg() / 2; i++) {
    h = h.MulMod(h, *this);  // x^(2^i) mod this
    if (Gcd(*this, h.Add(x).Mod(*this)) != Polynomial(1)) return false;
  }
  return true;
}

Polynomial Polynomial::Random() {
  for (int i = 0; i < kRandomMaxTries; i++) {
    uint8_t buf[8];
    RandomBytes(MutableByteView(buf, sizeof buf));  // aborts if the CSPRNG fails
    uint64_t v = DecodeLE64(buf) & ((uint64_t{1} << (kRandomDegree + 1)) - 1);
    v |= (uint64_t{1} << kRandomDegree) | 1;
    Polynomial p(v);
    if (p.Irreducible()) return p;
  }
  // Probability about (26/27)^1000000: only a broken CSPRNG gets here.
  FSB_CHECK(false && "no irreducible polynomial found");
  return Polynomial();
}

Result<Polynomial> Polynomial::Parse(std::string_view hex) {
  if (hex.empty()) return InvalidPolynomial();
  uint64_t v = 0;
  for (char c : hex) {
    const int digit = HexDigit(c);
    if (digit < 0 || (v >> 60) != 0) return InvalidPolynomial();
    v = (v << 4) | uint64_t(digit);
  }
  Polynomial p(v);
  const int deg = p.Deg();
  if (deg < kMinChunkerDegree || deg > kMaxChunkerDegree || !p.Irreducible()) {
    return InvalidPolynomial();
  }
  return p;
}

std::string Polynomial::Hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  const int width = value_ == 0 ? 1 : (std::bit_width(value_) + 3) / 4;
  for (int i = width - 1; i >= 0; i--) out.push_back(kDigits[(value_ >> (4 * i)) & 0xF]);
  return out;
}

}  // namespace fsb::repo
