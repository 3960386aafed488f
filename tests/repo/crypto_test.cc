#include "repo/crypto.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "repo/key.h"
#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

using ::fsb::testing::ReadFileToString;
using ::fsb::testing::SeededRandomBytes;
using ::fsb::testing::TestDataPath;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Hex(ByteView b) { return HexEncode(b); }

Bytes Unhex(std::string_view hex) {
  Result<Bytes> b = HexDecode(hex);
  EXPECT_TRUE(b.ok()) << hex;
  return b.ok() ? *b : Bytes();
}

CryptoKey TestKey(uint64_t seed) { return CryptoKey::FromBytes(SeededRandomBytes(seed, 64)); }

std::string Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

// decoded/crypto-repo-v*.txt as label -> values in file order ("IV", "MAC" and "plaintext" appear
// once for the key file and once for config). A line is "label : value" or "label: value".
std::map<std::string, std::vector<std::string>> ParseWalkthrough(const std::string& text) {
  std::map<std::string, std::vector<std::string>> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    size_t sep = line.find(" : ");
    size_t skip = 3;
    if (sep == std::string::npos) {
      sep = line.find(": ");
      skip = 2;
    }
    if (sep == std::string::npos) continue;
    out[Trim(line.substr(0, sep))].push_back(Trim(line.substr(sep + skip)));
  }
  return out;
}

// AES-ECB of one 16-byte block under a 16- or 32-byte key.
void AesBlock(ByteView key, const uint8_t* in, uint8_t* out) {
  uint8_t buf[32];
  int len = 0;
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  const EVP_CIPHER* cipher = key.size() == 32 ? EVP_aes_256_ecb() : EVP_aes_128_ecb();
  EXPECT_EQ(EVP_EncryptInit_ex(c, cipher, nullptr, key.data(), nullptr), 1);
  EVP_CIPHER_CTX_set_padding(c, 0);
  EXPECT_EQ(EVP_EncryptUpdate(c, buf, &len, in, 16), 1);
  EVP_CIPHER_CTX_free(c);
  std::copy(buf, buf + 16, out);
}

// Independent oracle for the sealed box (§2.2) with a chosen IV, built from AES-ECB blocks (CTR
// keystream block i = AES(K, IV + i), the IV one 128-bit big-endian counter) and a Poly1305 from
// a different OpenSSL API. Lets tests build boxes the API never would (an all-zero IV).
Bytes OracleSeal(const CryptoKey& key, ByteView iv, ByteView plain) {
  Bytes out(iv.begin(), iv.end());
  std::array<uint8_t, 16> ctr;
  std::copy(iv.begin(), iv.end(), ctr.begin());
  for (size_t off = 0; off < plain.size(); off += 16) {
    uint8_t ks[16];
    AesBlock(key.encrypt, ctr.data(), ks);
    for (size_t i = 0; i < 16 && off + i < plain.size(); ++i) out.push_back(plain[off + i] ^ ks[i]);
    for (int i = 15; i >= 0 && ++ctr[i] == 0; --i) {
    }
  }
  uint8_t otk[32];
  std::copy(key.mac_r.begin(), key.mac_r.end(), otk);
  AesBlock(key.mac_k, iv.data(), otk + 16);
  uint8_t mac[16];
  size_t maclen = sizeof mac;
  EVP_PKEY* pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_POLY1305, nullptr, otk, sizeof otk);
  EVP_MD_CTX* m = EVP_MD_CTX_new();
  EXPECT_EQ(EVP_DigestSignInit(m, nullptr, nullptr, nullptr, pk), 1);
  EXPECT_EQ(EVP_DigestSign(m, mac, &maclen, out.data() + kIvSize, plain.size()), 1);
  EVP_MD_CTX_free(m);
  EVP_PKEY_free(pk);
  out.insert(out.end(), mac, mac + 16);
  return out;
}

// AES-128-ECB of one block: the Poly1305 "s" half.
std::string AesBlockHex(ByteView key16, ByteView block) {
  uint8_t out[16];
  AesBlock(key16, block.data(), out);
  return Hex(ByteView(out, 16));
}

