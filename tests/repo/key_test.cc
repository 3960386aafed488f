#include "repo/key.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "repo/crypto.h"
#include "tests/support/test_util.h"

namespace fsb::repo {
namespace {

using ::fsb::testing::ReadFileToString;
using ::fsb::testing::SeededRandomBytes;
using ::fsb::testing::TestDataPath;
using ::testing::HasSubstr;

// Small scrypt cost so tests stay fast; restic's N=32768 is covered by the real key files.
constexpr KeyParams kFastParams{.n = 1024, .r = 8, .p = 1};

constexpr char kV2KeyFile[] =
    "restic/repo-v2/keys/6d205e57b89361e24b4f45646a8d93b8dae0bfbc4bb85b6ab8a50ac2f3828dbb";
constexpr char kV1KeyFile[] =
    "restic/repo-v1/keys/a187317943de902c348f8a8ed301ce8910a5e7ae1af3eb0970afe7571dc0c9f4";

CryptoKey TestKey(uint64_t seed) { return CryptoKey::FromBytes(SeededRandomBytes(seed, 64)); }

KeyFile MakeKeyFile(const CryptoKey& master, std::string_view password) {
  Result<KeyFile> kf = CreateKeyFile(master, password, kFastParams,
                                     "2024-01-02T03:04:05.123456789+01:00", "user", "host");
  EXPECT_TRUE(kf.ok()) << kf.status().ToString();
  return kf.ok() ? *kf : KeyFile();
}

// A valid key file JSON with one field replaced (or removed when `value` is empty).
std::string KeyJsonWith(const std::string& field, const std::string& value) {
  const std::string salt = Base64Encode(Bytes(64, 7));
  const std::string data = Base64Encode(Bytes(160, 9));
  std::vector<std::pair<std::string, std::string>> fields = {
      {"created", "\"2024-01-02T03:04:05+01:00\""},
      {"username", "\"u\""},
      {"hostname", "\"h\""},
      {"kdf", "\"scrypt\""},
      {"N", "32768"},
      {"r", "8"},
      {"p", "1"},
      {"salt", "\"" + salt + "\""},
      {"data", "\"" + data + "\""}};
  std::string out = "{";
  for (const auto& [k, v] : fields) {
    const std::string& val = k == field ? value : v;
    if (val.empty()) continue;
    if (out.size() > 1) out += ",";
    out += "\"" + k + "\":" + val;
  }
  return out + "}";
}

void ExpectDecodeFails(const std::string& json, StatusCode code, std::string_view substr) {
  Result<KeyFile> kf = DecodeKeyFile(AsBytes(json));
  ASSERT_FALSE(kf.ok()) << json;
  EXPECT_EQ(kf.status().code(), code) << json << ": " << kf.status().ToString();
  EXPECT_THAT(kf.status().message(), HasSubstr(substr)) << json;
}

TEST(KeyTest, DecodesRealKeyFiles) {
  for (const char* path : {kV2KeyFile, kV1KeyFile}) {
    const std::string text = ReadFileToString(TestDataPath(path));
    Result<KeyFile> kf = DecodeKeyFile(AsBytes(text));
    ASSERT_TRUE(kf.ok()) << path << ": " << kf.status().ToString();
    EXPECT_EQ(kf->username, "root");
    EXPECT_EQ(kf->hostname, "fsb-testhost");
    EXPECT_EQ(kf->kdf, "scrypt");
    EXPECT_EQ(kf->n, 32768u);
    EXPECT_EQ(kf->r, 8u);
    EXPECT_EQ(kf->salt.size(), 64u);
    EXPECT_EQ(kf->data.size(), 160u);
    EXPECT_THAT(kf->created, HasSubstr("+01:00"));
    // Re-encoding gives restic's bytes, hence the same file name.
    EXPECT_EQ(EncodeKeyFile(*kf), text);
  }
}

TEST(KeyTest, EncodeKeyFileIsCompactGoJsonInResticOrder) {
  KeyFile kf;
  kf.created = "2024-01-02T03:04:05.5+01:00";
  kf.username = "u";
  kf.hostname = "h";
  kf.kdf = "scrypt";
  kf.n = 16;
  kf.r = 2;
  kf.p = 3;
  kf.salt = {0xff};
  kf.data = {0x00, 0x01};
  EXPECT_EQ(EncodeKeyFile(kf),
            "{\"created\":\"2024-01-02T03:04:05.5+01:00\",\"username\":\"u\",\"hostname\":\"h\","
            "\"kdf\":\"scrypt\",\"N\":16,\"r\":2,\"p\":3,\"salt\":\"/w==\",\"data\":\"AAE=\"}");
}

TEST(KeyTest, EncodeKeyFileEscapesStringsLikeGo) {
  KeyFile kf;
  kf.username = "a\"b\\c<d>e&f\n\r\t\x01\x1f";
  kf.hostname =
      std::string("caf\xc3\xa9 \xe2\x80\xa8\xe2\x80\xa9 bad\xff\xc3 \xed\xa0\x80 \xf0\x9f\x98\x80");
  const std::string out = EncodeKeyFile(kf);
  EXPECT_THAT(out, HasSubstr("\"username\":\"a\\\"b\\\\c\\u003cd\\u003ee\\u0026f\\n\\r\\t\\u0001"
                             "\\u001f\""));
  // Valid UTF-8 passes through; U+2028/9 escaped; each invalid byte (incl. a surrogate's bytes)
  // becomes \ufffd, as Go's encoding/json does.
  EXPECT_THAT(out, HasSubstr("\"hostname\":\"caf\xc3\xa9 \\u2028\\u2029 bad\\ufffd\\ufffd "
                             "\\ufffd\\ufffd\\ufffd \xf0\x9f\x98\x80\""));
}

TEST(KeyTest, CreateThenOpenRoundTrips) {
  const CryptoKey master = CryptoKey::Random();
  const KeyFile kf = MakeKeyFile(master, "correct horse");
  EXPECT_EQ(kf.kdf, "scrypt");
  EXPECT_EQ(kf.n, 1024u);
  EXPECT_EQ(kf.salt.size(), kKeySaltSize);
  EXPECT_EQ(kf.data.size(), EncodeMasterKeyJson(master).size() + kCryptoOverhead);
  // Through the file form, as a repository stores it.
  Result<KeyFile> decoded = DecodeKeyFile(AsBytes(EncodeKeyFile(kf)));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->created, "2024-01-02T03:04:05.123456789+01:00");
  EXPECT_EQ(decoded->username, "user");
  EXPECT_EQ(decoded->hostname, "host");
  Result<CryptoKey> opened = OpenKeyFile(*decoded, "correct horse");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->encrypt, master.encrypt);
  EXPECT_EQ(opened->mac_k, master.mac_k);
  EXPECT_EQ(opened->mac_r, master.mac_r);
}

