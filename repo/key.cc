#include "repo/key.h"

#include "repo/node.h"

#include <openssl/crypto.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

namespace fsb::repo {
namespace {

using json = nlohmann::json;

// Wipes a secret buffer when it goes out of scope (scrypt output, master key JSON).
template <typename T>
class Wiper {
 public:
  explicit Wiper(T& v) : v_(v) {}
  ~Wiper() {
    if (!v_.empty()) OPENSSL_cleanse(v_.data(), v_.size());
  }
  Wiper(const Wiper&) = delete;
  Wiper& operator=(const Wiper&) = delete;

 private:
  T& v_;
};

// nlohmann parse with no exceptions; kCorruption "<what>: invalid JSON" on failure.
Result<json> ParseJson(ByteView text, std::string_view what) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Corruption(std::string(what) + ": invalid JSON");
  if (!j.is_object()) return Status::Corruption(std::string(what) + ": not a JSON object");
  return j;
}

// A JSON object member, or nullptr when absent or null (Go leaves the field at its zero value).
const json* Member(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

Status ReadString(const json& obj, const char* name, bool required, std::string* out) {
  const json* v = Member(obj, name);
  if (v == nullptr) {
    if (required) return Status::Corruption(std::string("field \"") + name + "\" missing");
    return Status::Ok();
  }
  if (!v->is_string())
    return Status::Corruption(std::string("field \"") + name + "\" not a string");
  *out = v->get<std::string>();
  return Status::Ok();
}

Status ReadUint(const json& obj, const char* name, uint64_t max, uint64_t* out) {
  const json* v = Member(obj, name);
  if (v == nullptr) return Status::Corruption(std::string("field \"") + name + "\" missing");
  // number_unsigned only: Go refuses fractions into an int, and negatives make no sense here.
  if (!v->is_number_unsigned() || v->get<uint64_t>() > max) {
    return Status::Corruption(std::string("field \"") + name + "\" not an integer in range");
  }
  *out = v->get<uint64_t>();
  return Status::Ok();
}

Status ReadBase64(const json& obj, const char* name, Bytes* out) {
  std::string text;
  FSB_RETURN_IF_ERROR(ReadString(obj, name, /*required=*/true, &text));
  Result<Bytes> b = Base64Decode(text);
  if (!b.ok()) return Status::Corruption(std::string("field \"") + name + "\": invalid base64");
  *out = std::move(b).value();
  return Status::Ok();
}

// Base64 of exactly `N` bytes into `out`.
template <size_t N>
Status ReadKeyPart(const json& obj, const char* name, std::array<uint8_t, N>* out) {
  Bytes b;
  FSB_RETURN_IF_ERROR(ReadBase64(obj, name, &b));
  Wiper<Bytes> wipe(b);
  if (b.size() != N) {
    return Status::Corruption(std::string("field \"") + name + "\": " + std::to_string(b.size()) +
                              " bytes, want " + std::to_string(N));
  }
  std::copy(b.begin(), b.end(), out->begin());
  return Status::Ok();
}

// The checks DecodeKeyFile and OpenKeyFile share.
Status ValidateKeyFile(const KeyFile& kf) {
  if (kf.kdf != "scrypt") {
    return Status::InvalidArgument("unsupported kdf \"" + kf.kdf.substr(0, 40) +
                                   "\" (want scrypt)");
  }
  if (kf.salt.size() != kKeySaltSize) {
    return Status::Corruption("salt is " + std::to_string(kf.salt.size()) + " bytes, want " +
                              std::to_string(kKeySaltSize));
  }
  if (kf.n < 2 || (kf.n & (kf.n - 1)) != 0) {
    return Status::Corruption("scrypt N=" + std::to_string(kf.n) +
                              " is not a power of two above 1");
  }
  if (kf.r == 0 || kf.p == 0) {
    return Status::Corruption("scrypt r=" + std::to_string(kf.r) + " p=" + std::to_string(kf.p) +
                              ": must be positive");
  }
  if (kf.data.size() < kCryptoOverhead) {
    return Status::Corruption("data is " + std::to_string(kf.data.size()) +
                              " bytes, shorter than a sealed box");
  }
  return Status::Ok();
}


}  // namespace

Result<KeyFile> DecodeKeyFile(ByteView text) {
  auto fail = [](const Status& s) { return s.WithContext("key file"); };
  Result<json> parsed = ParseJson(text, "key file");
  if (!parsed.ok()) return parsed.status();
  const json& j = *parsed;
  KeyFile kf;
  uint64_t r = 0, p = 0;
  Status s = ReadString(j, "created", /*required=*/false, &kf.created);
  if (s.ok()) s = ReadString(j, "username", /*required=*/false, &kf.username);
  if (s.ok()) s = ReadString(j, "hostname", /*required=*/false, &kf.hostname);
  if (s.ok()) s = ReadString(j, "kdf", /*required=*/true, &kf.kdf);
  // Fail on the kdf before reading scrypt's parameters: another kdf may not have them.
  if (s.ok() && kf.kdf != "scrypt") s = ValidateKeyFile(kf);
  if (s.ok()) s = ReadUint(j, "N", UINT64_MAX, &kf.n);
  if (s.ok()) s = ReadUint(j, "r", UINT32_MAX, &r);
  if (s.ok()) s = ReadUint(j, "p", UINT32_MAX, &p);
  if (s.ok()) s = ReadBase64(j, "salt", &kf.salt);
  if (s.ok()) s = ReadBase64(j, "data", &kf.data);
  if (!s.ok()) return fail(s);
  kf.r = uint32_t(r);
  kf.p = uint32_t(p);
  FSB_RETURN_IF_ERROR(fail(ValidateKeyFile(kf)));
  return kf;
}

std::string EncodeKeyFile(const KeyFile& kf) {
  std::string out;
  out.reserve(256 + kf.created.size() + kf.username.size() + kf.hostname.size() +
              (kf.salt.size() + kf.data.size()) * 4 / 3);
  out += "{\"created\":";
  AppendGoJsonString(kf.created, out);
  out += ",\"username\":";
  AppendGoJsonString(kf.username, out);
  out += ",\"hostname\":";
  AppendGoJsonString(kf.hostname, out);
  out += ",\"kdf\":";
  AppendGoJsonString(kf.kdf, out);
  out += ",\"N\":" + std::to_string(kf.n);
  out += ",\"r\":" + std::to_string(kf.r);
  out += ",\"p\":" + std::to_string(kf.p);
  out += ",\"salt\":\"" + Base64Encode(kf.salt) + "\"";
  out += ",\"data\":\"" + Base64Encode(kf.data) + "\"}";
  return out;
}

std::string EncodeMasterKeyJson(const CryptoKey& key) {
  return "{\"mac\":{\"k\":\"" + Base64Encode(key.mac_k) + "\",\"r\":\"" + Base64Encode(key.mac_r) +
         "\"},\"encrypt\":\"" + Base64Encode(key.encrypt) + "\"}";
}

Result<CryptoKey> DecodeMasterKeyJson(ByteView text) {
  auto fail = [](const Status& s) { return s.WithContext("master key"); };
  Result<json> parsed = ParseJson(text, "master key");
  if (!parsed.ok()) return parsed.status();
  const json& j = *parsed;
  const json* mac = Member(j, "mac");
  if (mac == nullptr || !mac->is_object()) {
    return fail(Status::Corruption("field \"mac\" missing or not an object"));
  }
  CryptoKey key;
  Status s = ReadKeyPart(*mac, "k", &key.mac_k);
  if (s.ok()) s = ReadKeyPart(*mac, "r", &key.mac_r);
  if (s.ok()) s = ReadKeyPart(j, "encrypt", &key.encrypt);
  if (!s.ok()) return fail(s);
  MaskPoly1305R(key.mac_r);  // restic masks r whenever it uses it (§2.1)
  if (!key.Valid()) return fail(Status::Corruption("invalid key: all-zero part"));
  return key;
}

Result<CryptoKey> OpenKeyFile(const KeyFile& kf, std::string_view password) {
  FSB_RETURN_IF_ERROR(ValidateKeyFile(kf).WithContext("key file"));
  Result<Bytes> dk = Scrypt(AsBytes(password), kf.salt, kf.n, kf.r, kf.p);
  if (!dk.ok()) return dk.status().WithContext("key file");
  Wiper<Bytes> wipe_dk(*dk);
  const CryptoKey user = CryptoKey::FromBytes(*dk);
  Result<Bytes> plain = Open(user, kf.data);
  if (!plain.ok()) {
    // restic reads a failed MAC on a key file as "wrong password" (§2.2).
    return Status::PermissionDenied("wrong password: key file MAC verification failed");
  }
  Wiper<Bytes> wipe_plain(*plain);
  Result<CryptoKey> master = DecodeMasterKeyJson(*plain);
  if (!master.ok()) return master.status().WithContext("key file");
  return master;
}

Result<KeyFile> CreateKeyFile(const CryptoKey& master, std::string_view password,
                              const KeyParams& params, std::string created, std::string username,
                              std::string hostname) {
  if (!master.Valid()) return Status::InvalidArgument("create key file: invalid master key");
  KeyFile kf;
  kf.created = std::move(created);
  kf.username = std::move(username);
  kf.hostname = std::move(hostname);
  kf.kdf = "scrypt";
  kf.n = params.n;
  kf.r = params.r;
  kf.p = params.p;
  kf.salt.resize(kKeySaltSize);
  RandomBytes(kf.salt);
  Result<Bytes> dk = Scrypt(AsBytes(password), kf.salt, kf.n, kf.r, kf.p);
  if (!dk.ok()) return dk.status().WithContext("create key file");
  Wiper<Bytes> wipe_dk(*dk);
  std::string master_json = EncodeMasterKeyJson(master);
  Wiper<std::string> wipe_json(master_json);
  kf.data = Seal(CryptoKey::FromBytes(*dk), AsBytes(master_json));
  return kf;
}

}  // namespace fsb::repo