std::string Password() {
  std::string p = ReadFileToString(TestDataPath("restic/password.txt"));
  while (!p.empty() && (p.back() == '\n' || p.back() == '\r')) p.pop_back();
  return p;
}

// ---------------------------------------------------------------------------------------------
// The walk-through of decoded/crypto-repo-v*.txt, for each repository.

class CryptoWalkthroughTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    w_ = ParseWalkthrough(
        ReadFileToString(TestDataPath("restic/decoded/crypto-" + GetParam() + ".txt")));
    ASSERT_EQ(w_["IV"].size(), 2u);
    ASSERT_EQ(w_["MAC"].size(), 2u);
    ASSERT_EQ(w_["plaintext"].size(), 2u);
  }
  const std::string& One(const std::string& label) {
    EXPECT_EQ(w_[label].size(), 1u) << label;
    w_[label].resize(1);
    return w_[label][0];
  }
  std::string Repo(const std::string& rel) {
    return ReadFileToString(TestDataPath("restic/" + GetParam() + "/" + rel));
  }
  // "keys/<id>  N=32768 r=8 p=7" -> the key file name.
  std::string KeyFileName() {
    const std::string& line = One("key file");
    return line.substr(0, line.find(' '));
  }

  std::map<std::string, std::vector<std::string>> w_;
};

TEST_P(CryptoWalkthroughTest, PasswordFileTrimmedIsThePassword) {
  EXPECT_EQ(Password(), One("password (UTF-8, after trimming password.txt)"));
}

TEST_P(CryptoWalkthroughTest, ScryptGivesTheUserKey) {
  const std::string key_json = Repo(KeyFileName());
  EXPECT_EQ("keys/" + Id::Hash(AsBytes(key_json)).Hex(), KeyFileName());
  Result<KeyFile> kf = DecodeKeyFile(AsBytes(key_json));
  ASSERT_TRUE(kf.ok()) << kf.status().ToString();
  EXPECT_THAT(One("key file"), HasSubstr("N=" + std::to_string(kf->n) + " r=" +
                                         std::to_string(kf->r) + " p=" + std::to_string(kf->p)));
  EXPECT_EQ(Hex(kf->salt), One("salt (64 bytes, hex)"));

  Result<Bytes> dk = Scrypt(AsBytes(Password()), kf->salt, kf->n, kf->r, kf->p);
  ASSERT_TRUE(dk.ok()) << dk.status().ToString();
  EXPECT_EQ(Hex(*dk), One("scrypt output (64 bytes)"));

  const CryptoKey user = CryptoKey::FromBytes(*dk);
  EXPECT_EQ(Hex(user.encrypt), One("user AES-256 key  = bytes 0..31"));
  EXPECT_EQ(Hex(user.mac_k), One("user MAC k (AES-128 key) = bytes 32..47"));
  EXPECT_EQ(Hex(ByteView(*dk).subspan(48)), One("user MAC r (unmasked) = bytes 48..63"));
  EXPECT_EQ(Hex(user.mac_r), One("user MAC r (masked)"));

  // The key file's sealed master key, piece by piece.
  const ByteView data = kf->data;
  ASSERT_EQ(data.size(), 160u);
  EXPECT_EQ(Hex(data.first(16)), w_["IV"][0]);
  EXPECT_EQ(Hex(data.last(16)), w_["MAC"][0]);
  EXPECT_EQ(AesBlockHex(user.mac_k, data.first(16)),
            One("AES-128_k(IV) (the Poly1305 \"s\" half)"));
  Result<Bytes> plain = Open(user, data);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(AsString(*plain), w_["plaintext"][0]);

  Result<CryptoKey> master = DecodeMasterKeyJson(*plain);
  ASSERT_TRUE(master.ok()) << master.status().ToString();
  EXPECT_EQ(Hex(master->encrypt), One("master AES-256 key"));
  EXPECT_EQ(Hex(master->mac_k), One("master MAC k"));
  EXPECT_EQ(Hex(master->mac_r), One("master MAC r"));
  // Master keys are stored masked: re-encoding gives restic's exact bytes.
  EXPECT_EQ(EncodeMasterKeyJson(*master), w_["plaintext"][0]);
  // And the key file re-encodes to the bytes restic wrote (so to the same name).
  EXPECT_EQ(EncodeKeyFile(*kf), key_json);
}