TEST(KeyTest, EmptyPasswordWorks) {
  const CryptoKey master = TestKey(1);
  Result<CryptoKey> opened = OpenKeyFile(MakeKeyFile(master, ""), "");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->encrypt, master.encrypt);
}

TEST(KeyTest, EachKeyFileHasAFreshSalt) {
  const CryptoKey master = TestKey(2);
  const KeyFile a = MakeKeyFile(master, "pw");
  const KeyFile b = MakeKeyFile(master, "pw");
  EXPECT_NE(a.salt, b.salt);
  EXPECT_NE(a.data, b.data);
}

TEST(KeyTest, WrongPasswordIsPermissionDenied) {
  const KeyFile kf = MakeKeyFile(TestKey(3), "right");
  for (std::string_view wrong : {"wrong", "", "right ", "Right"}) {
    Result<CryptoKey> r = OpenKeyFile(kf, wrong);
    ASSERT_FALSE(r.ok()) << wrong;
    EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
    EXPECT_THAT(r.status().message(), HasSubstr("wrong password"));
  }
}

TEST(KeyTest, TamperedDataLooksLikeWrongPassword) {
  KeyFile kf = MakeKeyFile(TestKey(4), "pw");
  kf.data[40] ^= 0x01;
  Result<CryptoKey> r = OpenKeyFile(kf, "pw");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
}

