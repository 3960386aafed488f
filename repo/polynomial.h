// repo/polynomial.h: polynomials over GF(2) of degree < 64, as restic's chunker uses them to pick
// and check the repository's Rabin polynomial (restic-repo-format.md §12.1, §12.4).
// Value type; all functions are pure except Random(), and safe for concurrent use.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace fsb::repo {

// Bit k of value() is the coefficient of x^k. Addition is XOR.
class Polynomial {
 public:
  // restic refuses chunker polynomials of degree above 53 (the rolling digest must leave 8 spare
  // bits in a uint64 for the shift by one byte; restic-repo-format.md §12.3).
  static constexpr int kMaxChunkerDegree = 53;
  // Our tables index the digest's top byte, so a usable chunker polynomial has degree >= 8.
  // restic only ever makes degree 53 (Random), so no real repository is refused by this.
  static constexpr int kMinChunkerDegree = 8;

  constexpr Polynomial() = default;
  constexpr explicit Polynomial(uint64_t value) : value_(value) {}

  // restic's procedure (§12.4): 8 CSPRNG bytes as little-endian uint64, keep bits 0..53, set bits
  // 53 and 0, retry until irreducible (at most 10^6 draws, which is never reached in practice:
  // about one draw in 27 succeeds). Always returns a degree-53 irreducible polynomial; aborts if
  // the CSPRNG fails.
  static Polynomial Random();

  // Parses config.chunker_polynomial: hex digits without "0x" (restic writes lowercase; like Go's
  // ParseUint, upper case and leading zeros are accepted). kInvalidArgument "invalid chunker
  // polynomial" for an empty or non-hex string, a value above 64 bits, zero, a degree outside
  // [kMinChunkerDegree, kMaxChunkerDegree], or a reducible polynomial.
  static Result<Polynomial> Parse(std::string_view hex);

  // Lowercase hex without "0x" and without leading zeros, as restic stores it in the config.
  std::string Hex() const;

  uint64_t value() const { return value_; }
  // Index of the highest set bit; -1 for the zero polynomial.
  int Deg() const;

  Polynomial Add(Polynomial other) const { return Polynomial(value_ ^ other.value_); }
  // Remainder of the division by `divisor`, which must not be zero (FSB_CHECK).
  Polynomial Mod(Polynomial divisor) const;
  // (this * f) mod g; g must not be zero (FSB_CHECK). Never overflows: operands are reduced first.
  Polynomial MulMod(Polynomial f, Polynomial g) const;
  // Greatest common divisor (Euclid); Gcd(0, 0) is 0.
  static Polynomial Gcd(Polynomial a, Polynomial b);
  // Ben-Or's test (§12.4): for i = 1 .. Deg()/2, gcd(this, (x^(2^i) - x) mod this) == 1.
  // Like restic's, it is true for the constant 1; unlike restic's, false for zero.
  bool Irreducible() const;

  friend bool operator==(Polynomial a, Polynomial b) = default;

 private:
  uint64_t value_ = 0;
};

}  // namespace fsb::repo