TEST_P(CryptoWalkthroughTest, OpenKeyFileGivesTheMasterKeyThatOpensConfig) {
  Result<KeyFile> kf = DecodeKeyFile(AsBytes(Repo(KeyFileName())));
  ASSERT_TRUE(kf.ok()) << kf.status().ToString();
  Result<CryptoKey> master = OpenKeyFile(*kf, Password());
  ASSERT_TRUE(master.ok()) << master.status().ToString();

  Result<CryptoKey> expected = DecodeMasterKeyJson(
      AsBytes(ReadFileToString(TestDataPath("restic/decoded/" + GetParam() + "/masterkey.json"))));
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();
  EXPECT_EQ(master->encrypt, expected->encrypt);
  EXPECT_EQ(master->mac_k, expected->mac_k);
  EXPECT_EQ(master->mac_r, expected->mac_r);

  const std::string config = Repo("config");
  EXPECT_THAT(One("config file (155 bytes)"), StartsWith(Hex(AsBytes(config))));
  const ByteView sealed = AsBytes(config);
  ASSERT_EQ(sealed.size(), 155u);
  EXPECT_EQ(Hex(sealed.first(16)), w_["IV"][1]);
  EXPECT_EQ(Hex(sealed.subspan(16, sealed.size() - 32)), One("ciphertext"));
  EXPECT_EQ(Hex(sealed.last(16)), w_["MAC"][1]);
  EXPECT_EQ(AesBlockHex(master->mac_k, sealed.first(16)), One("AES-128_k(IV)"));

  Result<Bytes> plain = Open(*master, sealed);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(AsString(*plain), w_["plaintext"][1]);
  EXPECT_EQ(AsString(*plain), ReadFileToString(TestDataPath("restic/decoded/" + GetParam() +
                                                            "/config.plaintext.json")));
}

TEST_P(CryptoWalkthroughTest, SnapshotFileNameIsItsHashAndOpens) {
  Result<CryptoKey> master = DecodeMasterKeyJson(
      AsBytes(ReadFileToString(TestDataPath("restic/decoded/" + GetParam() + "/masterkey.json"))));
  ASSERT_TRUE(master.ok()) << master.status().ToString();
  // "snapshots/<id> (249 bytes); its name is SHA-256 of the file bytes" (no value separator).
  const std::string text =
      ReadFileToString(TestDataPath("restic/decoded/crypto-" + GetParam() + ".txt"));
  const size_t at = text.find("\nsnapshots/");
  ASSERT_NE(at, std::string::npos);
  const std::string name = text.substr(at + 1, text.find(' ', at) - at - 1);
  const std::string file = Repo(name);
  EXPECT_EQ("snapshots/" + Id::Hash(AsBytes(file)).Hex(), name);
  Result<Bytes> plain = Open(*master, AsBytes(file));
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->size(), file.size() - kCryptoOverhead);
  const std::string& first =
      w_["decrypted plaintext (" + std::to_string(plain->size()) + " bytes), first bytes"].at(0);
  EXPECT_EQ(Hex(ByteView(*plain).first(first.size() / 2)), first);
}

INSTANTIATE_TEST_SUITE_P(CryptoRepos, CryptoWalkthroughTest,
                         ::testing::Values("repo-v2", "repo-v1"), [](const auto& info) {
                           return info.param == "repo-v2" ? std::string("V2") : std::string("V1");
                         });

// ---------------------------------------------------------------------------------------------
// Sealed boxes.