TEST(KeyTest, ValidMacOverMalformedMasterKeyIsCorruption) {
  // Sealed correctly under the user key, but the plaintext is not a usable master key.
  const std::vector<std::string> bad_plaintexts = {
      "not json",
      "{\"mac\":{\"k\":\"AAAAAAAAAAAAAAAAAAAAAA==\",\"r\":\"AAAAAAAAAAAAAAAAAAAAAA==\"},"
      "\"encrypt\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}",   // all zero
      "{\"mac\":{\"k\":\"AQ==\",\"r\":\"AQ==\"},\"encrypt\":\"AQ==\"}",  // wrong lengths
  };
  const KeyFile base = MakeKeyFile(TestKey(5), "pw");
  Result<Bytes> dk = Scrypt(AsBytes("pw"), base.salt, base.n, base.r, base.p);
  ASSERT_TRUE(dk.ok());
  const CryptoKey user = CryptoKey::FromBytes(*dk);
  for (const std::string& plain : bad_plaintexts) {
    KeyFile kf = base;
    kf.data = Seal(user, AsBytes(plain));
    Result<CryptoKey> r = OpenKeyFile(kf, "pw");
    ASSERT_FALSE(r.ok()) << plain;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << plain;
    EXPECT_THAT(r.status().message(), HasSubstr("master key")) << plain;
  }
}

TEST(KeyTest, MalformedKeyJsonIsCorruption) {
  ExpectDecodeFails("", StatusCode::kCorruption, "invalid JSON");
  ExpectDecodeFails("{", StatusCode::kCorruption, "invalid JSON");
  ExpectDecodeFails("[1,2]", StatusCode::kCorruption, "not a JSON object");
  ExpectDecodeFails("\"scrypt\"", StatusCode::kCorruption, "not a JSON object");
  ExpectDecodeFails(KeyJsonWith("kdf", ""), StatusCode::kCorruption, "\"kdf\" missing");
  ExpectDecodeFails(KeyJsonWith("kdf", "7"), StatusCode::kCorruption, "\"kdf\" not a string");
  ExpectDecodeFails(KeyJsonWith("username", "[]"), StatusCode::kCorruption, "\"username\"");
  ExpectDecodeFails(KeyJsonWith("N", ""), StatusCode::kCorruption, "\"N\" missing");
  ExpectDecodeFails(KeyJsonWith("N", "\"32768\""), StatusCode::kCorruption, "\"N\"");
  ExpectDecodeFails(KeyJsonWith("N", "32768.5"), StatusCode::kCorruption, "\"N\"");
  ExpectDecodeFails(KeyJsonWith("N", "-32768"), StatusCode::kCorruption, "\"N\"");
  ExpectDecodeFails(KeyJsonWith("r", "4294967296"), StatusCode::kCorruption, "\"r\"");
  ExpectDecodeFails(KeyJsonWith("salt", ""), StatusCode::kCorruption, "\"salt\" missing");
  ExpectDecodeFails(KeyJsonWith("salt", "\"not base64!\""), StatusCode::kCorruption,
                    "invalid base64");
  ExpectDecodeFails(KeyJsonWith("data", "null"), StatusCode::kCorruption, "\"data\" missing");
}

TEST(KeyTest, BadScryptParametersAreCorruption) {
  ExpectDecodeFails(KeyJsonWith("N", "0"), StatusCode::kCorruption, "power of two");
  ExpectDecodeFails(KeyJsonWith("N", "1"), StatusCode::kCorruption, "power of two");
  ExpectDecodeFails(KeyJsonWith("N", "1000"), StatusCode::kCorruption, "power of two");
  ExpectDecodeFails(KeyJsonWith("r", "0"), StatusCode::kCorruption, "must be positive");
  ExpectDecodeFails(KeyJsonWith("p", "0"), StatusCode::kCorruption, "must be positive");
}

TEST(KeyTest, SaltOfWrongLengthIsCorruption) {
  for (size_t n : {0u, 32u, 63u, 65u}) {
    ExpectDecodeFails(KeyJsonWith("salt", "\"" + Base64Encode(Bytes(n, 1)) + "\""),
                      StatusCode::kCorruption, "salt is " + std::to_string(n) + " bytes");
  }
}

TEST(KeyTest, ShortDataIsCorruption) {
  ExpectDecodeFails(KeyJsonWith("data", "\"" + Base64Encode(Bytes(31, 1)) + "\""),
                    StatusCode::kCorruption, "shorter than a sealed box");
}