TEST(CryptoTest, SealOpenRoundTripsAtEverySize) {
  const CryptoKey key = TestKey(1);
  for (size_t n :
       {0u, 1u, 15u, 16u, 17u, 31u, 32u, 33u, 1000u, 16383u, 16384u, 16385u, (1u << 20) + 3}) {
    const Bytes plain = SeededRandomBytes(n, n);
    const Bytes sealed = Seal(key, plain);
    ASSERT_EQ(sealed.size(), n + kCryptoOverhead);
    if (n >= 16) {
      EXPECT_NE(Bytes(sealed.begin() + 16, sealed.begin() + 32),
                Bytes(plain.begin(), plain.begin() + 16));
    }
    Result<Bytes> opened = Open(key, sealed);
    ASSERT_TRUE(opened.ok()) << "n=" << n << ": " << opened.status().ToString();
    EXPECT_EQ(*opened, plain) << "n=" << n;
  }
}

TEST(CryptoTest, OpenInPlaceDecryptsWhereTheBoxLiesAndLeavesABadOneUnchanged) {
  const CryptoKey key = TestKey(11);
  for (size_t n : {0u, 1u, 17u, 16384u, (1u << 20) + 3}) {
    const Bytes plain = SeededRandomBytes(n + 1, n);
    Bytes sealed = Seal(key, plain);
    Result<MutableByteView> opened = OpenInPlace(key, sealed);
    ASSERT_TRUE(opened.ok()) << "n=" << n << ": " << opened.status().ToString();
    EXPECT_EQ(opened->data(), sealed.data() + kIvSize) << "n=" << n;
    EXPECT_EQ(Bytes(opened->begin(), opened->end()), plain) << "n=" << n;
  }
  Bytes sealed = Seal(key, SeededRandomBytes(12, 5000));
  sealed[100] ^= 1;
  const Bytes before = sealed;
  Result<MutableByteView> bad = OpenInPlace(key, sealed);
  EXPECT_EQ(bad.status().code(), StatusCode::kCorruption);
  EXPECT_EQ(sealed, before);  // nothing decrypted
  Bytes short_box(kCryptoOverhead - 1, 7);
  EXPECT_EQ(OpenInPlace(key, short_box).status().code(), StatusCode::kCorruption);
}

TEST(CryptoTest, SealMatchesIndependentOracle) {
  // Our box for the IV we drew must equal OpenSSL's plain AES-CTR + Poly1305 with that IV.
  const CryptoKey key = TestKey(2);
  const Bytes plain = SeededRandomBytes(3, 100000);
  const Bytes sealed = Seal(key, plain);
  EXPECT_EQ(sealed, OracleSeal(key, ByteView(sealed).first(kIvSize), plain));
}

TEST(CryptoTest, CounterCarriesAcrossAllSixteenIvBytes) {
  // Go's cipher.NewCTR increments the whole IV as one big-endian 128-bit number (§2.2): the carry
  // crosses the 64-bit halves, and ff..ff wraps to 00..00.
  const CryptoKey key = TestKey(4);
  const Bytes plain = SeededRandomBytes(40, 100);
  for (const char* iv_hex :
       {"0000000000000000ffffffffffffffff", "ffffffffffffffffffffffffffffffff",
        "00000000000000000000000000000001", "0123456789abcdef0123456789abcdff"}) {
    Result<Bytes> opened = Open(key, OracleSeal(key, Unhex(iv_hex), plain));
    ASSERT_TRUE(opened.ok()) << iv_hex << ": " << opened.status().ToString();
    EXPECT_EQ(*opened, plain) << iv_hex;
  }
}

TEST(CryptoTest, SealAppendAppendsWithoutTouchingPrefix) {
  const CryptoKey key = TestKey(5);
  Bytes out = ToBytes("prefix");
  const Bytes a = SeededRandomBytes(6, 5000);
  const Bytes b = SeededRandomBytes(7, 3);
  SealAppend(key, a, out);
  SealAppend(key, b, out);
  ASSERT_EQ(out.size(), 6 + a.size() + b.size() + 2 * kCryptoOverhead);
  EXPECT_EQ(AsString(ByteView(out).first(6)), "prefix");
  Result<Bytes> oa = Open(key, ByteView(out).subspan(6, a.size() + kCryptoOverhead));
  Result<Bytes> ob = Open(key, ByteView(out).subspan(6 + a.size() + kCryptoOverhead));
  ASSERT_TRUE(oa.ok() && ob.ok());
  EXPECT_EQ(*oa, a);
  EXPECT_EQ(*ob, b);
}

TEST(CryptoTest, EachSealUsesAFreshIv) {
  const CryptoKey key = TestKey(8);
  const Bytes plain = ToBytes("same plaintext");
  const Bytes s1 = Seal(key, plain);
  const Bytes s2 = Seal(key, plain);
  EXPECT_NE(Bytes(s1.begin(), s1.begin() + 16), Bytes(s2.begin(), s2.begin() + 16));
  EXPECT_NE(s1, s2);
}

TEST(CryptoTest, FlippedByteAnywhereIsCorruption) {
  const CryptoKey key = TestKey(9);
  const Bytes plain = SeededRandomBytes(10, 300);
  const Bytes sealed = Seal(key, plain);
  // IV, first/last ciphertext byte, MAC.
  for (size_t pos : {size_t(0), size_t(7), size_t(15), size_t(16), size_t(200), sealed.size() - 17,
                     sealed.size() - 16, sealed.size() - 1}) {
    for (uint8_t bit : {uint8_t(0x01), uint8_t(0x80)}) {
      Bytes bad = sealed;
      bad[pos] ^= bit;
      Result<Bytes> r = Open(key, bad);
      ASSERT_FALSE(r.ok()) << "pos=" << pos;
      EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
      EXPECT_THAT(r.status().message(), HasSubstr("ciphertext verification failed"));
    }
  }
}