TEST(KeyTest, KdfOtherThanScryptIsRefused) {
  for (std::string kdf : {"\"argon2\"", "\"Scrypt\"", "\"\""}) {
    ExpectDecodeFails(KeyJsonWith("kdf", kdf), StatusCode::kInvalidArgument, "unsupported kdf");
  }
  KeyFile kf = MakeKeyFile(TestKey(6), "pw");
  kf.kdf = "pbkdf2";
  Result<CryptoKey> r = OpenKeyFile(kf, "pw");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST(KeyTest, DecodeAcceptsMissingInformationalFieldsAndExtraFields) {
  std::string json = KeyJsonWith("created", "");
  json.insert(1, "\"future\":{\"x\":[1,2]},");
  Result<KeyFile> kf = DecodeKeyFile(AsBytes(json));
  ASSERT_TRUE(kf.ok()) << kf.status().ToString();
  EXPECT_EQ(kf->created, "");
  EXPECT_EQ(kf->username, "u");
}

TEST(KeyTest, CreateRefusesInvalidMasterOrParameters) {
  Result<KeyFile> zero = CreateKeyFile(CryptoKey(), "pw", kFastParams, "", "", "");
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument);
  Result<KeyFile> bad_n = CreateKeyFile(TestKey(7), "pw", KeyParams{.n = 1000}, "", "", "");
  ASSERT_FALSE(bad_n.ok());
  EXPECT_EQ(bad_n.status().code(), StatusCode::kInvalidArgument);
}

TEST(KeyTest, MasterKeyJsonRoundTripsAndMatchesResticLayout) {
  const CryptoKey key = TestKey(8);
  const std::string json = EncodeMasterKeyJson(key);
  EXPECT_EQ(json, "{\"mac\":{\"k\":\"" + Base64Encode(key.mac_k) + "\",\"r\":\"" +
                      Base64Encode(key.mac_r) + "\"},\"encrypt\":\"" + Base64Encode(key.encrypt) +
                      "\"}");
  Result<CryptoKey> back = DecodeMasterKeyJson(AsBytes(json));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->encrypt, key.encrypt);
  EXPECT_EQ(back->mac_k, key.mac_k);
  EXPECT_EQ(back->mac_r, key.mac_r);
}

TEST(KeyTest, MasterKeyJsonAcceptsResticCatOutput) {
  // `restic cat masterkey` re-indents the JSON.
  Result<CryptoKey> key = DecodeMasterKeyJson(
      AsBytes(ReadFileToString(TestDataPath("restic/decoded/repo-v2/masterkey.json"))));
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(HexEncode(key->encrypt),
            "c7a95d21c334828c15f3a384ff49dcb86980ac37ce37b1ac593daa08f65e3a9d");
  EXPECT_EQ(HexEncode(key->mac_k), "511689ed98630daa47bf15e5fb2460c2");
  EXPECT_EQ(HexEncode(key->mac_r), "601b0700b8643d06dcc8b20588e6ea06");
}

TEST(KeyTest, MasterKeyJsonMasksR) {
  const std::string json = "{\"mac\":{\"k\":\"" + Base64Encode(Bytes(16, 1)) + "\",\"r\":\"" +
                           Base64Encode(Bytes(16, 0xff)) + "\"},\"encrypt\":\"" +
                           Base64Encode(Bytes(32, 2)) + "\"}";
  Result<CryptoKey> key = DecodeMasterKeyJson(AsBytes(json));
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(HexEncode(key->mac_r), "ffffff0ffcffff0ffcffff0ffcffff0f");
}

TEST(KeyTest, MalformedMasterKeyJsonIsCorruption) {
  const std::string k = "\"" + Base64Encode(Bytes(16, 1)) + "\"";
  const std::string e = "\"" + Base64Encode(Bytes(32, 2)) + "\"";
  for (std::string json : {
           std::string("nope"),
           std::string("[]"),
           "{\"encrypt\":" + e + "}",
           "{\"mac\":[],\"encrypt\":" + e + "}",
           "{\"mac\":{\"k\":" + k + "},\"encrypt\":" + e + "}",
           "{\"mac\":{\"k\":" + k + ",\"r\":" + k + "}}",
           "{\"mac\":{\"k\":" + k + ",\"r\":" + k + "},\"encrypt\":" + k + "}",
           "{\"mac\":{\"k\":" + k + ",\"r\":1},\"encrypt\":" + e + "}",
           "{\"mac\":{\"k\":\"" + Base64Encode(Bytes(16, 0)) + "\",\"r\":" + k +
               "},\"encrypt\":" + e + "}",
       }) {
    Result<CryptoKey> r = DecodeMasterKeyJson(AsBytes(json));
    ASSERT_FALSE(r.ok()) << json;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << json;
  }
}

}  // namespace
}  // namespace fsb::repo