TEST(CryptoTest, WrongKeyIsCorruption) {
  const Bytes sealed = Seal(TestKey(11), ToBytes("secret"));
  CryptoKey other = TestKey(11);
  other.encrypt[0] ^= 1;  // the MAC key still verifies: decryption would give garbage
  EXPECT_TRUE(Open(other, sealed).ok());
  other = TestKey(11);
  other.mac_k[0] ^= 1;
  Result<Bytes> r = Open(other, sealed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
}

TEST(CryptoTest, ShortInputIsCorruption) {
  const CryptoKey key = TestKey(12);
  const Bytes sealed = Seal(key, Bytes());
  ASSERT_EQ(sealed.size(), 32u);
  EXPECT_TRUE(Open(key, sealed).ok());
  for (size_t n : {0u, 1u, 16u, 31u}) {
    Result<Bytes> r = Open(key, ByteView(sealed).first(n));
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
    EXPECT_THAT(r.status().message(), HasSubstr("ciphertext verification failed"));
  }
}

TEST(CryptoTest, AllZeroIvIsRefusedEvenWithAValidMac) {
  const CryptoKey key = TestKey(13);
  const Bytes plain = ToBytes("{\"a\":1}");
  const Bytes zero_iv(16, 0);
  const Bytes box = OracleSeal(key, zero_iv, plain);
  // Sanity: the same construction with a non-zero IV opens.
  Bytes iv(16, 0);
  iv[3] = 1;
  ASSERT_TRUE(Open(key, OracleSeal(key, iv, plain)).ok());
  Result<Bytes> r = Open(key, box);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(r.status().message(), HasSubstr("ciphertext verification failed"));
}

TEST(CryptoTest, OpenWithInvalidKeyIsRefused) {
  const Bytes sealed = Seal(TestKey(14), ToBytes("x"));
  Result<Bytes> r = Open(CryptoKey(), sealed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Keys, SHA-256, scrypt.

TEST(CryptoTest, MaskClearsExactlyTheClampBits) {
  std::array<uint8_t, 16> r;
  r.fill(0xff);
  MaskPoly1305R(r);
  EXPECT_EQ(Hex(r), "ffffff0ffcffff0ffcffff0ffcffff0f");
  MaskPoly1305R(r);  // idempotent
  EXPECT_EQ(Hex(r), "ffffff0ffcffff0ffcffff0ffcffff0f");
}

TEST(CryptoTest, FromBytesSplitsAndMasks) {
  const Bytes b = SeededRandomBytes(15, 64);
  const CryptoKey k = CryptoKey::FromBytes(b);
  EXPECT_EQ(Hex(k.encrypt), Hex(ByteView(b).first(32)));
  EXPECT_EQ(Hex(k.mac_k), Hex(ByteView(b).subspan(32, 16)));
  std::array<uint8_t, 16> r;
  std::copy(b.begin() + 48, b.end(), r.begin());
  MaskPoly1305R(r);
  EXPECT_EQ(k.mac_r, r);
}

TEST(CryptoTest, RandomKeysAreValidMaskedAndDistinct) {
  const CryptoKey a = CryptoKey::Random();
  const CryptoKey b = CryptoKey::Random();
  EXPECT_TRUE(a.Valid());
  EXPECT_TRUE(b.Valid());
  EXPECT_NE(a.encrypt, b.encrypt);
  std::array<uint8_t, 16> r = a.mac_r;
  MaskPoly1305R(r);
  EXPECT_EQ(r, a.mac_r);
}

TEST(CryptoTest, KeyWithAnyAllZeroPartIsInvalid) {
  CryptoKey k = TestKey(16);
  EXPECT_TRUE(k.Valid());
  EXPECT_FALSE(CryptoKey().Valid());
  CryptoKey z = k;
  z.encrypt.fill(0);
  EXPECT_FALSE(z.Valid());
  z = k;
  z.mac_k.fill(0);
  EXPECT_FALSE(z.Valid());
  z = k;
  z.mac_r.fill(0);
  EXPECT_FALSE(z.Valid());
}

TEST(CryptoTest, Sha256MatchesKnownAnswersAndIdHash) {
  Sha256 h;
  EXPECT_EQ(h.Finish().Hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  h.Update(AsBytes("ab"));
  h.Update(AsBytes(""));
  h.Update(AsBytes("c"));
  EXPECT_EQ(h.Finish().Hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Finish resets: the same object hashes again from scratch.
  const Bytes data = SeededRandomBytes(17, 1 << 20);
  for (size_t off = 0; off < data.size(); off += 4099) {
    h.Update(ByteView(data).subspan(off, std::min<size_t>(4099, data.size() - off)));
  }
  EXPECT_EQ(h.Finish(), Id::Hash(data));
}

TEST(CryptoTest, ScryptMatchesRfc7914Vector) {
  // RFC 7914 §12: scrypt("password", "NaCl", N=1024, r=8, p=16, 64).
  Result<Bytes> dk = Scrypt(AsBytes("password"), AsBytes("NaCl"), 1024, 8, 16);
  ASSERT_TRUE(dk.ok()) << dk.status().ToString();
  EXPECT_EQ(Hex(*dk),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a388"
            "6ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640");
  // Empty password and salt: RFC 7914 §12, first vector (N=16, r=1, p=1).
  Result<Bytes> empty = Scrypt(ByteView(), ByteView(), 16, 1, 1);
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(Hex(*empty),
            "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8"
            "326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906");
}

TEST(CryptoTest, ScryptRefusesBadParameters) {
  const Bytes salt(64, 1);
  for (auto [n, r, p] :
       std::vector<std::tuple<uint64_t, uint32_t, uint32_t>>{{0, 8, 1},
                                                             {1, 8, 1},
                                                             {1000, 8, 1},
                                                             {1024, 0, 1},
                                                             {1024, 8, 0},
                                                             {uint64_t(1) << 40, 8, 1}}) {
    Result<Bytes> dk = Scrypt(AsBytes("pw"), salt, n, r, p);
    ASSERT_FALSE(dk.ok()) << n << " " << r << " " << p;
    EXPECT_EQ(dk.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(CryptoTest, RandomBytesFillsTheBuffer) {
  Bytes a(100000, 0);
  RandomBytes(a);
  EXPECT_GT(std::count_if(a.begin(), a.end(), [](uint8_t x) { return x != 0; }), 99000);
  RandomBytes(MutableByteView());  // empty is fine
}

}  // namespace
}  // namespace fsb::repo
